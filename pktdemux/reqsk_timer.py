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

Not modelled: the pruning of old requests when the SYN queue is more than
half full (the "young" count), TCP_DEFER_ACCEPT, a listener's TCP_SYNCNT,
and the re-arming of the timer when a retransmitted SYN is answered
(tcp_check_req).

The timer is armed through :class:`TimedTcpTable`, which the kernel uses as
its TCP table: registering a request for expiry (:meth:`TcpTable.schedule`)
also arms its SYN-ACK timer, so the TCP modules need no change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    kernel.timers.arm(kernel.now + TIMEOUT_INIT, WHAT, lambda now: fire(kernel, req, 0))


def fire(kernel: Kernel, req: Socket, num_timeout: int) -> list[bytes]:
    """reqsk_timer_handler: retransmit and re-arm, or drop the request.

    Returns the retransmitted SYN-ACK, or nothing when the request is gone
    (completed, reset, expired) or is dropped now.
    """
    if req.state is not TcpState.SYN_RECV or kernel.tcp.established.get(established_key(req)) is not req:
        return []
    if num_timeout >= kernel.sysctls.int("net.ipv4.tcp_synack_retries"):
        kernel.tcp.remove_established(req)
        return []
    tcb: Tcb = req.tcb
    packet = synack(kernel, origin(req), tcb)
    num_timeout += 1
    kernel.timers.arm(kernel.now + timeout(num_timeout), WHAT, lambda now: fire(kernel, req, num_timeout))
    return [packet]


class TimedTcpTable(TcpTable):
    """The TCP table with SYN-ACK timers: a request registered for expiry
    also gets its retransmission timer (:func:`arm`)."""

    __slots__ = ("_kernel",)

    def __init__(self, kernel: Kernel) -> None:
        super().__init__()
        self._kernel = kernel

    def schedule(self, sock: Socket) -> None:
        """:meth:`TcpTable.schedule`, and :func:`arm` for a new request."""
        super().schedule(sock)
        if sock.state is TcpState.SYN_RECV:
            arm(self._kernel, sock)
