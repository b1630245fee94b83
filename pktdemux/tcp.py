"""The TCP receive path: header checks, checksum, socket lookup, then the
handler for the socket's state (net/ipv4/tcp_ipv4.c:tcp_v4_rcv,
net/ipv6/tcp_ipv6.c:tcp_v6_rcv; spec §2, §3).

Entry point: :func:`receive`, called by :mod:`pktdemux.ipv4` and
:mod:`pktdemux.ipv6` with a datagram that passed the network layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import tcp_conn, tcp_listen, tcp_request, tcp_synsent, tcp_timewait
from .dropreason import DropReason
from .packet import IpPacket, RouteType
from .sockets import TcpState
from .tcp_output import send_reset
from .tcp_segment import RST, Segment, address_sum, parse_header
from .tcp_verdict import tcp_drop
from .verdict import Verdict
from .wire import PROTO_TCP

if TYPE_CHECKING:
    from .kernel import Kernel

HANDLER_NO_SOCKET = "tcp no socket"
_NO_SOCKET_STEPS = ("no socket for the 4-tuple, no listener (__inet_lookup_skb)",)


def receive(kernel: Kernel, pkt: IpPacket) -> Verdict:
    """Run one TCP segment through the receive path.

    Args:
        kernel: the emulated host (tables, sysctls, entropy, ``now``).
        pkt: the datagram; ``pkt.proto`` is TCP.

    Returns:
        The verdict with the replies.  Never raises for malformed input.

    Order (tcp_v4_rcv): header length, data offset, checksum, established
    table, listener buckets, then the state handler.
    """
    header = parse_header(pkt)
    if header is None:
        return tcp_drop(DropReason.NOT_SPECIFIED, "tcp", "TCP header shorter than 20 bytes (tcp_v4_rcv)")
    seg_bytes = len(pkt.raw) - pkt.l4_offset
    doff = (header[4] >> 4) * 4
    if doff < 20:
        return tcp_drop(DropReason.PKT_TOO_SMALL, "tcp", f"TCP data offset {doff} below 20 (tcp_v4_rcv)")
    if doff > seg_bytes:
        return tcp_drop(DropReason.NOT_SPECIFIED, "tcp", f"TCP data offset {doff} beyond the {seg_bytes}-byte segment")
    addr_sum = address_sum(pkt.src, pkt.dst)
    if not checksum_ok(pkt, addr_sum):
        return tcp_drop(DropReason.TCP_CSUM, "tcp", "bad TCP checksum: dropped silently (tcp_checksum_complete)")
    seg = Segment(pkt, header, seg_bytes - doff, addr_sum)
    table = kernel.tcp
    table.expire(kernel.now)
    sock = table.lookup_established(pkt, seg.sport, seg.dport)
    if sock is None:
        sock = table.lookup_listener(kernel.entropy, pkt, seg.sport, seg.dport)
        if sock is None:
            return no_socket(kernel, seg)
    return dispatch(kernel, sock, seg)


def checksum_ok(pkt: IpPacket, addr_sum: int | None = None) -> bool:
    """The TCP checksum verifies (tcp_checksum_complete), or was left for the
    NIC: a segment captured on its sending host (checksum offload,
    CHECKSUM_PARTIAL, as on loopback) holds only the pseudo-header sum.

    ``addr_sum`` is :func:`~pktdemux.tcp_segment.address_sum` of the
    addresses, when the caller has it.  One pass over the segment: its
    big-endian integer modulo 0xFFFF is its 16-bit word sum (RFC 1071).
    """
    raw = pkt.raw
    l4 = pkt.l4_offset
    length = len(raw) - l4
    if addr_sum is None:
        addr_sum = address_sum(pkt.src, pkt.dst)
    data = int.from_bytes(raw[l4:], "big")
    if length & 1:
        data <<= 8  # pad the odd byte to a word
    pseudo = addr_sum + PROTO_TCP + length
    if (pseudo + data) % 0xFFFF == 0:
        return True
    return partial_checksum(raw, l4, pseudo)


def partial_checksum(raw: bytes, l4: int, pseudo: int) -> bool:
    """The checksum field holds the folded pseudo-header sum ``pseudo`` alone
    (CHECKSUM_PARTIAL left for the NIC), as a capture on the sender shows it."""
    folded = pseudo % 0xFFFF or 0xFFFF
    return raw[l4 + 16] << 8 | raw[l4 + 17] == folded


def dispatch(kernel: Kernel, sock, seg: Segment) -> Verdict:  # type: ignore[no-untyped-def]
    """Hand ``seg`` to the handler of ``sock``'s state."""
    state = sock.state
    if state is TcpState.LISTEN:
        return tcp_listen.receive(kernel, sock, seg)
    if state is TcpState.SYN_RECV:
        return tcp_request.receive(kernel, sock, seg)
    if state is TcpState.TIME_WAIT or state is TcpState.FIN_WAIT2:
        return tcp_timewait.receive(kernel, sock, seg)
    if state is TcpState.SYN_SENT:
        return tcp_synsent.receive(kernel, sock, seg)
    return tcp_conn.receive(kernel, sock, seg)


def no_socket(kernel: Kernel, seg: Segment) -> Verdict:
    """No socket matched: RST per spec §3.1 (tcp_v4_rcv ``no_tcp_socket``).

    Never for a RST, never unless the destination is a local unicast address
    (tcp_v4_send_reset checks RTN_LOCAL; IPv6 ipv6_unicast_destination).
    """
    where = f"port {seg.dport}"
    if seg.flags & RST:
        return tcp_drop(DropReason.NO_SOCKET, HANDLER_NO_SOCKET,
                        f"no socket on tcp {where}; a RST is never answered", steps=_NO_SOCKET_STEPS)
    if seg.pkt.route is not RouteType.LOCAL:
        return tcp_drop(DropReason.NO_SOCKET, HANDLER_NO_SOCKET,
                        f"no socket on tcp {where}; no RST to a {seg.pkt.route.value} destination",
                        steps=_NO_SOCKET_STEPS)
    replies = send_reset(kernel, seg, socket_found=False)
    if not replies:
        return tcp_drop(DropReason.NO_SOCKET, HANDLER_NO_SOCKET,
                        f"no socket on tcp {where}; IP options cannot be echoed: no RST", steps=_NO_SOCKET_STEPS)
    return tcp_drop(DropReason.NO_SOCKET, HANDLER_NO_SOCKET, f"no socket on tcp {where}: RST sent", replies,
                    _NO_SOCKET_STEPS + ("RST per RFC 9293 §3.10.7.1 (tcp_v4_send_reset)",))
