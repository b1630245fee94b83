"""A segment for a synchronized connection: ESTABLISHED, FIN_WAIT1,
CLOSE_WAIT, CLOSING, LAST_ACK (net/ipv4/tcp_input.c: tcp_rcv_established,
tcp_rcv_state_process, tcp_validate_incoming, tcp_ack, tcp_data_queue,
tcp_fin; spec §3.6).

Order: flags, sequence check (RFC 9293 §3.10.7.4, tcp_sequence), RST
(RFC 5961 §3.2), SYN (RFC 5961 §4.2), ACK (RFC 5961 §5.2), data, FIN.
Replies come from the full socket: seq = SND.NXT, ack = RCV.NXT, DF, the
socket's IPv4 ID counter.  In-order data and FINs are ACKed at once or
after the delayed-ACK timer, as :mod:`pktdemux.tcp_delack` decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import tcp_delack, tcp_rcvbuf, tcp_rtx
from .dropreason import DropReason
from .sockets import Socket, TcpState
from .tcp_listen import initial_window
from .tcp_output import (
    TS_ALIGNED,
    RequestOrigin,
    advertised_mss,
    send_reset,
    socket_segment,
)
from .tcp_ratelimit import limited, oow_rate_limited
from .tcp_segment import ACK, FIN, MOD32, RST, SYN, Segment, seq_after, seq_before
from .tcp_tcb import Tcb
from .tcp_verdict import tcp_deliver, tcp_drop
from .verdict import Verdict

if TYPE_CHECKING:
    from .kernel import Kernel

HANDLER = "tcp established"
#: TIME_WAIT lasts this long (TCP_TIMEWAIT_LEN); an orphaned FIN_WAIT2
#: tcp_fin_time (:func:`pktdemux.tcp_rtx.fin_wait2_lifetime`).
TIMEWAIT_LEN = 60.0
_RESET_CHECK_STATES = (TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.CLOSING)
_AFTER_FIN_STATES = (TcpState.CLOSE_WAIT, TcpState.CLOSING, TcpState.LAST_ACK)
#: the peer's FIN came: the socket has RCV_SHUTDOWN (no window updates)
_RCV_SHUTDOWN_STATES = _AFTER_FIN_STATES + (TcpState.TIME_WAIT, TcpState.CLOSE)


def receive(kernel: Kernel, sock: Socket, seg: Segment) -> Verdict:
    """Process ``seg`` on a connected socket."""
    tcb = sock.tcb if isinstance(sock.tcb, Tcb) and sock.tcb.synced else learn(kernel, sock, seg)
    flags = seg.flags
    if not flags & (ACK | RST | SYN):
        return tcp_drop(DropReason.TCP_FLAGS, HANDLER, "segment without ACK, RST or SYN")
    bad_sequence = _sequence_check(tcb, seg)
    if bad_sequence is not None:
        return _out_of_window(kernel, sock, tcb, seg, bad_sequence)
    if flags & RST:
        if seg.seq == tcb.rcv_nxt or _reset_check(sock, tcb, seg):
            return _reset(kernel, sock, "RST at RCV.NXT: connection reset (ECONNRESET)")
        return _challenge(kernel, tcb, seg, DropReason.TCP_RESET, "in-window RST not at RCV.NXT")
    if flags & SYN:
        return _challenge(kernel, tcb, seg, DropReason.TCP_INVALID_SYN, "SYN on a synchronized connection")
    ack_verdict = _process_ack(kernel, sock, tcb, seg)
    if ack_verdict is not None:
        return ack_verdict
    if sock.state is TcpState.CLOSE:
        return tcp_deliver(sock, HANDLER, "ACK of our FIN: connection closed")
    return _process_text(kernel, sock, tcb, seg)


def learn(kernel: Kernel, sock: Socket, seg: Segment) -> Tcb:
    """Sequence state for a connection whose numbers were unknown (a
    host-file connection): RCV.NXT and SND.NXT from its first segment."""
    mss = advertised_mss(kernel, seg)
    ts_ok = seg.options.tsval is not None
    rcv_mss = mss - TS_ALIGNED if ts_ok else mss
    rcv_wnd, rcv_wscale = initial_window(kernel, rcv_mss, True)
    seq = (seg.seq + 1) & MOD32 if seg.flags & SYN else seg.seq
    ack = seg.ack if seg.flags & ACK else 0
    tcb = Tcb(
        iss=(ack - 1) & MOD32, irs=(seq - 1) & MOD32, snd_una=ack, snd_nxt=ack, rcv_nxt=seq, rcv_wup=seq,
        rcv_wnd=rcv_wnd, mss=mss, rcv_mss=rcv_mss, rcv_wscale=rcv_wscale,
        snd_wnd=seg.window, max_window=seg.window, ts_ok=ts_ok, ts_offset=kernel.entropy.ts_offset(),
        ts_recent=seg.options.tsval or 0, ip_id=kernel.entropy.socket_ip_id(),
    )
    sock.tcb = tcb
    return tcb


def learn_from_host(kernel: Kernel, sock: Socket, seq: int, ack: int, tsval: int | None, ip_id: int) -> Tcb:
    """Sequence state for a host-file connection whose first packet is the
    host's own: SND.NXT from its SEG.SEQ, RCV.NXT from its SEG.ACK."""
    from .tcp_output import ms_clock

    mss = 1460
    tcb = Tcb(
        iss=(seq - 1) & MOD32, irs=(ack - 1) & MOD32, snd_una=seq, snd_nxt=seq, rcv_nxt=ack, rcv_wup=ack,
        mss=mss, rcv_mss=mss - TS_ALIGNED if tsval is not None else mss, ts_ok=tsval is not None,
        ts_offset=((tsval or 0) - ms_clock(kernel)) & MOD32, ip_id=(ip_id + 1) & 0xFFFF,
    )
    tcb.rcv_wnd, tcb.rcv_wscale = initial_window(kernel, tcb.rcv_mss, True)
    sock.tcb = tcb
    return tcb


def _sequence_check(tcb: Tcb, seg: Segment) -> DropReason | None:
    """tcp_sequence: the segment must end at or after RCV.WUP and start
    within the receive window."""
    if seq_before(seg.end_seq, tcb.rcv_wup):
        return DropReason.TCP_OLD_SEQUENCE
    if seq_after(seg.seq, (tcb.rcv_nxt + tcb.receive_window()) & MOD32):
        return DropReason.TCP_INVALID_SEQUENCE
    return None


def _reset_check(sock: Socket, tcb: Tcb, seg: Segment) -> bool:
    """tcp_reset_check: after the peer's FIN, a RST at RCV.NXT−1 is accepted."""
    return sock.state in _RESET_CHECK_STATES and seg.seq == (tcb.rcv_nxt - 1) & MOD32


def _out_of_window(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment, reason: DropReason) -> Verdict:
    if seg.flags & RST:
        if _reset_check(sock, tcb, seg):
            return _reset(kernel, sock, "RST at RCV.NXT-1 after the peer's FIN: connection reset")
        return tcp_drop(reason, HANDLER, "RST outside the window: ignored")
    if seg.flags & SYN:
        return _challenge(kernel, tcb, seg, DropReason.TCP_INVALID_SYN, "SYN outside the window")
    if seg.seq != seg.end_seq and seq_before(seg.seq, tcb.rcv_nxt):
        tcp_delack.enter_quickack_mode(tcb)  # tcp_send_dupack: a retransmission, our ACK was lost
    replies = () if oow_rate_limited(kernel, tcb, seg) else (socket_segment(kernel, seg, tcb),)
    note = "segment outside the receive window: duplicate ACK" if replies else \
        "segment outside the receive window: ACK suppressed (tcp_invalid_ratelimit)"
    return tcp_drop(reason, HANDLER, note, replies, ("tcp_sequence failed (tcp_validate_incoming)",))


def _challenge(kernel: Kernel, tcb: Tcb, seg: Segment, reason: DropReason, what: str) -> Verdict:
    """A challenge ACK, at most one per tcp_invalid_ratelimit (tcp_send_challenge_ack)."""
    if limited(kernel, tcb):
        return tcp_drop(reason, HANDLER, f"{what}: challenge ACK suppressed (tcp_invalid_ratelimit)")
    return tcp_drop(reason, HANDLER, f"{what}: challenge ACK (RFC 5961)", (socket_segment(kernel, seg, tcb),))


def _reset(kernel: Kernel, sock: Socket, note: str) -> Verdict:
    """tcp_reset: the socket goes to CLOSE and leaves the tables."""
    kernel.tcp.remove_established(sock)
    sock.state = TcpState.CLOSE
    return tcp_deliver(sock, HANDLER, note)


def _process_ack(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> Verdict | None:
    """tcp_ack: returns a verdict when the segment is dropped here."""
    ack = seg.ack
    if seq_before(ack, tcb.snd_una):
        max_window = min(tcb.max_window, tcb.bytes_acked)
        if seq_before(ack, (tcb.snd_una - max_window) & MOD32):
            return _challenge(kernel, tcb, seg, DropReason.TCP_TOO_OLD_ACK, "ACK older than SND.UNA - window")
        return None
    if seq_after(ack, tcb.snd_nxt):
        return _challenge(kernel, tcb, seg, DropReason.TCP_ACK_UNSENT_DATA, "ACK of data never sent")
    if seg.options.tsval is not None and not seq_after(seg.seq, tcb.rcv_wup):
        tcb.ts_recent = seg.options.tsval
    advanced = ack != tcb.snd_una
    tcb.bytes_acked += (ack - tcb.snd_una) & MOD32
    tcb.snd_una = ack
    tcb.snd_wnd = seg.window << tcb.snd_wscale
    tcb.max_window = max(tcb.max_window, tcb.snd_wnd)
    if advanced:
        tcp_rtx.acked(kernel, sock, tcb, seg)
    if tcb.fin_sent and ack == tcb.snd_nxt:
        _our_fin_acked(kernel, sock, tcb)
    return None


def _our_fin_acked(kernel: Kernel, sock: Socket, tcb: Tcb) -> None:
    """FIN_WAIT1 → FIN_WAIT2 (an orphan: a TIME_WAIT entry in its FIN_WAIT2
    substate for tcp_fin_time; after shutdown(SHUT_WR) the socket itself,
    which waits for the peer's FIN without limit), CLOSING → TIME_WAIT,
    LAST_ACK → CLOSE (tcp_rcv_state_process)."""
    state = sock.state
    if state is TcpState.FIN_WAIT1 and tcb.shut_wr:
        sock.state = TcpState.FIN_WAIT2
    elif state is TcpState.FIN_WAIT1:
        enter_timewait(kernel, sock, tcb, TcpState.FIN_WAIT2, tcp_rtx.fin_wait2_lifetime(kernel, tcb))
    elif state is TcpState.CLOSING:
        enter_timewait(kernel, sock, tcb, TcpState.TIME_WAIT)
    elif state is TcpState.LAST_ACK:
        kernel.tcp.remove_established(sock)
        sock.state = TcpState.CLOSE


def enter_timewait(kernel: Kernel, sock: Socket, tcb: Tcb, state: TcpState,
                   lifetime: float = TIMEWAIT_LEN) -> None:
    """tcp_time_wait: the entry stays under its 4-tuple for ``lifetime``
    (60 s for TIME_WAIT).  Its window is the one left when it is made
    (tw_rcv_wnd = tcp_receive_window()), unchanged by the FIN that may still
    come (tcp_timewait_state_process)."""
    sock.state = state
    tcb.rcv_wnd = tcb.receive_window()
    tcb.rcv_wup = tcb.rcv_nxt
    tcb.deadline = kernel.now + lifetime
    tcb.last_oow_ack_time = None
    kernel.tcp.schedule(sock)


def _process_text(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> Verdict:
    """RFC 9293 §3.10.7.4 "seventh, process the segment text" (tcp_data_queue)."""
    state = sock.state
    if state in _AFTER_FIN_STATES and not seq_before(seg.seq, tcb.rcv_nxt):
        return tcp_deliver(sock, HANDLER, "segment after the peer's FIN: text ignored")
    if state is TcpState.FIN_WAIT1 and not tcb.shut_wr and seg.payload_len and seq_after(
            (seg.end_seq - (seg.flags & FIN)) & MOD32, tcb.rcv_nxt):
        kernel.tcp.remove_established(sock)
        sock.state = TcpState.CLOSE
        return tcp_drop(DropReason.TCP_ABORT_ON_DATA, HANDLER, "new data after close(): RST, connection aborted",
                        send_reset(kernel, seg))
    if seg.seq == seg.end_seq:
        return tcp_deliver(sock, HANDLER, "ACK")
    return _queue_data(kernel, sock, tcb, seg)


def _queue_data(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> Verdict:
    """tcp_data_queue for a segment with data or FIN."""
    if seg.seq == tcb.rcv_nxt or seq_before(seg.seq, tcb.rcv_nxt) and seq_after(seg.end_seq, tcb.rcv_nxt):
        return _in_order(kernel, sock, tcb, seg)
    if not seq_after(seg.end_seq, tcb.rcv_nxt):
        tcp_delack.enter_quickack_mode(tcb)  # tcp_data_queue: out_of_window, an ACK scheduled
        return tcp_drop(DropReason.TCP_OLD_DATA, HANDLER, "data already received: duplicate ACK",
                        (socket_segment(kernel, seg, tcb),))
    if not seq_before(seg.seq, (tcb.rcv_nxt + tcb.receive_window()) & MOD32):
        tcp_delack.enter_quickack_mode(tcb)  # tcp_data_queue: out_of_window, an ACK scheduled
        return tcp_drop(DropReason.TCP_OVERWINDOW, HANDLER, "data beyond the window: duplicate ACK",
                        (socket_segment(kernel, seg, tcb),))
    tcb.ofo.append((seg.seq, seg.end_seq, bool(seg.flags & FIN)))
    tcp_delack.schedule_ack(kernel, tcb, quick=tcp_rcvbuf.ofo_held(kernel, tcb, seg))  # tcp_data_queue_ofo
    _count(sock, seg, seg.payload)
    return tcp_deliver(sock, HANDLER, "out-of-order data held: duplicate ACK", (socket_segment(kernel, seg, tcb),))


def _in_order(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> Verdict:
    skip = (tcb.rcv_nxt - seg.seq) & MOD32
    data = seg.payload[skip:] if seg.payload_len else b""
    # set up (copied_seq = RCV.NXT) before RCV.NXT moves past this data
    rcv_mss = tcp_rcvbuf.buffer(kernel, tcb).rcv_mss
    tcb.rcv_nxt = seg.end_seq
    _count(sock, seg, data)
    grew = tcp_rcvbuf.data_queued(kernel, tcb, seg, coalesce=not skip)
    if seg.payload_len:
        tcp_delack.data_recv(kernel, tcb, seg, rcv_mss, grew)
    had_ofo = bool(tcb.ofo)
    fin = bool(seg.flags & FIN) or _drain_ofo(tcb)
    note = f"{len(data)} bytes delivered" if data else ""
    replies: tuple[bytes, ...] = ()
    if fin:
        state = sock.state
        note = (note + "; " if note else "") + _peer_fin(kernel, sock, tcb)
        # tcp_fin: the ACK scheduled; ESTABLISHED enters pingpong mode (a
        # delayed ACK), FIN_WAIT1 and FIN_WAIT2 ACK at once
        tcp_delack.schedule_ack(kernel, tcb, pingpong=state is TcpState.ESTABLISHED)
        if state in (TcpState.FIN_WAIT1, TcpState.FIN_WAIT2):
            replies = (socket_segment(kernel, seg, tcb),)
    if had_ofo and not tcb.ofo:
        tcp_delack.schedule_ack(kernel, tcb, now=True)  # RFC 5681 4.2: the gap is filled, ACK at once
    if not replies:
        replies = tcp_delack.ack_snd_check(kernel, sock, tcb)
    if sock.state is TcpState.TIME_WAIT:
        enter_timewait(kernel, sock, tcb, TcpState.TIME_WAIT)
    elif kernel.autoread:
        replies += app_reads(kernel, sock)
    if replies:
        return tcp_deliver(sock, HANDLER, note + ": ACK", replies)
    return tcp_deliver(sock, HANDLER, note + ": ACK delayed (tcp_send_delayed_ack)", replies)


def app_reads(kernel: Kernel, sock: Socket) -> tuple[bytes, ...]:
    """The application reads everything queued (tcp_recvmsg); returns the
    window update tcp_cleanup_rbuf sends when the read opened the window
    wide (:func:`pktdemux.tcp_rcvbuf.app_reads`), else nothing."""
    tcb = sock.tcb
    if not isinstance(tcb, Tcb):
        return ()
    buf = tcb.rcvbuf
    copied = (buf.queue[-1][0] - buf.copied_seq) & MOD32 if buf is not None and buf.queue else 0
    update = tcp_rcvbuf.app_reads(kernel, tcb, sock.state in _RCV_SHUTDOWN_STATES)
    # tcp_cleanup_rbuf: a scheduled (delayed) ACK may go now, else the window update
    if not (copied and tcp_delack.time_to_ack(kernel, tcb, copied)) and not update:
        return ()
    return (socket_segment(kernel, RequestOrigin(sock), tcb),)  # type: ignore[arg-type]


def _count(sock: Socket, seg: Segment, data: bytes) -> None:
    if data:
        sock.rx_packets += 1
        sock.rx_bytes += len(data)
        if sock.inbox is not None:
            sock.inbox.append(data)


def _drain_ofo(tcb: Tcb) -> bool:
    """Move held segments that now fit to RCV.NXT; True when one had FIN."""
    fin = False
    progressed = True
    while progressed and tcb.ofo:
        progressed = False
        for held in list(tcb.ofo):
            seq, end_seq, held_fin = held
            if not seq_after(seq, tcb.rcv_nxt):
                tcb.ofo.remove(held)
                useful = seq_after(end_seq, tcb.rcv_nxt)
                tcp_rcvbuf.ofo_drained(tcb, seq, useful)
                if useful:
                    tcb.rcv_nxt = end_seq
                    fin = fin or held_fin
                progressed = True
    return fin


def _peer_fin(kernel: Kernel, sock: Socket, tcb: Tcb) -> str:
    """tcp_fin: the state change the peer's FIN causes."""
    state = sock.state
    if state is TcpState.ESTABLISHED:
        sock.state = TcpState.CLOSE_WAIT
        return "FIN: CLOSE_WAIT"
    if state is TcpState.FIN_WAIT1:
        sock.state = TcpState.CLOSING
        return "FIN during our close: CLOSING"
    if state is TcpState.FIN_WAIT2:
        sock.state = TcpState.TIME_WAIT
        return "FIN: TIME_WAIT"
    return "FIN"


# -- the application's close() and shutdown(SHUT_WR) ------------------------------------------

_OPEN_STATES = (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT)
_CLOSING_STATES = (TcpState.FIN_WAIT1, TcpState.FIN_WAIT2, TcpState.CLOSING, TcpState.LAST_ACK,
                   TcpState.TIME_WAIT)


def close(kernel: Kernel, sock: Socket, *, from_host: bool = False,
          bare: bool = True) -> tuple[bytes, ...] | None:
    """tcp_close of a connection whose sequence numbers are known.

    Received data the application left unread (in the receive queue:
    ``Kernel.autoread`` off and no :meth:`~pktdemux.kernel.Kernel.recv`
    since) makes it a RST+ACK and the connection is gone (data_was_unread →
    tcp_send_active_reset, CLOSE).
    Otherwise the FIN (tcp_close_state, tcp_send_fin) with its
    retransmission timer (:mod:`pktdemux.tcp_rtx`), or nothing when it was
    sent before (shutdown(SHUT_WR)); the connection becomes an orphan that
    leaves the bound sockets with the tables.  None for any other socket
    (the caller unhashes it at once); a SYN_SENT socket's timer is stopped
    first.

    ``from_host``: the host's FIN in a capture (:mod:`pktdemux.transmit`),
    already counted in SND.NXT; ``bare`` False when it came with data (then
    not retransmitted by the emulation, as data is not).
    """
    tcb = sock.tcb
    state = sock.state
    if state is TcpState.SYN_SENT:
        timer = getattr(tcb, "rtx_timer", None)
        if timer is not None:
            timer.cancel()
        return None
    if not isinstance(tcb, Tcb) or not tcb.synced or state not in _OPEN_STATES + _CLOSING_STATES:
        return None
    if not from_host and state is not TcpState.TIME_WAIT and unread(sock, tcb):
        return _abort(kernel, sock, tcb)
    kernel.tcp.own(sock)
    if tcb.shut_wr:
        tcb.shut_wr = False
        if state is TcpState.FIN_WAIT2:
            enter_timewait(kernel, sock, tcb, TcpState.FIN_WAIT2, tcp_rtx.fin_wait2_lifetime(kernel, tcb))
        return ()
    return _send_fin(kernel, sock, tcb, from_host=from_host, bare=bare)


def unread(sock: Socket, tcb: Tcb) -> int:
    """Bytes of data in the receive queue, the peer's FIN not counted
    (tcp_close: data_was_unread)."""
    buf = tcb.rcvbuf
    if buf is None or not buf.queue:
        return 0
    end = buf.queue[-1][0]
    count = (end - buf.copied_seq) & MOD32
    if sock.state in _AFTER_FIN_STATES and end == tcb.rcv_nxt:
        count -= 1
    return max(count, 0)


def _abort(kernel: Kernel, sock: Socket, tcb: Tcb) -> tuple[bytes, ...]:
    """close() with unread data: the receive queue is freed, RST+ACK at
    tcp_acceptable_seq from the socket (its window, timestamps, IPv4 ID),
    and the connection is CLOSE (tcp_close, tcp_send_active_reset)."""
    buf = tcb.rcvbuf
    if buf is not None:
        buf.rmem_alloc -= sum(truesize for _, truesize in buf.queue)
        buf.queue.clear()
        buf.tailroom = 0
        buf.copied_seq = tcb.rcv_nxt
    wnd_end = (tcb.snd_una + tcb.snd_wnd) & MOD32
    seq = tcb.snd_nxt
    if seq_before(wnd_end, seq) and not (tcb.wscale_ok and (seq - wnd_end) & MOD32 < 1 << tcb.rcv_wscale):
        seq = wnd_end
    packet = tcp_rtx.segment_at(kernel, sock, tcb, seq, RST | ACK)
    if sock.inbox is not None:
        sock.inbox.clear()
    kernel.tcp.remove_established(sock)
    sock.state = TcpState.CLOSE
    return (packet,)


def shutdown_write(kernel: Kernel, sock: Socket) -> tuple[bytes, ...]:
    """tcp_shutdown(SEND_SHUTDOWN): the FIN from ESTABLISHED or CLOSE_WAIT;
    the socket keeps receiving (no RCV_SHUTDOWN)."""
    tcb = sock.tcb
    if not isinstance(tcb, Tcb) or not tcb.synced or sock.state not in _OPEN_STATES:
        return ()
    tcb.shut_wr = True
    return _send_fin(kernel, sock, tcb)


def _send_fin(kernel: Kernel, sock: Socket, tcb: Tcb, *, from_host: bool = False,
              bare: bool = True) -> tuple[bytes, ...]:
    """tcp_send_fin: FIN+ACK at SND.NXT; ESTABLISHED → FIN_WAIT1, CLOSE_WAIT
    → LAST_ACK; a bare FIN's retransmission timer (:func:`pktdemux.tcp_rtx.fin_sent`).
    ``from_host``/``bare`` as for :func:`close`."""
    if sock.state not in _OPEN_STATES:
        return ()
    sent: tuple[bytes, ...] = ()
    if not from_host:
        sent = (socket_segment(kernel, RequestOrigin(sock), tcb, FIN | ACK),)  # type: ignore[arg-type]
        tcb.snd_nxt = (tcb.snd_nxt + 1) & MOD32
    tcb.fin_sent = True
    sock.state = TcpState.FIN_WAIT1 if sock.state is TcpState.ESTABLISHED else TcpState.LAST_ACK
    if bare:
        tcp_rtx.fin_sent(kernel, sock, tcb)
    return sent
