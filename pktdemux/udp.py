"""UDP receive path (spec §4): validation, socket lookup, fan-out, and the
ICMP port unreachable when nobody listens.

Sources: net/ipv4/udp.c:__udp4_lib_rcv, __udp4_lib_mcast_deliver;
net/ipv6/udp.c:__udp6_lib_rcv; RFC 768; RFC 8200 §8.1 (zero checksum is
invalid over IPv6).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import icmp
from .dropreason import DropReason
from .packet import IpPacket, RouteType
from .sockets import Socket
from .verdict import Verdict, deliver, drop, with_note
from .wire import (
    CSUM_BAD,
    CSUM_LOOPBACK,
    CSUM_OFFLOADED,
    CSUM_OK,
    OFFLOADED_NOTE,
    PROTO_UDP,
    format_endpoint,
    received_checksum,
)

if TYPE_CHECKING:
    from .kernel import Kernel

_HEADER = struct.Struct("!HHHH")


def receive(kernel: Kernel, pkt: IpPacket) -> Verdict:
    """Deliver one UDP datagram to its socket(s), or drop it.

    Returns:
        deliver to one socket (unicast) or every matching socket
        (broadcast/multicast); otherwise a drop: NOT_SPECIFIED for fewer
        than 8 bytes, PKT_TOO_SMALL for a bad UDP length, UDP_CSUM for a bad
        checksum (also when a socket matched: the kernel queues it and
        discards it at recvmsg, nothing on the wire), NO_SOCKET with ICMP
        3/3 or ICMPv6 1/4 (IPv6 zero checksum: NO_SOCKET, no error), or
        NOT_SPECIFIED for a broadcast/multicast nobody wants (IgnoredMulti).
        A checksum field holding only the pseudo-header sum is taken as
        offloaded, and none is verified on ``lo`` (see
        :func:`pktdemux.wire.received_checksum`).
    """
    seg = pkt.l4
    n = len(seg)
    if n < 8:
        return drop(DropReason.NOT_SPECIFIED, f"{n} bytes: shorter than a UDP header", handler="udp")
    sport, dport, ulen, csum = _HEADER.unpack_from(seg)
    v6 = pkt.version == 6
    if v6 and ulen == 0:
        ulen = n  # jumbogram: the IP payload length counts
    if ulen > n:
        return drop(DropReason.PKT_TOO_SMALL, f"UDP length {ulen} beyond the {n} bytes received", handler="udp")
    if ulen < 8:
        return drop(DropReason.PKT_TOO_SMALL, f"UDP length {ulen} below 8", handler="udp")
    datagram = pkt.raw
    if ulen < n:
        # pskb_trim_rcsum: what follows the UDP length is dropped, even from an ICMP quote
        seg = seg[:ulen]
        datagram = datagram[:pkt.l4_offset + ulen]
    if csum == 0:
        state = ""  # "no checksum"; over IPv6 only UDP_NO_CHECK6_RX sockets take it
    else:
        state = received_checksum(pkt.src, pkt.dst, PROTO_UDP, seg, 0, 6, pkt.device)
    if kernel.trace is not None:
        kernel.trace.append(f"UDP {sport} -> {dport}, length {ulen}, checksum {_CSUM_WORDS[state]} "
                            f"({'__udp6_lib_rcv' if v6 else '__udp4_lib_rcv'}, udp_lib_checksum_complete; spec §4.1)")
    if pkt.route is not RouteType.LOCAL or (v6 and pkt.dst[0] == 0xFF):
        verdict = _multicast(kernel, pkt, sport, dport, seg, state != CSUM_BAD, csum == 0)
    else:
        verdict = _unicast(kernel, pkt, sport, dport, seg, state != CSUM_BAD, csum == 0, datagram)
    if state == CSUM_OFFLOADED:
        verdict = with_note(verdict, OFFLOADED_NOTE)
    return verdict


_CSUM_WORDS = {
    "": "0 (none sent)", CSUM_OK: "ok", CSUM_OFFLOADED: "left to offload (pseudo-header sum only)",
    CSUM_LOOPBACK: "not verified on lo", CSUM_BAD: "bad",
}


def _flow_hash(kernel: Kernel, pkt: IpPacket, sport: int, dport: int):  # type: ignore[no-untyped-def]
    return lambda: kernel.entropy.reuseport_hash(pkt.src, sport, pkt.dst, dport, PROTO_UDP)


def _unicast(kernel: Kernel, pkt: IpPacket, sport: int, dport: int, seg: bytes, csum_ok: bool,
             zero_csum: bool, datagram: bytes) -> Verdict:
    table = kernel.udp
    trace = kernel.trace
    if pkt.version == 4:
        sock = table.lookup4(pkt.src, sport, pkt.dst, dport, pkt.device, _flow_hash(kernel, pkt, sport, dport),
                             trace)
    else:
        sock = table.lookup6(pkt.src, sport, pkt.dst, dport, pkt.device, _flow_hash(kernel, pkt, sport, dport),
                             trace)
    if trace is not None and sock is None:
        trace.append("no socket matched (__udp4_lib_lookup / __udp6_lib_lookup)")
    if sock is not None:
        if pkt.version == 6 and zero_csum and not sock.no_check6_rx:
            return drop(DropReason.UDP_CSUM, f"zero UDP checksum over IPv6 for {sock.display_name}",
                        handler="udp unicast")
        if not csum_ok:
            return drop(DropReason.UDP_CSUM, f"bad UDP checksum: queued to {sock.display_name}, "
                        "discarded at recvmsg", handler="udp unicast")
        _queue(sock, seg)
        return deliver((sock,), f"delivered to {sock.name or sock.display_name}", handler="udp unicast")
    where = format_endpoint(pkt.dst, dport)
    if pkt.version == 6 and zero_csum:
        return drop(DropReason.NO_SOCKET, f"no socket on udp {where}; zero checksum: no ICMPv6",
                    handler="udp unicast")
    if not csum_ok:
        return drop(DropReason.UDP_CSUM, f"bad UDP checksum, no socket on udp {where}", handler="udp unicast")
    if pkt.version == 4:
        reply = icmp.send_error4(kernel, pkt, icmp.ICMP_DEST_UNREACH, icmp.ICMP_PORT_UNREACH, datagram=datagram)
    else:
        reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_DEST_UNREACH, icmp.ICMPV6_PORT_UNREACH,
                                 datagram=datagram)
    return drop(DropReason.NO_SOCKET, f"no socket on udp {where}", replies=icmp.replies(reply),
                handler="udp unicast")


def _multicast(kernel: Kernel, pkt: IpPacket, sport: int, dport: int, seg: bytes, csum_ok: bool,
               zero_csum: bool) -> Verdict:
    table = kernel.udp
    if pkt.version == 4:
        socks = table.multicast4(pkt.src, sport, pkt.dst, dport, pkt.device,
                                 multicast=pkt.route is RouteType.MULTICAST)
    else:
        socks = table.multicast6(pkt.src, sport, pkt.dst, dport, pkt.device, zero_csum)
    kind = pkt.route.value
    if kernel.trace is not None:
        names = ", ".join(s.display_name for s in socks) or "none"
        kernel.trace.append(f"{kind} fan-out on port {dport}: {len(socks)} socket(s) in delivery order: {names} "
                            "(__udp4_lib_mcast_deliver / __udp6_lib_mcast_deliver; spec §4.3)")
    if not socks:
        where = format_endpoint(pkt.dst, dport)
        return drop(DropReason.NOT_SPECIFIED, f"no socket for {kind} udp {where} (IgnoredMulti)",
                    handler=f"udp {kind}")
    if not csum_ok:
        return drop(DropReason.UDP_CSUM, f"bad UDP checksum: {len(socks)} copies discarded at recvmsg",
                    handler=f"udp {kind}")
    for sock in socks:
        _queue(sock, seg)
    return deliver(tuple(socks), f"{kind} delivered to {len(socks)} socket(s)", handler=f"udp {kind}")


def _queue(sock: Socket, seg: bytes) -> None:
    """A datagram reaches the socket's receive queue."""
    payload = seg[8:]
    sock.rx_packets += 1
    sock.rx_bytes += len(payload)
    if sock.inbox is not None:
        sock.inbox.append(payload)
