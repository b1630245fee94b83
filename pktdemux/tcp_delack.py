"""When a connection ACKs received data: at once or delayed (Linux 6.18,
net/ipv4/tcp_input.c: tcp_event_data_recv, tcp_incr_quickack,
tcp_enter_quickack_mode, tcp_in_quickack_mode, __tcp_ack_snd_check,
tcp_measure_rcv_mss's ICSK_ACK_PUSHED, tcp_fin; net/ipv4/tcp_output.c:
tcp_send_delayed_ack, tcp_event_ack_sent, tcp_event_data_sent;
net/ipv4/tcp_timer.c: tcp_delack_timer_handler; net/ipv4/tcp.c:
tcp_cleanup_rbuf).

State per connection (struct inet_connection_sock's icsk_ack, :class:`DelAck`):

* Quick-ACK credits: the first in-order data (ato still 0) gives
  ``quick`` = min(rcv_wnd / (2 * rcv_mss), 16) (at least 2), and ato =
  TCP_ATO_MIN (40 ms at HZ=250); a gap of more than the RTO since the last
  data gives them again; a segment that grows rcv_ssthresh
  (tcp_grow_window) makes ``quick`` odd (quick |= 1): while the window
  grows, its ACKs go at once.  Every ACK sent while an ACK was scheduled uses one;
  the last one resets ato to TCP_ATO_MIN.  Out-of-window and duplicate data
  refill them and leave pingpong mode (tcp_enter_quickack_mode).
* ato follows the gaps between data segments (tcp_event_data_recv): a gap
  of at most 20 ms makes it ato/2 + 20 ms, a gap below ato makes it ato/2 +
  the gap (at most the RTO).
* In-order data, or a FIN, schedules an ACK (inet_csk_schedule_ack).  It
  goes at once (__tcp_ack_snd_check) when more than one rcv_mss arrived
  since the last window was advertised and the window would not shrink
  (or everything was read), in quick-ACK mode (credits left and not
  pingpong), or when the segment filled the out-of-order gap
  (ICSK_ACK_NOW); else the delayed-ACK timer is armed for ato (capped by
  the RTT, at least TCP_DELACK_MIN, when ato grew past it), keeping an
  earlier expiry, and an ACK whose timer is within ato/4 of expiring goes
  at once.
* Any segment the socket sends with the ACK at RCV.NXT (a pure ACK, the
  host's data: the ACK rides on it) clears the scheduled ACK
  (tcp_event_ack_sent); the timer, cancelled, sends nothing.  Data sent
  within ato of the last data received makes the connection interactive
  (pingpong: net.ipv4.tcp_pingpong_thresh such replies, 1 by default):
  no quick ACKs then, and the delayed ACK usually rides on the answer.
  (Linux 5.1 to 6.0 counted only the first reply after data, by jiffies
  (before(lsndtime, lrcvtime)), so a connection whose exchanges all fall
  within one jiffy, as on loopback, never became interactive there.)
* The timer (a ``tcp_delack_timer`` row): the ACK, and ato doubled (at
  most the RTO), or out of pingpong mode with ato back to TCP_ATO_MIN.
* The peer's FIN in ESTABLISHED enters pingpong mode (tcp_fin): its ACK
  is delayed (data with a FIN: ~40 ms); in FIN_WAIT1/FIN_WAIT2 tcp_fin
  ACKs at once.
* The application's read (tcp_cleanup_rbuf) sends the scheduled ACK when
  more than one rcv_mss is unacknowledged, or when it emptied the receive
  buffer after a small segment (ICSK_ACK_PUSHED; a full-sized one with
  PSH too) outside pingpong mode (ICSK_ACK_PUSHED2: in it too).

Not modelled: SACK compression of out-of-order ACKs (they go at once),
the lss rule of tcp_measure_rcv_mss (rcv_mss taken from repeated sub-MSS
segments), the RTAX_QUICKACK route metric, TCP_QUICKACK, and the socket
lock (an ACK deferred while the application holds it).  Timers fire ato
after the segment, not on the jiffy the kernel's timer wheel rounds to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .tcp_rtx import HZ, TIMEOUT_INIT, usecs_to_jiffies
from .tcp_segment import MOD32

if TYPE_CHECKING:
    from .kernel import Kernel
    from .sockets import Socket
    from .tcp_segment import Segment
    from .tcp_tcb import Tcb

#: TCP_ATO_MIN, TCP_DELACK_MIN (HZ/25), TCP_DELACK_MAX (HZ/5), jiffies.
ATO_MIN = HZ // 25
DELACK_MIN = HZ // 25
DELACK_MAX = HZ // 5
#: TCP_MAX_QUICKACKS
MAX_QUICKACKS = 16
#: TCP_MIN_MSS, TCP_MSS_DEFAULT; the TCP header without options
_MIN_MSS, _MSS_DEFAULT, _TCPHDR = 88, 536, 20
#: The timer's name in timer rows.
WHAT = "tcp_delack_timer"

# icsk_ack.pending bits (enum inet_csk_ack_state_t)
SCHED, TIMER, PUSHED, PUSHED2, NOW = 1, 2, 4, 8, 16
# TCP_REMNANT: FIN, URG, SYN, PSH
_REMNANT = 0x01 | 0x20 | 0x02 | 0x08
_PSH = 0x08


@dataclass(slots=True)
class DelAck:
    """A connection's icsk_ack state (``Tcb.delack``).

    Attributes:
        quick: quick-ACK credits left.
        ato: the delayed-ACK timeout, jiffies (0 before any data).
        lrcvtime: jiffies of the last data received.
        pending: ICSK_ACK_* bits.
        timeout: when the armed timer fires (seconds since the epoch).
        pingpong: interactive-mode count.
        last_seg_size: tcp_measure_rcv_mss's last sub-MSS segment size.
        timer: the armed :class:`pktdemux.timers.Timer`, or None.
    """

    quick: int = 0
    ato: int = 0
    lrcvtime: int = 0
    pending: int = 0
    timeout: float = 0.0
    pingpong: int = 0
    last_seg_size: int = 0
    timer: Any = None



def in_pingpong(kernel: Kernel, d: DelAck) -> bool:
    """inet_csk_in_pingpong_mode: at least net.ipv4.tcp_pingpong_thresh."""
    return d.pingpong >= kernel.ip_sysctls.tcp_pingpong_thresh


def state(tcb: Tcb) -> DelAck:
    d = tcb.delack
    if d is None:
        d = tcb.delack = DelAck()
    return d  # type: ignore[no-any-return]


def _jiffies(kernel: Kernel) -> int:
    return int(kernel.now * HZ)


def _rto(tcb: Tcb) -> int:
    return tcb.rtt.rto if tcb.rtt is not None else TIMEOUT_INIT


def _incr_quickack(tcb: Tcb, d: DelAck, max_quickacks: int) -> None:
    """tcp_incr_quickack."""
    rcv_mss = tcb.rcvbuf.rcv_mss if tcb.rcvbuf is not None else _MSS_DEFAULT
    quickacks = tcb.rcv_wnd // (2 * rcv_mss) or 2
    quickacks = min(quickacks, max_quickacks)
    d.quick = max(d.quick, quickacks)


def enter_quickack_mode(tcb: Tcb) -> None:
    """tcp_enter_quickack_mode (out-of-window or duplicate data), and the
    ACK scheduled (inet_csk_schedule_ack)."""
    d = state(tcb)
    d.pending |= SCHED
    _incr_quickack(tcb, d, MAX_QUICKACKS)
    d.pingpong = 0
    d.ato = ATO_MIN


def data_recv(kernel: Kernel, tcb: Tcb, seg: Segment, rcv_mss_before: int, grew: bool) -> None:
    """tcp_event_data_recv for in-order data (RCV.NXT already moved; the
    receive buffer's rcv_mss already measured): the ACK is scheduled, the
    PUSHED bits of tcp_measure_rcv_mss, ato and the quick-ACK credits;
    ``grew``: tcp_grow_window raised rcv_ssthresh, which asks for a quick
    ACK to announce it (icsk_ack.quick |= 1)."""
    d = state(tcb)
    d.pending |= SCHED
    _measure_pushed(tcb, d, seg, rcv_mss_before)
    now = _jiffies(kernel)
    if not d.ato:
        _incr_quickack(tcb, d, MAX_QUICKACKS)
        d.ato = ATO_MIN
    else:
        m = now - d.lrcvtime
        if m <= ATO_MIN // 2:
            d.ato = (d.ato >> 1) + ATO_MIN // 2
        elif m < d.ato:
            d.ato = min((d.ato >> 1) + m, _rto(tcb))
        elif m > _rto(tcb):
            _incr_quickack(tcb, d, MAX_QUICKACKS)
    d.lrcvtime = now
    if grew:
        d.quick |= 1


def _measure_pushed(tcb: Tcb, d: DelAck, seg: Segment, rcv_mss: int) -> None:
    """The ACK-timing half of tcp_measure_rcv_mss."""
    lss = d.last_seg_size
    d.last_seg_size = 0
    length = seg.payload_len
    if length >= rcv_mss:
        if seg.flags & _PSH:
            d.pending |= PUSHED
        return
    length += seg.doff
    if length >= _MSS_DEFAULT + _TCPHDR or (length >= _MIN_MSS + _TCPHDR and not seg.flags & _REMNANT):
        length -= _TCPHDR + (12 if tcb.ts_ok else 0)
        d.last_seg_size = length
        if length == lss:
            return
    if d.pending & PUSHED:
        d.pending |= PUSHED2
    d.pending |= PUSHED


def schedule_ack(kernel: Kernel, tcb: Tcb, *, now: bool = False, pingpong: bool = False,
                 quick: bool = False) -> None:
    """inet_csk_schedule_ack (a FIN, out-of-order data); ``now``:
    ICSK_ACK_NOW (the segment filled the out-of-order gap); ``pingpong``:
    tcp_fin in ESTABLISHED; ``quick``: tcp_grow_window's quick |= 1."""
    d = state(tcb)
    d.pending |= SCHED | (NOW if now else 0)
    if quick:
        d.quick |= 1
    if pingpong:
        d.pingpong = kernel.ip_sysctls.tcp_pingpong_thresh  # inet_csk_enter_pingpong_mode


def ack_snd_check(kernel: Kernel, sock: Socket, tcb: Tcb) -> tuple[bytes, ...]:
    """__tcp_ack_snd_check: the ACK now (returned), or the delayed-ACK timer."""
    from .tcp_output import free_window

    d = tcb.delack
    if d is None or not d.pending & SCHED:
        return ()
    buf = tcb.rcvbuf
    unacked = (tcb.rcv_nxt - tcb.rcv_wup) & MOD32
    if (buf is not None and unacked > buf.rcv_mss
            and ((tcb.rcv_nxt - buf.copied_seq) & MOD32 < 1 or free_window(tcb, buf) >= tcb.rcv_wnd)) \
            or (d.quick and not in_pingpong(kernel, d)) or d.pending & NOW:
        return (send_ack(kernel, sock, tcb),)
    return send_delayed_ack(kernel, sock, tcb)


def send_ack(kernel: Kernel, sock: Socket, tcb: Tcb) -> bytes:
    """tcp_send_ack: an ACK from the socket (tcp_event_ack_sent follows in
    :func:`pktdemux.tcp_output.socket_segment`)."""
    from .tcp_output import RequestOrigin, socket_segment

    return socket_segment(kernel, RequestOrigin(sock), tcb)  # type: ignore[arg-type]


def send_delayed_ack(kernel: Kernel, sock: Socket, tcb: Tcb) -> tuple[bytes, ...]:
    """tcp_send_delayed_ack: arm the timer (an earlier expiry kept), or the
    ACK at once when the armed timer is about to expire."""
    d = state(tcb)
    ato = d.ato
    if ato > DELACK_MIN:
        max_ato = HZ // 2
        if in_pingpong(kernel, d) or d.pending & PUSHED:
            max_ato = DELACK_MAX
        rtt = tcb.rtt
        if rtt is not None and rtt.srtt_us:
            max_ato = min(max_ato, max(usecs_to_jiffies(rtt.srtt_us >> 3), DELACK_MIN))
        ato = min(ato, max_ato)
    ato = min(ato, DELACK_MAX)  # icsk_delack_max
    timeout = kernel.now + ato / HZ
    if d.pending & TIMER and d.timer is not None and d.timer.armed:
        if d.timeout <= kernel.now + (ato >> 2) / HZ:
            return (send_ack(kernel, sock, tcb),)
        timeout = min(d.timeout, timeout)
    d.pending |= SCHED | TIMER
    if d.timer is not None and d.timer.armed and d.timeout == timeout:
        return ()
    _cancel(d)
    d.timeout = timeout
    d.timer = kernel.timers.arm(timeout, WHAT, lambda now: _fire(kernel, sock))
    return ()


def _cancel(d: DelAck) -> None:
    if d.timer is not None:
        d.timer.cancel()
        d.timer = None


def ack_sent(tcb: Tcb) -> None:
    """tcp_event_ack_sent: a segment with the ACK at RCV.NXT went out
    (tcp_dec_quickack_mode, the scheduled ACK and its timer cleared)."""
    d = tcb.delack
    if d is None:
        return
    if d.quick:
        pkts = 1 if d.pending & SCHED else 0
        if pkts >= d.quick:
            d.quick = 0
            d.ato = ATO_MIN
        else:
            d.quick -= pkts
    d.pending = 0
    _cancel(d)


def data_sent(kernel: Kernel, tcb: Tcb) -> None:
    """tcp_event_data_sent: data sent within ato of the last data received
    makes the connection interactive (inet_csk_inc_pingpong_cnt)."""
    d = tcb.delack
    if d is None:
        return
    if (_jiffies(kernel) - d.lrcvtime) & MOD32 < d.ato and d.pingpong < 0xFF:
        d.pingpong += 1


def time_to_ack(kernel: Kernel, tcb: Tcb, copied: int) -> bool:
    """tcp_cleanup_rbuf after the application read ``copied`` bytes: the
    scheduled ACK goes now."""
    d = tcb.delack
    buf = tcb.rcvbuf
    if d is None or buf is None or not d.pending & SCHED:
        return False
    if (tcb.rcv_nxt - tcb.rcv_wup) & MOD32 > buf.rcv_mss:
        return True
    return bool(copied > 0 and (d.pending & PUSHED2 or d.pending & PUSHED and not in_pingpong(kernel, d))
                and not buf.rmem_alloc)


def _fire(kernel: Kernel, sock: Socket) -> list[bytes]:
    """tcp_delack_timer_handler."""
    from .sockets import TcpState
    from .tcp_table import established_key

    tcb = sock.tcb
    d = tcb.delack
    d.timer = None
    if kernel.tcp.established.get(established_key(sock)) is not sock or not d.pending & TIMER:
        return []
    if sock.state in (TcpState.CLOSE, TcpState.TIME_WAIT) or sock.state is TcpState.FIN_WAIT2 and not tcb.shut_wr:
        return []  # a timewait entry now: the full socket and its timer are gone
    d.pending &= ~TIMER
    if not d.pending & SCHED:
        return []
    if not in_pingpong(kernel, d):
        d.ato = min(d.ato << 1, _rto(tcb))
    else:
        d.pingpong = 0
        d.ato = ATO_MIN
    return [send_ack(kernel, sock, tcb)]
