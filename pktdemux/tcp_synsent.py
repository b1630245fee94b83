"""A connecting socket, SYN_SENT: the SYN connect() sends, its
retransmission timer, and the segments it receives (net/ipv4/tcp_output.c:
tcp_connect, net/ipv4/tcp_timer.c:tcp_retransmit_timer, net/ipv4/tcp_input.c:
tcp_rcv_synsent_state_process; spec §3.8).

A SYN_SENT socket is made by :meth:`pktdemux.kernel.Kernel.connect` with
``handshake=True`` (:func:`start`), or by :meth:`pktdemux.kernel.Kernel.transmit`
when the host's own SYN (a connect()) appears in a capture; its TCB holds
the SYN's ISN, options and window, so the emulation's third ACK is the host's.

The SYN is retransmitted (same ISN, TSval from the clock of the moment) 1 s
after it was sent, then every second while fewer than
``net.ipv4.tcp_syn_linear_timeouts`` (4) timeouts have passed, then with the
timeout doubling; after ``tcp_syn_retries`` + ``tcp_syn_linear_timeouts``
retransmissions the next expiry ends the connect() with ETIMEDOUT
(tcp_write_timeout).  An unacceptable ACK before any retransmission brings
the next one forward to TCP_TIMEOUT_MIN.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from . import tcp_rtx
from .dropreason import DropReason
from .sockets import V4_MAPPED_PREFIX, Socket, TcpState
from .tcp_listen import initial_window, route_initrwnd
from .tcp_options import syn_options
from .tcp_output import (
    TS_ALIGNED,
    RequestOrigin,
    device_mtu,
    reply,
    send_reset,
    socket_segment,
    tsval,
)
from .tcp_segment import ACK, CWR, ECE, MOD32, RST, SYN, Segment, seq_after
from .tcp_tcb import Tcb
from .tcp_verdict import tcp_deliver, tcp_drop
from .verdict import Verdict

if TYPE_CHECKING:
    from .kernel import Kernel

HANDLER = "tcp syn_sent"
#: TCP_TIMEOUT_INIT: the SYN's first retransmission timeout, seconds.
TIMEOUT_INIT = 1.0
#: TCP_TIMEOUT_MIN, 2 jiffies: 8 ms at HZ=250 (the kernel the oracle runs).
TIMEOUT_MIN = 0.008
#: TCP_RTO_MAX, seconds.
RTO_MAX = 120.0
WHAT = "tcp_retransmit_timer"
_IPV4_OVERHEAD = 40
_IPV6_OVERHEAD = 60


def start(kernel: Kernel, sock: Socket) -> bytes:
    """tcp_connect: the TCB of a socket connect() just addressed (SYN_SENT,
    in the established table), its SYN, and the retransmission timer.

    The SYN (tcp_connect_init, tcp_syn_options): a random ISN, MSS from the
    device MTU, SACK-permitted, timestamps and window scaling as their
    sysctls allow, ECE+CWR only with tcp_ecn=1, the window of
    tcp_select_initial_window unscaled (at most the route's initrwnd × the
    MSS: the route out of the device a reply to the peer leaves by), DF,
    TOS 0, the socket's IPv4 ID.
    """
    sysctls = kernel.ip_sysctls
    remote = sock.remote_addr or b""
    v6 = len(remote) == 16 and not remote.startswith(V4_MAPPED_PREFIX)
    mtu = device_mtu(kernel, sock.device or kernel.default_device)
    mss = mtu - (_IPV6_OVERHEAD if v6 else _IPV4_OVERHEAD)
    wscale_ok = bool(sysctls.tcp_window_scaling)
    route_device = kernel.routing.output_device(remote[12:] if remote.startswith(V4_MAPPED_PREFIX) else remote,
                                                sock.device or kernel.default_device)
    rcv_wnd, rcv_wscale = initial_window(kernel, mss, wscale_ok, route_initrwnd(kernel, route_device))
    isn = kernel.entropy.isn()
    tcb = Tcb(
        iss=isn, snd_una=isn, snd_nxt=(isn + 1) & MOD32, rcv_wnd=rcv_wnd, mss=mss,
        rcv_mss=mss, rcv_wscale=rcv_wscale, wscale_ok=wscale_ok, ts_ok=bool(sysctls.tcp_timestamps),
        ts_offset=kernel.entropy.ts_offset(), sack_ok=bool(sysctls.tcp_sack), ecn_ok=sysctls.tcp_ecn == 1,
        ip_id=kernel.entropy.socket_ip_id(),
    )
    sock.tcb = tcb
    sock.state = TcpState.SYN_SENT
    tcp_rtx.handshake_sent(kernel, tcb)
    _arm(kernel, sock, kernel.now + TIMEOUT_INIT)
    return syn(kernel, sock)


def syn(kernel: Kernel, sock: Socket) -> bytes:
    """The SYN of ``sock`` as sent now (a retransmission has the same ISN
    and options, and the TSval of the moment)."""
    tcb: Tcb = sock.tcb
    ts = (tsval(kernel, tcb), 0) if tcb.ts_ok else None
    options = syn_options(tcb.mss, ts, tcb.sack_ok, tcb.rcv_wscale if tcb.wscale_ok else None)
    flags = SYN | (ECE | CWR if tcb.ecn_ok else 0)
    ip_id = tcb.ip_id
    tcb.ip_id = (ip_id + 1) & 0xFFFF
    origin = RequestOrigin(sock)  # the peer's side, as a reply builder wants it
    return reply(kernel, origin, tcb.iss, 0, flags, min(tcb.rcv_wnd, 0xFFFF), options,  # type: ignore[arg-type]
                 tos=tcb.tos, ip_id=ip_id)


def _arm(kernel: Kernel, sock: Socket, due: float) -> None:
    tcb: Tcb = sock.tcb
    if tcb.rtx_timer is not None:
        tcb.rtx_timer.cancel()
    tcb.rtx_timer = kernel.timers.arm(due, WHAT, lambda now: _fire(kernel, sock))


def _timeout(kernel: Kernel, timeouts: int) -> float:
    """The RTO after ``timeouts`` expiries: 1 s while at most
    tcp_syn_linear_timeouts, then doubling (tcp_retransmit_timer)."""
    doublings = max(0, timeouts - kernel.ip_sysctls.tcp_syn_linear_timeouts)
    return min(TIMEOUT_INIT * (1 << min(doublings, 16)), RTO_MAX)


def _fire(kernel: Kernel, sock: Socket) -> list[bytes]:
    """tcp_retransmit_timer for a SYN_SENT socket: the SYN again, or ETIMEDOUT."""
    tcb: Tcb = sock.tcb
    tcb.rtx_timer = None
    if sock.state is not TcpState.SYN_SENT:
        return []
    sysctls = kernel.ip_sysctls
    if tcb.num_timeout >= sysctls.tcp_syn_retries + sysctls.tcp_syn_linear_timeouts:
        done(kernel, sock, errno.ETIMEDOUT)
        return []
    tcb.num_timeout += 1
    tcp_rtx.handshake_resent(tcb)
    packet = syn(kernel, sock)
    _arm(kernel, sock, kernel.now + _timeout(kernel, tcb.num_timeout))
    return [packet]


def done(kernel: Kernel, sock: Socket, error: int) -> None:
    """tcp_done with ``error`` in sk_err: the connect() failed, the socket is
    CLOSE and leaves the tables (its timer stops)."""
    tcb = sock.tcb
    timer = getattr(tcb, "rtx_timer", None)
    if timer is not None:
        timer.cancel()
        tcb.rtx_timer = None
    sock.so_error = error
    kernel.tcp.remove_established(sock)
    sock.state = TcpState.CLOSE


def receive(kernel: Kernel, sock: Socket, seg: Segment) -> Verdict:
    """Process ``seg`` for ``sock`` in SYN_SENT."""
    tcb: Tcb = sock.tcb
    flags = seg.flags
    if flags & ACK:
        if not seq_after(seg.ack, tcb.snd_una) or seq_after(seg.ack, tcb.snd_nxt):
            if tcb.num_timeout == 0 and tcb.rtx_timer is not None:
                _arm(kernel, sock, kernel.now + TIMEOUT_MIN)  # "previous FIN/ACK or RST/ACK might be ignored"
            replies = send_reset(kernel, seg)
            what = "RST seq=SEG.ACK" if replies else "dropped"
            return tcp_drop(DropReason.TCP_INVALID_ACK_SEQUENCE, HANDLER,
                            f"SYN-SENT: ACK of something other than our SYN: {what}, the SYN is retransmitted "
                            "at once", replies)
        if flags & RST:
            done(kernel, sock, errno.ECONNREFUSED)
            return tcp_deliver(sock, HANDLER, "connection refused (RST+ACK): ECONNREFUSED")
        if not flags & SYN:
            return tcp_drop(DropReason.TCP_FLAGS, HANDLER, "SYN-SENT: ACK without SYN")
        return _established(kernel, sock, tcb, seg)
    if flags & RST:
        return tcp_drop(DropReason.TCP_RESET, HANDLER, "SYN-SENT: RST without ACK ignored")
    return tcp_drop(DropReason.TCP_FLAGS, HANDLER, "SYN-SENT: segment without ACK (simultaneous open not modelled)")


def _established(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> Verdict:
    """A valid SYN-ACK: ESTABLISHED and the third ACK (tcp_finish_connect, tcp_send_ack)."""
    opts = seg.options
    tcb.irs = seg.seq
    tcb.rcv_nxt = tcb.rcv_wup = (seg.seq + 1) & MOD32
    tcb.snd_una = seg.ack
    tcb.ts_ok = tcb.ts_ok and opts.tsval is not None
    if tcb.ts_ok:
        tcb.ts_recent = opts.tsval or 0
        tcb.rcv_mss = tcb.mss - TS_ALIGNED
    tcb.wscale_ok = tcb.wscale_ok and opts.wscale is not None
    tcb.snd_wscale = min(opts.wscale or 0, 14) if tcb.wscale_ok else 0
    if not tcb.wscale_ok:
        tcb.rcv_wscale = 0
    tcb.sack_ok = tcb.sack_ok and opts.sack_ok
    tcb.snd_wnd = tcb.max_window = seg.window
    sock.state = TcpState.ESTABLISHED
    if tcb.rtx_timer is not None:
        tcb.rtx_timer.cancel()
        tcb.rtx_timer = None
    tcp_rtx.handshake_done(kernel, tcb, seg)
    reply = socket_segment(kernel, seg, tcb)
    return tcp_deliver(sock, HANDLER, "SYN-ACK: connection established, third ACK", (reply,))
