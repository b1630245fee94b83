"""IPv6 receive path: fixed-header checks, extension headers, local delivery.

Follows net/ipv6/ip6_input.c (ip6_rcv_core, ip6_protocol_deliver_rcu) and
net/ipv6/exthdrs.c (hop-by-hop / destination options TLVs, routing header),
spec §1.2.  Fragments are not reassembled yet: a fragment stops at
:func:`reassemble`; an atomic fragment (offset 0, M clear, RFC 6946) is
processed as a whole datagram as the kernel does.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import icmp, tcp, udp
from .dropreason import DropReason
from .packet import IpPacket, RouteType
from .routing import LOOPBACK_DEVICE, V6_LOOPBACK
from .verdict import Verdict, drop
from .wire import format_addr

if TYPE_CHECKING:
    from .kernel import Kernel

_FIXED = struct.Struct("!IHBB16s16s")

NEXTHDR_HOP = 0
NEXTHDR_TCP = 6
NEXTHDR_UDP = 17
NEXTHDR_ROUTING = 43
NEXTHDR_FRAGMENT = 44
NEXTHDR_AUTH = 51
NEXTHDR_ICMP = 58
NEXTHDR_NONE = 59
NEXTHDR_DEST = 60

_NEXTHDR_NAMES = {
    NEXTHDR_HOP: "hop-by-hop options", NEXTHDR_TCP: "TCP", NEXTHDR_UDP: "UDP", NEXTHDR_ROUTING: "routing header",
    NEXTHDR_FRAGMENT: "fragment header", NEXTHDR_AUTH: "AH", NEXTHDR_ICMP: "ICMPv6",
    NEXTHDR_NONE: "no next header", NEXTHDR_DEST: "destination options",
}

_TLV_PAD1 = 0
_TLV_PADN = 1
#: hop-by-hop options the kernel knows: router alert, CALIPSO, IOAM, jumbo payload
_KNOWN_HOP_OPTIONS = frozenset((0x05, 0x07, 0x31, 0xC2))
#: what the two high bits of an unknown option's type ask for (RFC 8200 §4.2)
_OPTION_ACTIONS = ("skip it", "discard", "discard, ICMPv6 parameter problem",
                   "discard, ICMPv6 parameter problem unless multicast")
#: net.ipv6.max_hbh_opts_number / max_dst_opts_number
_MAX_TLV_COUNT = 8


def receive(kernel: Kernel, packet: bytes, device: str) -> Verdict:
    """Run one IPv6 packet (from its fixed header) through the receive path.

    Args:
        kernel: the emulated host.
        packet: IPv6 header and payload; bytes after the payload length are
            ignored.
        device: ingress device name.

    Returns:
        The transport handler's verdict, or a drop: IP_INHDR (short header,
        loopback address off ``lo``, bad multicast scope, multicast source,
        bad options), UNHANDLED_PROTO (version, unknown option),
        PKT_TOO_SMALL (payload length beyond the packet), routing drops of
        :meth:`pktdemux.routing.Routing.classify6` (IP_INNOROUTES with
        ICMPv6 1/0), IPV6_BAD_EXTHDR, FRAG_PENDING, IP_NOPROTO (ICMPv6 4/1).
    """
    n = len(packet)
    if n < 40:
        return _drop(kernel, DropReason.IP_INHDR, f"{n} bytes: shorter than an IPv6 header")
    first, plen, nexthdr, hlim, src, dst = _FIXED.unpack_from(packet)
    if first >> 28 != 6:
        return _drop(kernel, DropReason.UNHANDLED_PROTO, f"IP version {first >> 28}")
    if device != LOOPBACK_DEVICE:
        if src == V6_LOOPBACK or dst == V6_LOOPBACK:
            return _drop(kernel, DropReason.IP_INHDR, "::1 on a non-loopback device (RFC 4291 §2.5.3)")
        if dst[0] == 0xFF and dst[1] & 0x0F == 1:
            return _drop(kernel, DropReason.IP_INHDR, "interface-local multicast from outside (RFC 4291 §2.7)")
    if dst[0] == 0xFF and dst[1] & 0x0F == 0:
        return _drop(kernel, DropReason.IP_INHDR, "multicast destination with reserved scope 0")
    if src[0] == 0xFF:
        return _drop(kernel, DropReason.IP_INHDR, "multicast source address (RFC 4291 §2.7)")
    if plen == 0 and nexthdr == NEXTHDR_HOP:
        return _drop(kernel, DropReason.IP_INHDR, "jumbogram (payload length 0): not modelled")
    if 40 + plen > n:
        return _drop(kernel, DropReason.PKT_TOO_SMALL, f"payload length {plen} but only {n - 40} bytes (InTruncatedPkts)")
    raw = packet if n == 40 + plen else packet[:40 + plen]
    trace = kernel.trace
    if trace is not None:
        trace.append(f"IPv6 header ok: {format_addr(src)} -> {format_addr(dst)}, next header {nexthdr}, "
                     f"payload {plen} bytes, hop limit {hlim}, on {device} (ip6_rcv_core; spec §1.2)")
    pkt = IpPacket(6, src, dst, nexthdr, (first >> 20) & 0xFF, hlim, first & 0xFFFFF, 0,
                   raw, 40, b"", RouteType.LOCAL, device)
    if nexthdr == NEXTHDR_HOP:
        verdict = _options_header(kernel, pkt, hop_by_hop=True)
        if verdict is not None:
            return verdict
    route, reason, note = kernel.routing.classify6(src, dst, device)
    if trace is not None:
        if route is None:
            trace.append(f"input route: {note}: drop {reason.value if reason else 'NOT_SPECIFIED'} "
                         "(ip6_route_input, ip6_mc_input; spec §1.2)")
        else:
            trace.append(f"input route: {format_addr(dst)} is a {route.value} destination "
                         "(ip6_route_input; spec §1.2)")
    if route is None:
        if reason is DropReason.IP_INNOROUTES:
            reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_DEST_UNREACH, icmp.ICMPV6_NOROUTE)
            return drop(reason, note, replies=icmp.replies(reply), handler="ip6 route")
        return drop(reason or DropReason.NOT_SPECIFIED, note, handler="ip6 route")
    pkt.route = route
    return _deliver(kernel, pkt)


def _drop(kernel: Kernel, reason: DropReason, note: str) -> Verdict:
    """A fixed-header check failed (ip6_rcv_core): the drop, traced."""
    if kernel.trace is not None:
        kernel.trace.append(f"IPv6 header check failed: {note}: drop {reason.value} (ip6_rcv_core; spec §1.2)")
    return drop(reason, note)


def _deliver(kernel: Kernel, pkt: IpPacket) -> Verdict:
    """ip6_protocol_deliver_rcu: walk the extension headers to the transport."""
    while True:
        proto = pkt.proto
        if kernel.trace is not None:
            kernel.trace.append(f"next header {proto} ({_NEXTHDR_NAMES.get(proto, 'no handler')}) at byte "
                                f"{pkt.l4_offset} (ip6_protocol_deliver_rcu)")
        if proto == NEXTHDR_TCP:
            return tcp.receive(kernel, pkt)
        if proto == NEXTHDR_UDP:
            return udp.receive(kernel, pkt)
        if proto == NEXTHDR_ICMP:
            return icmp.receive(kernel, pkt)
        if proto == NEXTHDR_DEST:
            verdict = _options_header(kernel, pkt, hop_by_hop=False)
        elif proto == NEXTHDR_ROUTING:
            verdict = _routing_header(kernel, pkt)
        elif proto == NEXTHDR_FRAGMENT:
            verdict = _fragment_header(kernel, pkt)
        elif proto == NEXTHDR_NONE:
            return drop(DropReason.NOT_SPECIFIED, "No Next Header: nothing to deliver", handler="ip6 nodata")
        else:
            # no raw sockets are modelled; a hop-by-hop header after the first lands here too
            reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_PARAMPROB, icmp.ICMPV6_UNK_NEXTHDR, pkt.nh_offset)
            return drop(DropReason.IP_NOPROTO, f"no handler for next header {proto}",
                        replies=icmp.replies(reply), handler="ip6 protocol")
        if verdict is not None:
            return verdict


def _advance(pkt: IpPacket, length: int) -> None:
    """Step over the extension header at ``pkt.l4_offset``."""
    start = pkt.l4_offset
    pkt.nh_offset = start
    pkt.proto = pkt.raw[start]
    pkt.l4_offset = start + length


def _options_header(kernel: Kernel, pkt: IpPacket, *, hop_by_hop: bool) -> Verdict | None:
    """Hop-by-hop or destination options (exthdrs.c:ip6_parse_tlv).

    Unknown options act by their two high bits (RFC 8200 §4.2): skip,
    discard, discard with ICMPv6 4/2, or the same unless the destination is
    multicast.  None when the packet goes on.
    """
    raw, start = pkt.raw, pkt.l4_offset
    if start + 8 > len(raw) or start + ((raw[start + 1] + 1) << 3) > len(raw):
        return drop(DropReason.IPV6_BAD_EXTHDR, "options header beyond the packet")
    end = start + ((raw[start + 1] + 1) << 3)
    off, padlen, count = start + 2, 0, 0
    while off < end:
        kind = raw[off]
        if kind == _TLV_PAD1:
            padlen += 1
            if padlen > 7:
                return drop(DropReason.IP_INHDR, "more than 7 bytes of padding")
            off += 1
            continue
        if end - off < 2 or raw[off + 1] + 2 > end - off:
            return drop(DropReason.IP_INHDR, "option runs past its header")
        optlen = raw[off + 1] + 2
        if kind == _TLV_PADN:
            padlen += optlen
            if padlen > 7 or any(raw[off + 2:off + optlen]):
                return drop(DropReason.IP_INHDR, "PadN longer than 7 bytes or not zero")
        else:
            count += 1
            if count > _MAX_TLV_COUNT:
                return drop(DropReason.IP_INHDR, "too many options")
            if not (hop_by_hop and kind in _KNOWN_HOP_OPTIONS):
                verdict = _unknown_option(kernel, pkt, kind, off)
                if verdict is not None:
                    return verdict
            padlen = 0
        off += optlen
    if kernel.trace is not None:
        kernel.trace.append(f"{'hop-by-hop' if hop_by_hop else 'destination'} options: {end - start} bytes, "
                            f"{count} option(s) other than padding, accepted (ip6_parse_tlv; RFC 8200 §4.2)")
    _advance(pkt, end - start)
    return None


def _unknown_option(kernel: Kernel, pkt: IpPacket, kind: int, off: int) -> Verdict | None:
    """ip6_tlvopt_unknown: the action coded in the option type's top bits."""
    action = kind >> 6
    if kernel.trace is not None:
        kernel.trace.append(f"unknown option 0x{kind:02x}: action {action} "
                            f"({_OPTION_ACTIONS[action]}) (ip6_tlvopt_unknown; RFC 8200 §4.2)")
    if action == 0:
        return None
    note = f"unknown option 0x{kind:02x} (action {action})"
    reply = None
    if action == 2 or (action == 3 and pkt.dst[0] != 0xFF):
        reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_PARAMPROB, icmp.ICMPV6_UNK_OPTION, off,
                                 to_multicast=action == 2)
    return drop(DropReason.UNHANDLED_PROTO, note, replies=icmp.replies(reply), handler="ip6 options")


def _routing_header(kernel: Kernel, pkt: IpPacket) -> Verdict | None:
    """ipv6_rthdr_rcv: with segments left 0 the header is skipped; otherwise
    (this host is no router) type 0 and unknown types get ICMPv6 4/0 pointing
    at the routing type, segment routing types are dropped (seg6/rpl off)."""
    raw, start = pkt.raw, pkt.l4_offset
    if start + 8 > len(raw) or start + ((raw[start + 1] + 1) << 3) > len(raw):
        return drop(DropReason.IPV6_BAD_EXTHDR, "routing header beyond the packet")
    length = (raw[start + 1] + 1) << 3
    rh_type, segments_left = raw[start + 2], raw[start + 3]
    if segments_left == 0:
        _advance(pkt, length)
        return None
    if rh_type in (3, 4):
        return drop(DropReason.IPV6_BAD_EXTHDR, f"routing header type {rh_type} while disabled")
    reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_PARAMPROB, icmp.ICMPV6_HDR_FIELD, start + 2)
    return drop(DropReason.IPV6_BAD_EXTHDR, f"routing header type {rh_type} with {segments_left} segments left",
                replies=icmp.replies(reply), handler="ip6 routing header")


def _fragment_header(kernel: Kernel, pkt: IpPacket) -> Verdict | None:
    raw, start = pkt.raw, pkt.l4_offset
    if start + 8 > len(raw):
        return drop(DropReason.IPV6_BAD_EXTHDR, "fragment header beyond the packet")
    frag = raw[start + 2] << 8 | raw[start + 3]
    if frag & 0xFFF9 == 0:
        # atomic fragment (RFC 6946): ipv6_frag_rcv skips the header
        _advance(pkt, 8)
        return None
    return reassemble(kernel, pkt)


def reassemble(kernel: Kernel, pkt: IpPacket) -> Verdict:
    """Fragment reassembly (net/ipv6/reassembly.c:ipv6_frag_rcv; :mod:`pktdemux.fragments`).

    ``pkt.l4_offset`` is the fragment header.  A fragment that completes
    its datagram gets the datagram's verdict (the walk of the headers goes
    on after the removed fragment header); otherwise the fragment's own:
    FRAG_PENDING while held, DUP_FRAG, a drop with ICMPv6 4/0 or 4/3, or
    NOT_SPECIFIED when it discards its queue.
    """
    from .fragments import defrag6

    result = defrag6(kernel, pkt)
    if isinstance(result, Verdict):
        return result
    return result.annotate(_deliver(kernel, result.datagram))


def skip_exthdr(raw: bytes) -> tuple[int, int, int]:
    """ipv6_skip_exthdr over a whole packet: (next header, its offset, fragment offset).

    Skips hop-by-hop, routing, destination options, AH and the fragment
    header (stopping after a non-first fragment's header).  Returns the
    offset past the end of ``raw`` when a header is cut short.
    """
    proto, off, frag_off = raw[6], 40, 0
    n = len(raw)
    while proto in (NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_FRAGMENT, NEXTHDR_AUTH, NEXTHDR_DEST):
        if off + 8 > n:
            return proto, n, frag_off
        nxt = raw[off]
        if proto == NEXTHDR_FRAGMENT:
            frag_off = (raw[off + 2] << 8 | raw[off + 3]) & 0xFFF8
            length = 8
            if frag_off:
                return nxt, off + 8, frag_off
        elif proto == NEXTHDR_AUTH:
            length = (raw[off + 1] + 2) << 2
        else:
            length = (raw[off + 1] + 1) << 3
        proto, off = nxt, off + length
    return proto, off, frag_off
