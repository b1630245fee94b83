"""IPv6 receive path: fixed-header checks, extension headers, local delivery.

Follows net/ipv6/ip6_input.c (ip6_rcv_core, ip6_protocol_deliver_rcu) and
net/ipv6/exthdrs.c (hop-by-hop / destination options TLVs, routing header),
spec §1.2.  Fragments go to :func:`reassemble` (:mod:`pktdemux.fragments`);
an atomic fragment (offset 0, M clear, RFC 6946) is processed as a whole
datagram as the kernel does.
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
_HOP_RA = 0x05
_HOP_CALIPSO = 0x07
_HOP_IOAM = 0x31
_HOP_JUMBO = 0xC2
#: hop-by-hop options the kernel knows: router alert, CALIPSO, IOAM, jumbo payload
_KNOWN_HOP_OPTIONS = frozenset((_HOP_RA, _HOP_CALIPSO, _HOP_IOAM, _HOP_JUMBO))
#: segment routing (SRv6) and RPL routing headers: dropped while seg6_enabled / rpl_seg_enabled are 0
_RH_DISABLED = (3, 4)
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


def _deliver(kernel: Kernel, pkt: IpPacket, *, fragmented: bool = False) -> Verdict:
    """ip6_protocol_deliver_rcu: walk the extension headers to the transport.

    ``fragmented`` is IP6SKB_FRAGMENTED: the datagram was reassembled (or
    passed an atomic fragment header), so a further fragment header is an
    error."""
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
            verdict = _fragment_header(kernel, pkt, fragmented)
            fragmented = True
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
            if hop_by_hop and kind in _KNOWN_HOP_OPTIONS:
                verdict = _known_hop_option(kernel, pkt, kind, off)
            else:
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


def _known_hop_option(kernel: Kernel, pkt: IpPacket, kind: int, off: int) -> Verdict | None:
    """The checks of ipv6_hop_ra, ipv6_hop_jumbo, ipv6_hop_ioam and
    ipv6_hop_calipso (net/ipv6/exthdrs.c); None when the packet goes on.

    * Router Alert: its data must be 2 bytes, else a silent drop.
    * Jumbo Payload: 4 bytes at an offset of 4n + 2, else a silent drop;
      a length of at most 65535 gets ICMPv6 4/0 pointing at it, a non-zero
      IPv6 payload length 4/0 pointing at the option (RFC 2675 §3).
    * IOAM: not 4n-aligned is a silent drop; otherwise ignored
      (net.ipv6.conf.*.ioam6_enabled is 0).
    * CALIPSO: shorter than 8 bytes, a compartment bitmap past the option,
      or (always here: no CALIPSO DOI is configured, calipso_validate)
      an unknown DOI: a silent drop.
    """
    raw = pkt.raw
    length = raw[off + 1]
    why = None
    if kind == _HOP_RA:
        if length != 2:
            why = f"router alert option of {length} bytes (ipv6_hop_ra)"
    elif kind == _HOP_IOAM:
        if off & 3:
            why = "IOAM option not 4n-aligned (ipv6_hop_ioam)"
    elif kind == _HOP_CALIPSO:
        why = "CALIPSO option without a configured DOI (ipv6_hop_calipso, calipso_validate)"
    elif length != 4 or off & 3 != 2:
        why = f"jumbo payload option of {length} bytes at offset {off} (ipv6_hop_jumbo)"
    else:
        jumbo_len = int.from_bytes(raw[off + 2:off + 6], "big")
        pointer = off + 2 if jumbo_len <= 0xFFFF else off
        reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_PARAMPROB, icmp.ICMPV6_HDR_FIELD, pointer)
        what = f"jumbo length {jumbo_len}" if pointer != off else "jumbo option with a non-zero payload length"
        return drop(DropReason.IP_INHDR, f"{what}: ICMPv6 4/0 pointer {pointer} (ipv6_hop_jumbo; RFC 2675)",
                    replies=icmp.replies(reply), handler="ip6 options")
    if why is None:
        return None
    return drop(DropReason.IP_INHDR, why, handler="ip6 options")


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
    """ipv6_rthdr_rcv: a multicast destination is dropped; segment routing
    types 3 (RPL) and 4 (SRv6) are dropped whatever their segments left
    (ipv6_rpl_srh_rcv / ipv6_srh_rcv run first, and rpl_seg_enabled /
    seg6_enabled are 0); otherwise with segments left 0 the header is
    skipped, and with more (this host is no router) type 0 and unknown
    types get ICMPv6 4/0 pointing at the routing type."""
    raw, start = pkt.raw, pkt.l4_offset
    if start + 8 > len(raw) or start + ((raw[start + 1] + 1) << 3) > len(raw):
        return drop(DropReason.IPV6_BAD_EXTHDR, "routing header beyond the packet")
    length = (raw[start + 1] + 1) << 3
    rh_type, segments_left = raw[start + 2], raw[start + 3]
    if pkt.dst[0] == 0xFF:
        return drop(DropReason.NOT_SPECIFIED, "routing header on a multicast destination (InAddrErrors)",
                    handler="ip6 routing header")
    if rh_type in _RH_DISABLED:
        return drop(DropReason.NOT_SPECIFIED, f"routing header type {rh_type} while "
                    f"{'seg6_enabled' if rh_type == 4 else 'rpl_seg_enabled'} is 0", handler="ip6 routing header")
    if segments_left == 0:
        _advance(pkt, length)
        return None
    reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_PARAMPROB, icmp.ICMPV6_HDR_FIELD, start + 2)
    return drop(DropReason.IPV6_BAD_EXTHDR, f"routing header type {rh_type} with {segments_left} segments left",
                replies=icmp.replies(reply), handler="ip6 routing header")


def _fragment_header(kernel: Kernel, pkt: IpPacket, fragmented: bool = False) -> Verdict | None:
    """ipv6_frag_rcv up to the queue: ICMPv6 4/0 pointing at the fragment
    header when the datagram was already reassembled or passed an atomic
    fragment header (IP6SKB_FRAGMENTED), when the payload length is 0, or
    when the header runs past the packet (its fail_hdr path); an atomic
    fragment is skipped; anything else goes to reassembly."""
    raw, start = pkt.raw, pkt.l4_offset
    why = None
    if fragmented:
        why = "a second fragment header (IP6SKB_FRAGMENTED)"
    elif raw[4:6] == b"\0\0":
        why = "fragment header with payload length 0"
    elif start + 8 > len(raw):
        why = "fragment header beyond the packet"
    if why is not None:
        reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_PARAMPROB, icmp.ICMPV6_HDR_FIELD, start)
        return drop(DropReason.IP_INHDR, f"{why}: ICMPv6 4/0 pointer {start} (ipv6_frag_rcv)",
                    replies=icmp.replies(reply), handler="ip6 defrag")
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
    return result.annotate(_deliver(kernel, result.datagram, fragmented=True))


def skip_exthdr(raw: bytes) -> tuple[int, int, int] | None:
    """ipv6_skip_exthdr over a whole packet, from the fixed header:
    (next header, its offset, the last fragment header's frag_off field).

    Skips hop-by-hop, routing, destination options, AH and fragment headers.
    At a non-first fragment it stops *on* the fragment header: next header
    44 at that header's offset, as the kernel does.  None (the kernel's -1)
    for No Next Header in the chain or a header cut short.  The frag_off
    field is the raw 16 bits (offset, M flag and reserved bits).
    """
    proto, off, frag_off = raw[6], 40, 0
    n = len(raw)
    while proto in (NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_FRAGMENT, NEXTHDR_AUTH, NEXTHDR_DEST, NEXTHDR_NONE):
        if proto == NEXTHDR_NONE or off + 2 > n:
            return None
        nxt = raw[off]
        if proto == NEXTHDR_FRAGMENT:
            if off + 4 > n:
                return None
            frag_off = raw[off + 2] << 8 | raw[off + 3]
            if frag_off & 0xFFF8:
                return proto, off, frag_off
            length = 8
        elif proto == NEXTHDR_AUTH:
            length = (raw[off + 1] + 2) << 2
        else:
            length = (raw[off + 1] + 1) << 3
        proto, off = nxt, off + length
    return proto, off, frag_off
