"""The TCP receive path: header checks, checksum, socket lookup, then the
handler for the socket's state (net/ipv4/tcp_ipv4.c:tcp_v4_rcv,
net/ipv6/tcp_ipv6.c:tcp_v6_rcv; spec §2, §3).

Entry point: :func:`receive`, called by :mod:`pktdemux.ipv4` and
:mod:`pktdemux.ipv6` with a datagram that passed the network layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import tcp_conn, tcp_listen, tcp_request, tcp_synsent, tcp_timewait, tcp_trace
from .dropreason import DropReason
from .packet import IpPacket, RouteType
from .sockets import Socket, TcpState
from .tcp_output import send_reset
from .tcp_segment import RST, Segment, address_sum, parse_header
from .tcp_verdict import tcp_drop
from .verdict import Verdict, with_note
from .wire import (
    CSUM_BAD,
    CSUM_LOOPBACK,
    CSUM_OFFLOADED,
    OFFLOADED_NOTE,
    PROTO_TCP,
    received_checksum,
)

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

    Order (tcp_v4_rcv): header length, data offset, checksum (the rule all
    protocols share, :func:`pktdemux.wire.received_checksum`), established
    table, listener buckets, then the state handler.  With ``kernel.trace``
    a list, each step is appended to it (:mod:`pktdemux.tcp_trace`).
    """
    trace = kernel.trace
    header = parse_header(pkt)
    if header is None:
        return _early_drop(trace, DropReason.NOT_SPECIFIED, "TCP header shorter than 20 bytes (tcp_v4_rcv)")
    seg_bytes = len(pkt.raw) - pkt.l4_offset
    doff = (header[4] >> 4) * 4
    if doff < 20:
        return _early_drop(trace, DropReason.PKT_TOO_SMALL, f"TCP data offset {doff} below 20 (tcp_v4_rcv)")
    if doff > seg_bytes:
        return _early_drop(trace, DropReason.NOT_SPECIFIED,
                           f"TCP data offset {doff} beyond the {seg_bytes}-byte segment (tcp_v4_rcv)")
    addr_sum = address_sum(pkt.src, pkt.dst)
    csum = received_checksum(pkt.src, pkt.dst, PROTO_TCP, pkt.raw, pkt.l4_offset, 16, pkt.device, addr_sum)
    if csum == CSUM_BAD:
        return _early_drop(trace, DropReason.TCP_CSUM, "bad TCP checksum: dropped silently (tcp_checksum_complete)")
    seg = Segment(pkt, header, seg_bytes - doff, addr_sum)
    table = kernel.tcp
    expiry = table._expiry
    if expiry and expiry[0][0] <= kernel.now:
        table.expire(kernel.now)
    sock = table.lookup_established(pkt, seg.sport, seg.dport)
    if trace is not None:
        verdict = _traced(kernel, trace, sock, seg, csum)
    elif sock is not None:
        verdict = dispatch(kernel, sock, seg)
    else:
        sock = table.lookup_listener(kernel.entropy, pkt, seg.sport, seg.dport)
        verdict = no_socket(kernel, seg) if sock is None else dispatch(kernel, sock, seg)
    if csum == CSUM_OFFLOADED:
        verdict = with_note(verdict, OFFLOADED_NOTE)
    return verdict


def _traced(kernel: Kernel, trace: list[str], sock: Socket | None, seg: Segment, csum: str) -> Verdict:
    """The lookup and dispatch of :func:`receive`, recording each step."""
    if csum == CSUM_OFFLOADED:
        trace.append("TCP checksum holds the pseudo-header sum alone: taken as offloaded (CHECKSUM_PARTIAL)")
    elif csum == CSUM_LOOPBACK:
        trace.append("TCP checksum not verified on lo (loopback_xmit: CHECKSUM_PARTIAL)")
    else:
        trace.append("TCP checksum verifies (tcp_checksum_complete; RFC 9293 §3.1)")
    if sock is not None:
        trace.append(tcp_trace.established_hit(sock, seg))
    else:
        trace.append(tcp_trace.established_miss(seg))
        sock = kernel.tcp.lookup_listener(kernel.entropy, seg.pkt, seg.sport, seg.dport, trace)
        if sock is None:
            trace.append(tcp_trace.no_listener(seg))
            verdict = no_socket(kernel, seg)
            trace.append(tcp_trace.outcome(verdict))
            return verdict
    trace.append(tcp_trace.state_step(sock))
    verdict = dispatch(kernel, sock, seg)
    trace.extend(verdict.steps)
    trace.append(tcp_trace.outcome(verdict))
    return verdict


def _early_drop(trace: list[str] | None, reason: DropReason, note: str) -> Verdict:
    if trace is not None:
        trace.append(note)
    return tcp_drop(reason, "tcp", note)


def dispatch(kernel: Kernel, sock, seg: Segment) -> Verdict:  # type: ignore[no-untyped-def]
    """Hand ``seg`` to the handler of ``sock``'s state."""
    state = sock.state
    if state is TcpState.LISTEN:
        return tcp_listen.receive(kernel, sock, seg)
    if state is TcpState.SYN_RECV:
        return tcp_request.receive(kernel, sock, seg)
    if state is TcpState.TIME_WAIT or (state is TcpState.FIN_WAIT2 and not getattr(sock.tcb, "shut_wr", False)):
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
