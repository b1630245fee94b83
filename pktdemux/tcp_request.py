"""A segment for a pending request, SYN_RECV (net/ipv4/tcp_minisocks.c:
tcp_check_req; spec §3.4).

In the kernel's order: a retransmitted SYN gets the SYN-ACK again; an ACK of
anything but ISS+1 goes to the listener (which answers with a RST); an
out-of-window segment gets an ACK; an in-window RST at RCV.NXT kills the
request silently, elsewhere in the window it gets a challenge ACK; an
in-window SYN with a new sequence kills it with a RST+ACK; the correct final ACK creates the child socket in the
listener's accept queue, unless that queue is full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import reqsk_timer, tcp_conn, tcp_listen, tcp_rtx
from .dropreason import DropReason
from .sockets import Socket, TcpState
from .tcp_output import control_ack, send_reset, synack
from .tcp_ratelimit import limited, oow_rate_limited
from .tcp_segment import ACK, MOD32, RST, SYN, Segment, seq_after
from .tcp_table import release_request_slot
from .tcp_tcb import Tcb
from .tcp_verdict import tcp_deliver, tcp_drop
from .verdict import Verdict

if TYPE_CHECKING:
    from .kernel import Kernel

HANDLER = "tcp syn_recv"
_ECN_MASK = 0x03


def in_window(seq: int, end_seq: int, start: int, end: int) -> bool:
    """tcp_in_window (tcp_minisocks.c): the segment overlaps [start, end]."""
    if seq == start:
        return True
    if seq_after(end_seq, start) and seq_after(end, seq):
        return True
    return seq == end and seq == end_seq


def receive(kernel: Kernel, req: Socket, seg: Segment) -> Verdict:
    """Process ``seg`` for the request ``req`` (tcp_check_req)."""
    tcb: Tcb = req.tcb
    listener = req.parent
    assert listener is not None, "a request socket always has its listener as parent"
    flags = seg.flags & (RST | SYN | ACK)
    if seg.seq == tcb.irs and flags == SYN:
        return _retransmitted_syn(kernel, req, seg)
    if flags & ACK and seg.ack != (tcb.iss + 1) & MOD32:
        return tcp_listen.receive(kernel, listener, seg)
    if not in_window(seg.seq, seg.end_seq, tcb.rcv_nxt, (tcb.rcv_nxt + tcb.rcv_wnd) & MOD32):
        replies: tuple[bytes, ...] = ()
        if not flags & RST and not oow_rate_limited(kernel, tcb, seg):
            replies = (control_ack(kernel, seg, tcb, tos=seg.pkt.tos & ~_ECN_MASK),)
        return tcp_drop(DropReason.TCP_OVERWINDOW, HANDLER, "segment outside the request's window", replies)
    if seg.options.tsval is not None and not seq_after(seg.seq, tcb.rcv_nxt):
        tcb.ts_recent = seg.options.tsval
    if seg.seq == tcb.irs:
        flags &= ~SYN
    if flags & RST and seg.seq != tcb.rcv_nxt:
        return _challenge_rst(kernel, tcb, seg)
    if flags & (RST | SYN):
        return _embryonic_reset(kernel, req, seg, flags)
    if not flags & ACK:
        return tcp_drop(DropReason.NOT_SPECIFIED, HANDLER, "segment without ACK for a pending request")
    return _final_ack(kernel, req, seg)


def _retransmitted_syn(kernel: Kernel, req: Socket, seg: Segment) -> Verdict:
    tcb: Tcb = req.tcb
    if oow_rate_limited(kernel, tcb, seg):
        return tcp_drop(DropReason.NOT_SPECIFIED, HANDLER,
                        "retransmitted SYN within tcp_invalid_ratelimit: no SYN-ACK")
    reply = synack(kernel, seg, tcb)
    tcp_rtx.handshake_resent(tcb)
    reqsk_timer.rearm(kernel, req)
    return tcp_drop(DropReason.NOT_SPECIFIED, HANDLER, "retransmitted SYN: SYN-ACK sent again (same ISN)",
                    (reply,), ("inet_rtx_syn_ack from tcp_check_req",))


def _challenge_rst(kernel: Kernel, tcb: Tcb, seg: Segment) -> Verdict:
    """An in-window RST not at RCV.NXT: challenge ACK, the request stays
    (RFC 5961 §3.2; observed on Linux 6.18, probe req_rst)."""
    if limited(kernel, tcb):
        return tcp_drop(DropReason.TCP_RESET, HANDLER, "in-window RST not at RCV.NXT: challenge ACK suppressed")
    reply = control_ack(kernel, seg, tcb, tos=seg.pkt.tos & ~_ECN_MASK)
    return tcp_drop(DropReason.TCP_RESET, HANDLER, "in-window RST not at RCV.NXT: challenge ACK, request kept",
                    (reply,))


def _embryonic_reset(kernel: Kernel, req: Socket, seg: Segment, flags: int) -> Verdict:
    kernel.tcp.remove_established(req)
    if flags & RST:
        return tcp_drop(DropReason.NOT_SPECIFIED, HANDLER, "RST at RCV.NXT: request removed silently")
    return tcp_drop(DropReason.NOT_SPECIFIED, HANDLER, "in-window SYN with a new sequence: RST, request removed",
                    send_reset(kernel, seg), ("embryonic reset (tcp_check_req)",))


def _final_ack(kernel: Kernel, req: Socket, seg: Segment) -> Verdict:
    """The handshake's last ACK: child socket into the accept queue
    (tcp_v4_syn_recv_sock, inet_csk_complete_hashdance)."""
    listener = req.parent
    assert listener is not None
    queue = tcp_listen.queues(listener)
    tcb: Tcb = req.tcb
    if len(queue.accept_queue) > tcp_listen.backlog(kernel, listener):
        name = listener.display_name
        if not kernel.ip_sysctls.tcp_abort_on_overflow:
            tcb.acked = True
            return tcp_drop(DropReason.TCP_LISTEN_OVERFLOW, HANDLER,
                            f"accept queue of {name} full: final ACK dropped, request kept")
        kernel.tcp.remove_established(req)
        return tcp_drop(DropReason.TCP_LISTEN_OVERFLOW, HANDLER,
                        f"accept queue of {name} full, tcp_abort_on_overflow=1: RST",
                        send_reset(kernel, seg))
    release_request_slot(req)
    req.state = TcpState.ESTABLISHED
    kernel.tcp.own(req)
    tcb.deadline = 0.0
    tcb.last_oow_ack_time = None
    tcb.ip_id = kernel.entropy.socket_ip_id()
    tcb.tos = 0  # the child inherits the listener's TOS (0)
    queue.accept_queue.append(req)
    tcp_rtx.handshake_done(kernel, tcb, seg)
    verdict = tcp_conn.receive(kernel, req, seg)
    note = f"handshake complete: connection queued for accept() on {listener.display_name}"
    if verdict.note:
        note += "; " + verdict.note
    return tcp_deliver(req, HANDLER, note, verdict.replies,
                       ("final ACK: child socket ESTABLISHED (tcp_check_req)",) + verdict.steps)
