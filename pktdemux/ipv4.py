"""IPv4 receive path: header checks, input route, options, local delivery.

Order and drop reasons follow net/ipv4/ip_input.c (ip_rcv_core,
ip_rcv_finish_core, ip_local_deliver, ip_protocol_deliver_rcu) and
net/ipv4/route.c (spec §1.1).  Fragments are not reassembled yet: every
fragment stops at :func:`reassemble` (ip_defrag), which holds it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import icmp, ip_options, tcp, udp
from .dropreason import DropReason
from .packet import IpPacket, RouteType
from .verdict import Verdict, deliver, drop
from .wire import format_addr

if TYPE_CHECKING:
    from .kernel import Kernel

_HEADER = struct.Struct("!BBHHHBBH4s4s")

PROTO_ICMP = 1
PROTO_IGMP = 2
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_PIM = 103
PROTO_UDPLITE = 136

_PROTO_NAMES = {PROTO_ICMP: "ICMP", PROTO_IGMP: "IGMP", PROTO_TCP: "TCP", PROTO_UDP: "UDP",
                PROTO_PIM: "PIM", PROTO_UDPLITE: "UDP-Lite"}

_MF = 0x2000
_OFFSET = 0x1FFF


def receive(kernel: Kernel, packet: bytes, device: str) -> Verdict:
    """Run one IPv4 packet (from its IP header) through the receive path.

    Args:
        kernel: the emulated host.
        packet: IPv4 header and payload; bytes after the total length (link
            padding) are ignored.
        device: ingress device name.

    Returns:
        The verdict of the transport handler, or a drop with the kernel's
        reason: IP_INHDR, IP_CSUM, PKT_TOO_SMALL (InTruncatedPkts), the
        routing reasons of :meth:`pktdemux.routing.Routing.classify4`,
        IP_INHDR / NOT_SPECIFIED for bad / source-route options,
        FRAG_PENDING for fragments, IP_NOPROTO for an unknown protocol
        (with ICMP 3/2).  Never raises.
    """
    n = len(packet)
    if n < 20:
        return _drop(kernel, DropReason.IP_INHDR, f"{n} bytes: shorter than an IPv4 header")
    vihl, tos, tot_len, ident, frag, ttl, proto, _csum, src, dst = _HEADER.unpack_from(packet)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        return _drop(kernel, DropReason.IP_INHDR, f"version {vihl >> 4}, header length {ihl}")
    if n < ihl:
        return _drop(kernel, DropReason.IP_INHDR, f"header length {ihl} but only {n} bytes")
    # A header sums to 0xFFFF exactly when its big-endian integer is a
    # multiple of 0xFFFF (RFC 1071, 2**16 ≡ 1); the version nibble makes it non-zero.
    if int.from_bytes(packet[:ihl], "big") % 0xFFFF:
        return _drop(kernel, DropReason.IP_CSUM, "bad IPv4 header checksum")
    if n < tot_len:
        return _drop(kernel, DropReason.PKT_TOO_SMALL, f"total length {tot_len} but only {n} bytes (InTruncatedPkts)")
    if tot_len < ihl:
        return _drop(kernel, DropReason.IP_INHDR, f"total length {tot_len} below header length {ihl}")
    raw = packet if n == tot_len else packet[:tot_len]
    trace = kernel.trace
    if trace is not None:
        trace.append(f"IPv4 header ok: {format_addr(src)} -> {format_addr(dst)}, protocol {proto}, "
                     f"{tot_len} bytes, TTL {ttl}, on {device} (ip_rcv_core; spec §1.1)")

    conf = kernel.ip_sysctls
    route, reason, note = kernel.routing.classify4(
        src, dst, device, proto, route_localnet=conf.route_localnet, accept_local=conf.accept_local)
    if route is None:
        if trace is not None:
            trace.append(f"input route: {note}: drop {reason.value if reason else 'NOT_SPECIFIED'} "
                         "(ip_route_input_slow; spec §1.1.1)")
        if reason is DropReason.IP_INADDRERRORS and ihl > 20:
            # an RTN_UNREACHABLE route (ip_error as its input) still has its
            # options compiled first: a malformed one gets ICMP 12/0
            unreachable = IpPacket(4, src, dst, proto, tos, ttl, 0, ident, raw, ihl, b"", RouteType.UNREACHABLE,
                                   device, frag_offset=(frag & _OFFSET) << 3)
            verdict = _options(kernel, unreachable)
            if verdict is not None:
                return verdict
        return drop(reason or DropReason.NOT_SPECIFIED, note, handler="ip route")
    if trace is not None:
        trace.append(f"input route: {format_addr(dst)} is a {route.value} destination "
                     "(ip_route_input_slow; spec §1.1.1)")
    pkt = IpPacket(4, src, dst, proto, tos, ttl, 0, ident, raw, ihl, b"", route, device)
    if frag & _OFFSET:
        pkt.frag_offset = (frag & _OFFSET) << 3
    if ihl > 20:
        verdict = _options(kernel, pkt)
        if verdict is not None:
            return verdict
    if frag & (_MF | _OFFSET):
        if trace is not None:
            trace.append(f"fragment at offset {(frag & _OFFSET) << 3}{', more follow' if frag & _MF else ''}: "
                         "to reassembly (ip_local_deliver, ip_defrag)")
        return reassemble(kernel, pkt)
    return deliver_local(kernel, pkt)


def _drop(kernel: Kernel, reason: DropReason, note: str) -> Verdict:
    """A header check failed (ip_rcv_core): the drop, traced."""
    if kernel.trace is not None:
        kernel.trace.append(f"IPv4 header check failed: {note}: drop {reason.value} (ip_rcv_core; spec §1.1)")
    return drop(reason, note)


def _options(kernel: Kernel, pkt: IpPacket) -> Verdict | None:
    """ip_rcv_options: compile the options (rewriting the header in place as
    the kernel does), answer a malformed one with ICMP 12/0, drop a source
    route while accept_source_route=0.  None when the packet goes on."""
    header = bytearray(pkt.raw[:pkt.l4_offset])
    routing = kernel.routing
    local = pkt.dst if pkt.route is RouteType.LOCAL else (routing.source_address(pkt.src, pkt.device) or pkt.dst)
    try:
        parsed = ip_options.compile_received(header, local, lambda a: not routing.is_local(a), kernel.now)
    except ip_options.OptionError as err:
        pkt.raw = bytes(header) + pkt.raw[pkt.l4_offset:]
        pkt.options = bytes(header[20:])
        pkt.parsed_options = err.options  # the 12/0 echoes what was compiled before the error
        if kernel.trace is not None:
            kernel.trace.append(f"IP options: malformed option at byte {err.pointer} ({err}): "
                                "ICMP parameter problem, drop IP_INHDR (ip_options_compile, ip_rcv_options)")
        reply = icmp.send_error4(kernel, pkt, icmp.ICMP_PARAMETERPROB, 0, err.pointer << 24)
        return drop(DropReason.IP_INHDR, f"malformed IP option at byte {err.pointer}: {err}",
                    replies=icmp.replies(reply), handler="ip options")
    pkt.raw = bytes(header) + pkt.raw[pkt.l4_offset:]
    pkt.options = bytes(header[20:])
    pkt.parsed_options = parsed
    if kernel.trace is not None:
        kernel.trace.append(f"IP options: {len(pkt.options)} bytes compiled, "
                            f"{'a source route' if parsed.srr else 'no source route'} "
                            "(ip_options_compile, ip_rcv_options; RFC 791)")
    if parsed.srr and not kernel.ip_sysctls.accept_source_route:
        if kernel.trace is not None:
            kernel.trace.append("source route while net.ipv4.conf.all.accept_source_route=0: drop "
                                "(ip_rcv_options)")
        return drop(DropReason.NOT_SPECIFIED, "source route option while accept_source_route=0",
                    handler="ip options")
    return None


def reassemble(kernel: Kernel, pkt: IpPacket) -> Verdict:
    """Fragment reassembly (net/ipv4/ip_fragment.c:ip_defrag; :mod:`pktdemux.fragments`).

    A fragment that completes its datagram gets the datagram's verdict
    (:func:`deliver_local` on the rebuilt datagram); otherwise the
    fragment's own: FRAG_PENDING while held, DUP_FRAG, NOT_SPECIFIED when
    it discards its queue.
    """
    from .fragments import defrag4

    result = defrag4(kernel, pkt)
    if isinstance(result, Verdict):
        return result
    return result.annotate(deliver_local(kernel, result.datagram))


def deliver_local(kernel: Kernel, pkt: IpPacket) -> Verdict:
    """ip_protocol_deliver_rcu: hand a complete datagram to its protocol.

    No raw sockets are modelled, so an unregistered protocol gets ICMP 3/2
    (protocol unreachable) and is dropped with IP_NOPROTO.  IGMP and PIM
    are consumed by the kernel; UDP-Lite is dropped (not modelled).
    """
    proto = pkt.proto
    if kernel.trace is not None:
        kernel.trace.append(f"protocol {proto} ({_PROTO_NAMES.get(proto, 'no handler')}) "
                            "(ip_local_deliver, ip_protocol_deliver_rcu)")
    if proto == PROTO_TCP:
        return tcp.receive(kernel, pkt)
    if proto == PROTO_UDP:
        return udp.receive(kernel, pkt)
    if proto == PROTO_ICMP:
        return icmp.receive(kernel, pkt)
    if proto == PROTO_IGMP:
        return deliver((), "IGMP consumed by the kernel (group membership is not modelled)", handler="igmp")
    if proto == PROTO_PIM:
        return drop(DropReason.NOT_SPECIFIED, "PIM without a multicast routing daemon", handler="pim")
    if proto == PROTO_UDPLITE:
        return drop(DropReason.NOT_SPECIFIED, "UDP-Lite is not modelled", handler="udplite")
    reply = icmp.send_error4(kernel, pkt, icmp.ICMP_DEST_UNREACH, icmp.ICMP_PROT_UNREACH)
    return drop(DropReason.IP_NOPROTO, f"no handler for IP protocol {proto}",
                replies=icmp.replies(reply), handler="ip protocol")
