"""The SYN-ACK timer of a half-open request (net/ipv4/inet_connection_sock.c:
reqsk_timer_handler, net/ipv4/tcp_output.c:tcp_rtx_synack; spec §3.4).

A request (SYN_RECV) arms its timer for TCP_TIMEOUT_INIT (1 s) when it is
created.  Each time it fires, while fewer than ``net.ipv4.tcp_synack_retries``
(5) retransmissions were made, the SYN-ACK is sent again (same ISN, window
and options; TSval from the clock of the moment, so it advances) and the
timer is re-armed for 1 s << retransmissions so far, at most TCP_RTO_MAX
(120 s): with the default, SYN-ACKs at +1, +3, +7, +15, +31 s, and the
request is dropped at +63 s.  A request whose final ACK was dropped on a
full accept queue (``acked``) goes on the same way.

A retransmitted SYN answered with the SYN-ACK again moves the pending timer
to now + (1 s << firings so far) (tcp_check_req, :func:`rearm`).  A request
that leaves SYN_RECV (completed, reset, expired) stops its timer
(:func:`pktdemux.tcp_table.release_request_slot`).

Not modelled: the pruning of old requests when the SYN queue is more than
half full (the "young" count), TCP_DEFER_ACCEPT, a listener's TCP_SYNCNT.

The timer is armed through :class:`TimedTcpTable`, which the kernel uses as
its TCP table: registering a request for expiry (:meth:`TcpTable.schedule`)
also arms its SYN-ACK timer, so the TCP modules need no change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import tcp_rtx
from .packet import IpPacket, RouteType
from .sockets import V4_MAPPED_PREFIX, Socket, TcpState
from .tcp_output import synack
from .tcp_segment import SYN, Segment
from .tcp_table import TcpTable, established_key

if TYPE_CHECKING:
    from .kernel import Kernel
    from .tcp_tcb import Tcb

#: TCP_TIMEOUT_INIT: the first SYN-ACK timeout, seconds.
TIMEOUT_INIT = 1.0
#: TCP_RTO_MAX: the longest SYN-ACK timeout, seconds.
RTO_MAX = 120.0
WHAT = "reqsk_timer"


def _plain(addr: bytes) -> bytes:
    return addr[12:] if len(addr) == 16 and addr.startswith(V4_MAPPED_PREFIX) else addr


def origin(req: Socket) -> Segment:
    """The request's SYN as far as a SYN-ACK needs it: addresses (v4-mapped
    ones of a dual-stack listener's IPv4 request become IPv4 again), ports
    and the initial sequence number; no options (the request holds them)."""
    assert req.remote_addr is not None
    local, remote = _plain(req.local_addr), _plain(req.remote_addr)
    pkt = IpPacket(4 if len(local) == 4 else 6, remote, local, 6, 0, 0, 0, 0, b"", 0, b"",
                   RouteType.LOCAL, req.device or "")
    irs = req.tcb.irs if req.tcb is not None else 0
    return Segment(pkt, (req.remote_port, req.local_port, irs, 0, 5 << 4, SYN, 0, 0, 0), 0)


def timeout(retransmissions: int) -> float:
    """reqsk_timeout: seconds until the next firing after ``retransmissions``."""
    return min(TIMEOUT_INIT * (1 << min(retransmissions, 16)), RTO_MAX)


def arm(kernel: Kernel, req: Socket) -> None:
    """Arm the SYN-ACK timer of a new request (reqsk_queue_hash_req)."""
    req.tcb.num_timeout = 0
    _arm_at(kernel, req, kernel.now + TIMEOUT_INIT)


def _arm_at(kernel: Kernel, req: Socket, due: float) -> None:
    req.tcb.synack_timer = kernel.timers.arm(due, WHAT, lambda now: fire(kernel, req))


def rearm(kernel: Kernel, req: Socket) -> None:
    """A retransmitted SYN was answered with a SYN-ACK: the pending timer is
    moved to now + reqsk_timeout, 1 s << the firings so far, at most
    TCP_RTO_MAX (tcp_check_req: mod_timer_pending).  The request now lives
    until that timer's last run, so its expiry moves with it."""
    tcb: Tcb = req.tcb
    timer = tcb.synack_timer
    if timer is None or not timer.armed:
        return  # mod_timer_pending changes only a pending timer
    timer.cancel()
    due = kernel.now + timeout(tcb.num_timeout)
    _arm_at(kernel, req, due)
    retries = kernel.ip_sysctls.tcp_synack_retries
    tcb.deadline = due + sum(timeout(n) for n in range(tcb.num_timeout + 1, retries + 1))
    kernel.tcp.schedule(req)


def fire(kernel: Kernel, req: Socket) -> list[bytes]:
    """reqsk_timer_handler: retransmit and re-arm, or drop the request.

    Returns the retransmitted SYN-ACK, or nothing when the request is gone
    (completed, reset, expired) or is dropped now.
    """
    tcb: Tcb = req.tcb
    if tcb is not None and getattr(tcb, "synack_timer", None) is not None:
        tcb.synack_timer = None
    if req.state is not TcpState.SYN_RECV or kernel.tcp.established.get(established_key(req)) is not req:
        return []
    if tcb.num_timeout >= kernel.ip_sysctls.tcp_synack_retries:
        kernel.tcp.remove_established(req)
        return []
    packet = synack(kernel, origin(req), tcb)
    tcb.num_timeout += 1
    tcp_rtx.handshake_resent(tcb)
    _arm_at(kernel, req, kernel.now + timeout(tcb.num_timeout))
    return [packet]


class TimedTcpTable(TcpTable):
    """The TCP table with SYN-ACK timers: a request registered for expiry
    also gets its retransmission timer (:func:`arm`), once."""

    __slots__ = ("_kernel",)

    def __init__(self, kernel: Kernel) -> None:
        super().__init__()
        self._kernel = kernel

    def schedule(self, sock: Socket) -> None:
        """:meth:`TcpTable.schedule`, and :func:`arm` for a new request."""
        super().schedule(sock)
        if sock.state is TcpState.SYN_RECV and getattr(sock.tcb, "synack_timer", 0) is None:
            arm(self._kernel, sock)
