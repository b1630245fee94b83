"""ICMP and ICMPv6: what the kernel does with received messages (spec §6),
and the error messages it sends for the IP layer and UDP (spec §5).

Receive side: net/ipv4/icmp.c:icmp_rcv, icmp_echo, icmp_timestamp,
icmp_reply; net/ipv6/icmp.c:icmpv6_rcv, icmpv6_echo_reply.  Messages the
kernel consumes without answering (errors about the host's own packets,
replies to its pings, neighbour discovery, MLD) give a deliver verdict with
no socket and a handler naming what they were.

Send side: :func:`send_error4` (net/ipv4/icmp.c:__icmp_send) and
:func:`send_error6` (net/ipv6/icmp.c:icmp6_send) apply the never-answer
rules in the kernel's order, both rate limiters
(:mod:`pktdemux.icmp_ratelimit`), and build the whole IP packet.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import ip_options, tcp_err
from .dropreason import DropReason
from .icmp_ratelimit import IcmpRateLimiter, icmpv4_limited, icmpv6_limited, jiffies
from .packet import IpPacket, RouteType
from .routing import LOOPBACK_DEVICE
from .verdict import Verdict, deliver, drop, with_note
from .wire import (
    CSUM_BAD,
    CSUM_OFFLOADED,
    OFFLOADED_NOTE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    build_ipv4,
    build_ipv6,
    checksum,
    format_addr,
    ones_complement_sum,
    received_checksum,
    transport_checksum,
    transport_checksum_ok,
)

if TYPE_CHECKING:
    from .kernel import Kernel

# ICMPv4 types and codes (include/uapi/linux/icmp.h)
ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_TIMESTAMP = 13
ICMP_TIMESTAMPREPLY = 14
ICMP_ADDRESS = 17
ICMP_ADDRESSREPLY = 18
ICMP_EXT_ECHO = 42
NR_ICMP_TYPES = 18
ICMP_PROT_UNREACH = 2
ICMP_PORT_UNREACH = 3
ICMP_EXC_FRAGTIME = 1
_ICMP_ERRORS = frozenset((ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT,
                          ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB))

# ICMPv6 types and codes (include/uapi/linux/icmpv6.h)
ICMPV6_DEST_UNREACH = 1
ICMPV6_PKT_TOOBIG = 2
ICMPV6_TIME_EXCEED = 3
ICMPV6_PARAMPROB = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMPV6_NOROUTE = 0
ICMPV6_PORT_UNREACH = 4
ICMPV6_HDR_FIELD = 0
ICMPV6_UNK_NEXTHDR = 1
ICMPV6_UNK_OPTION = 2
ICMPV6_EXT_ECHO_REQUEST = 160
_MLD_TYPES = frozenset((130, 131, 132, 143))
_NDISC_TYPES = frozenset((133, 134, 135, 136, 137))

#: net.ipv4.icmp ... : an error quotes at most 576 bytes in all (RFC 1812 §4.3.2.3)
ICMP_QUOTE_LIMIT = 576
#: an ICMPv6 error never exceeds the IPv6 minimum MTU (RFC 4443 §2.4(c))
IPV6_MIN_MTU = 1280
#: net.ipv6.flowlabel_reflect bit FLOWLABEL_REFLECT_ICMPV6_ECHO_REPLIES
FLOWLABEL_REFLECT_ECHO = 4

_ICMP_HEADER = struct.Struct("!BBHI")


def replies(reply: bytes | None) -> tuple[bytes, ...]:
    """The ``replies`` tuple of a verdict for one optional packet."""
    return () if reply is None else (reply,)


def rate_limiter(kernel: Kernel) -> IcmpRateLimiter:
    """The kernel's ICMP rate limiter (``kernel.icmp_ratelimit``, made by Kernel.__init__)."""
    return kernel.icmp_ratelimit


def _icmp_message(type_: int, code: int, rest: int, body: bytes) -> bytes:
    head = _ICMP_HEADER.pack(type_, code, 0, rest)
    csum = checksum(head + body)
    return head[:2] + csum.to_bytes(2, "big") + head[4:] + body


def _icmpv6_message(src: bytes, dst: bytes, type_: int, code: int, rest: int, body: bytes) -> bytes:
    msg = _ICMP_HEADER.pack(type_, code, 0, rest) + body
    csum = transport_checksum(src, dst, PROTO_ICMPV6, msg)
    return msg[:2] + csum.to_bytes(2, "big") + msg[4:]


# -- rate limiting -----------------------------------------------------------

def _global_gate(kernel: Kernel, limited: bool, ingress: str) -> tuple[bool, bool]:
    """icmpv4_global_allow / icmpv6_global_allow: (may send, apply per-peer limit).

    Skipped for packets that came in on the loopback device."""
    if not limited or ingress == LOOPBACK_DEVICE:
        return True, False
    s = kernel.ip_sysctls
    ok = kernel.icmp_ratelimit.global_allow(jiffies(kernel.now), s.icmp_msgs_per_sec, s.icmp_msgs_burst)
    return ok, ok


def _peer_gate(kernel: Kernel, apply: bool, dst: bytes, ingress: str, timeout: int) -> bool:
    """icmpv4_xrlim_allow / icmpv6_xrlim_allow: per-destination bucket, then
    the random global consumption for every message allowed under limits."""
    if not apply:
        return True
    limiter = kernel.icmp_ratelimit
    if kernel.routing.output_device(dst, ingress) != LOOPBACK_DEVICE:
        if not limiter.peer_allow(dst, jiffies(kernel.now), timeout):
            return False
    limiter.global_consume()
    return True


# -- ICMPv4 errors ------------------------------------------------------------

def send_error4(kernel: Kernel, pkt: IpPacket, type_: int, code: int, info: int = 0,
                datagram: bytes | None = None) -> bytes | None:
    """The ICMPv4 error the kernel sends about ``pkt``, or None (spec §5.1, §5.2).

    Args:
        kernel: the emulated host (its clock, sysctls, routing, entropy and
            rate limiter are used; the limiter's state advances).
        pkt: the offending datagram as received.
        type_, code: ICMP type and code (e.g. 3/3 port unreachable).
        info: the 32-bit "rest of header" (host order), e.g. the Parameter
            Problem pointer in the top byte.
        datagram: the offending bytes as the kernel holds them when it
            answers, from the IP header (UDP trims to its length); default
            ``pkt.raw``.

    Returns:
        The whole IPv4 packet, or None when a rule of __icmp_send suppresses
        it: non-unicast route, non-first fragment, offending packet is an
        ICMP error (or an unknown type > 18), global or per-destination rate
        limit, no room for a quote.
    """
    what = f"ICMP {type_}/{code}"
    if pkt.route is not RouteType.LOCAL and pkt.route is not RouteType.UNREACHABLE:
        _not_sent(kernel, what, f"the destination is {pkt.route.value}", "__icmp_send; spec §5.1")
        return None
    if pkt.frag_offset:
        _not_sent(kernel, what, "the packet is a non-first fragment", "__icmp_send; spec §5.1")
        return None
    raw = pkt.raw if datagram is None else datagram
    if pkt.proto == PROTO_ICMP:
        if len(raw) <= pkt.l4_offset:
            _not_sent(kernel, what, "the offending ICMP message has no type", "__icmp_send")
            return None
        inner = raw[pkt.l4_offset]
        if inner > NR_ICMP_TYPES or inner in _ICMP_ERRORS:
            _not_sent(kernel, what, f"never about an ICMP error or unknown type ({inner})",
                      "__icmp_send; RFC 1122 §3.2.2")
            return None
    s = kernel.ip_sysctls
    ok, apply = _global_gate(kernel, icmpv4_limited(type_, code, s.icmp_ratemask), pkt.device)
    if not ok:
        _not_sent(kernel, what, "the global ICMP rate limit (icmp_msgs_per_sec) is spent",
                  "icmp_global_allow; spec §5.4")
        return None
    routing = kernel.routing
    dst = pkt.src
    src = pkt.dst
    if pkt.route is RouteType.UNREACHABLE:  # not RTCF_LOCAL: the source of the route back (saddr 0)
        src = routing.source_address(dst, routing.output_device(dst, pkt.device)) or pkt.dst
    opts = ip_options.echo_options(raw, pkt.parsed_options, src, lambda a: not routing.is_local(a), kernel.now)
    if opts is None:
        _not_sent(kernel, what, "the options cannot be echoed", "__ip_options_echo")
        return None
    if not _peer_gate(kernel, apply, dst, pkt.device, s.icmp_ratelimit):
        _not_sent(kernel, what, "the per-destination rate limit (icmp_ratelimit) is spent",
                  "inet_peer_xrlim_allow; spec §5.4")
        return None
    room = min(routing.mtu(routing.output_device(dst, pkt.device)), ICMP_QUOTE_LIMIT) - 20 - len(opts) - 8
    if room <= 20:
        _not_sent(kernel, what, f"no room to quote an IP header ({room} bytes)", "__icmp_send")
        return None
    if kernel.trace is not None:
        kernel.trace.append(f"{what} sent to {format_addr(dst)}, quoting {min(room, len(raw))} of the "
                            f"{len(raw)} bytes (__icmp_send; spec §5.1, §5.2)")
    message = _icmp_message(type_, code, info, raw[:room])
    return build_ipv4(
        src=src, dst=dst, proto=PROTO_ICMP, payload=message,
        ttl=s.ip_default_ttl,
        tos=(pkt.tos & 0x1E) | 0xC0,  # precedence "internetwork control"; __icmp_send
        ident=kernel.entropy.ip_id(dst, PROTO_ICMP),
        options=opts,
    )


# -- ICMPv6 errors ------------------------------------------------------------

def send_error6(kernel: Kernel, pkt: IpPacket, type_: int, code: int, info: int = 0,
                datagram: bytes | None = None, *, to_multicast: bool = False) -> bytes | None:
    """The ICMPv6 error the kernel sends about ``pkt``, or None (spec §5.3).

    Args:
        kernel, pkt, type_, code, info, datagram: as :func:`send_error4`.
        to_multicast: the error may answer a multicast destination (Parameter
            Problem for an option whose type says so, RFC 8200 §4.2).

    Returns:
        The whole IPv6 packet (hop limit from net.ipv6.conf.all.hop_limit,
        traffic class 0, auto flow label, quote cut at 1232 bytes so the
        packet is at most 1280), or None: multicast destination, unspecified
        or multicast source, offending packet is an ICMPv6 error
        (is_ineligible), rate limits (net/ipv6/icmp.c:icmp6_send).
    """
    routing = kernel.routing
    what = f"ICMPv6 {type_}/{code}"
    if pkt.dst[0] == 0xFF and not (type_ == ICMPV6_PKT_TOOBIG or to_multicast):
        _not_sent(kernel, what, "the destination is multicast", "icmp6_send; spec §5.3")
        return None
    if pkt.src[0] == 0xFF or not any(pkt.src):
        _not_sent(kernel, what, "the source is multicast or unspecified", "icmp6_send; spec §5.3")
        return None
    raw = pkt.raw if datagram is None else datagram
    if _ineligible6(raw):
        _not_sent(kernel, what, "never about an ICMPv6 error", "is_ineligible; RFC 4443 §2.4(e)")
        return None
    s = kernel.ip_sysctls
    ok, apply = _global_gate(kernel, icmpv6_limited(type_, s.icmp6_ratemask), pkt.device)
    if not ok:
        _not_sent(kernel, what, "the global ICMP rate limit (icmp_msgs_per_sec) is spent",
                  "icmpv6_global_allow; spec §5.4")
        return None
    dst = pkt.src
    out_device = routing.output_device(dst, pkt.device)
    src = pkt.dst if routing.is_local(pkt.dst) else routing.source_address(dst, out_device)
    if src is None:
        _not_sent(kernel, what, "no source address", "ipv6_dev_get_saddr")
        return None
    if not _peer_gate(kernel, apply, dst, pkt.device, s.icmp6_ratelimit):
        _not_sent(kernel, what, "the per-destination rate limit (net.ipv6.icmp.ratelimit) is spent",
                  "icmpv6_xrlim_allow; spec §5.4")
        return None
    if kernel.trace is not None:
        kernel.trace.append(f"{what} sent from {format_addr(src)} to {format_addr(dst)}, quoting "
                            f"{min(len(raw), IPV6_MIN_MTU - 48)} of the {len(raw)} bytes (icmp6_send; spec §5.3)")
    message = _icmpv6_message(src, dst, type_, code, info, raw[:IPV6_MIN_MTU - 40 - 8])
    return build_ipv6(
        src=src, dst=dst, next_header=PROTO_ICMPV6, payload=message,
        hop_limit=s.hop_limit,
        flow_label=_flow_label(kernel, src, dst),
    )


def _not_sent(kernel: Kernel, what: str, why: str, source: str) -> None:
    """No error is sent; the trace says why."""
    if kernel.trace is not None:
        kernel.trace.append(f"{what} not sent: {why} ({source})")


def _flow_label(kernel: Kernel, src: bytes, dst: bytes) -> int:
    if not kernel.ip_sysctls.auto_flowlabels:
        return 0
    return kernel.entropy.flow_label(src, dst, 0, 0, PROTO_ICMPV6)


def _ineligible6(raw: bytes) -> bool:
    """is_ineligible: the offending packet is an ICMPv6 error, or its ICMPv6
    type is cut off in a packet that is no fragment (the M flag counts, RFC
    8200 §4.5); a header chain the kernel cannot walk (cut short, No Next
    Header) and a non-first fragment are eligible (net/ipv6/icmp.c)."""
    from .ipv6 import skip_exthdr

    if len(raw) < 40:
        return True
    found = skip_exthdr(raw)
    if found is None:
        return False
    proto, offset, frag_off = found
    if proto != PROTO_ICMPV6:
        return False
    if offset >= len(raw):
        return frag_off == 0
    return raw[offset] < 128


# -- receive -------------------------------------------------------------------

def receive(kernel: Kernel, pkt: IpPacket) -> Verdict:
    """Handle an ICMP (``pkt.version == 4``) or ICMPv6 message addressed to the host.

    Returns:
        deliver (no socket) for what the kernel consumes, with the echo or
        timestamp reply when there is one; drop ICMP_CSUM for a bad checksum,
        INVALID_PROTO for echo/timestamp to broadcast ignored (and other
        types to broadcast), UNHANDLED_PROTO for ICMPv4 types above 18.
    """
    if pkt.version == 4:
        return _receive4(kernel, pkt)
    return _receive6(kernel, pkt)


def _receive4(kernel: Kernel, pkt: IpPacket) -> Verdict:
    msg = pkt.l4
    # icmp_rcv: skb_checksum_simple_validate; on lo the host's own message is taken as it is
    if pkt.device != LOOPBACK_DEVICE and ones_complement_sum(msg) != 0xFFFF:
        return drop(DropReason.ICMP_CSUM, "bad ICMP checksum", handler="icmp")
    if len(msg) < 8:
        return drop(DropReason.NOT_SPECIFIED, f"ICMP message of {len(msg)} bytes, shorter than its header",
                    handler="icmp")
    type_ = msg[0]
    s = kernel.ip_sysctls
    if kernel.trace is not None:
        kernel.trace.append(f"ICMP type {type_} code {msg[1]} to a {pkt.route.value} address, checksum "
                            f"{'not verified on lo' if pkt.device == LOOPBACK_DEVICE else 'ok'} (icmp_rcv; spec §6)")
    if type_ == ICMP_EXT_ECHO:
        return deliver((), "extended echo (PROBE) ignored: icmp_echo_enable_probe is 0", handler="icmp probe")
    if pkt.route is not RouteType.LOCAL:
        if type_ in (ICMP_ECHO, ICMP_TIMESTAMP) and s.icmp_echo_ignore_broadcasts:
            return drop(DropReason.INVALID_PROTO, f"ICMP type {type_} to a {pkt.route.value} address "
                        "ignored (icmp_echo_ignore_broadcasts)", handler="icmp")
        if type_ not in (ICMP_ECHO, ICMP_TIMESTAMP, ICMP_ADDRESS, ICMP_ADDRESSREPLY):
            return drop(DropReason.INVALID_PROTO, f"ICMP type {type_} to a {pkt.route.value} address",
                        handler="icmp")
    if type_ > NR_ICMP_TYPES:
        return drop(DropReason.UNHANDLED_PROTO, f"unknown ICMP type {type_}", handler="icmp")
    if type_ == ICMP_ECHO:
        return _echo4(kernel, pkt, msg)
    if type_ == ICMP_TIMESTAMP:
        return _timestamp4(kernel, pkt, msg)
    if type_ == ICMP_ECHOREPLY:
        return deliver((), "echo reply consumed by the kernel (ping sockets are not modelled)",
                       handler="icmp echo reply")
    if type_ in _ICMP_ERRORS:
        if len(msg) < 8 + 20:
            return drop(DropReason.PKT_TOO_SMALL, "ICMP error quoting less than an IP header", handler="icmp error")
        tcp = tcp_err.receive_error(kernel, 4, type_, msg[1], bytes(msg[8:]))
        if tcp is not None:
            return tcp
        return deliver((), f"ICMP error {type_}/{msg[1]} about a packet of this host, consumed by the kernel",
                       handler="icmp error")
    return deliver((), f"ICMP type {type_} consumed without reply", handler="icmp discard")


def _reply4(kernel: Kernel, pkt: IpPacket, message_type: int, message_code: int,
            message: bytes) -> bytes | None:
    """icmp_reply: echo/timestamp reply header (spec §6): TOS copied whole,
    DF clear, hashed IP ID, options echoed; subject to the rate limits only
    when the ratemask names the type."""
    routing = kernel.routing
    s = kernel.ip_sysctls
    src = pkt.dst if pkt.route is RouteType.LOCAL else routing.source_address(pkt.src, pkt.device)
    if src is None:
        return None
    opts = ip_options.echo_options(pkt.raw, pkt.parsed_options, src, lambda a: not routing.is_local(a), kernel.now)
    if opts is None:
        return None
    limited = icmpv4_limited(message_type, message_code, s.icmp_ratemask)
    ok, apply = _global_gate(kernel, limited, "")
    if not ok or not _peer_gate(kernel, apply, pkt.src, pkt.device, s.icmp_ratelimit):
        _not_sent(kernel, f"ICMP {message_type}/{message_code} reply", "an ICMP rate limit is spent "
                  "(icmp_ratemask names the type)", "icmpv4_xrlim_allow; spec §5.4")
        return None
    return build_ipv4(
        src=src, dst=pkt.src, proto=PROTO_ICMP, payload=message,
        ttl=s.ip_default_ttl, tos=pkt.tos,
        ident=kernel.entropy.ip_id(pkt.src, PROTO_ICMP), options=opts,
    )


def _echo4(kernel: Kernel, pkt: IpPacket, msg: bytes) -> Verdict:
    if kernel.ip_sysctls.icmp_echo_ignore_all:
        return deliver((), "echo request ignored (icmp_echo_ignore_all)", handler="icmp echo")
    # type 0; code, identifier, sequence and data copied (icmp_echo)
    body = bytes((ICMP_ECHOREPLY, msg[1], 0, 0)) + msg[4:]
    message = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
    reply = _reply4(kernel, pkt, ICMP_ECHOREPLY, msg[1], message)
    return deliver((), "echo request answered", replies=replies(reply), handler="icmp echo")


def _timestamp4(kernel: Kernel, pkt: IpPacket, msg: bytes) -> Verdict:
    if len(msg) < 12:
        return drop(DropReason.PKT_TOO_SMALL, "timestamp request without an originate timestamp",
                    handler="icmp timestamp")
    now_ms = ip_options.ms_since_midnight(kernel.now).to_bytes(4, "big")
    # id/seq and originate copied, code 0, receive = transmit = now (icmp_timestamp)
    body = bytes((ICMP_TIMESTAMPREPLY, 0, 0, 0)) + msg[4:12] + now_ms + now_ms
    message = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
    reply = _reply4(kernel, pkt, ICMP_TIMESTAMPREPLY, 0, message)
    return deliver((), "timestamp request answered", replies=replies(reply), handler="icmp timestamp")


def _receive6(kernel: Kernel, pkt: IpPacket) -> Verdict:
    msg = pkt.l4
    if len(msg) < 4:
        if pkt.device == LOOPBACK_DEVICE or transport_checksum_ok(pkt.src, pkt.dst, PROTO_ICMPV6, msg):
            return drop(DropReason.NOT_SPECIFIED, f"ICMPv6 message of {len(msg)} bytes, shorter than its header",
                        handler="icmpv6")
        return drop(DropReason.ICMP_CSUM, "bad ICMPv6 checksum", handler="icmpv6")
    state = received_checksum(pkt.src, pkt.dst, PROTO_ICMPV6, pkt.raw, pkt.l4_offset, 2, pkt.device)
    if state == CSUM_BAD:
        return drop(DropReason.ICMP_CSUM, "bad ICMPv6 checksum", handler="icmpv6")
    verdict = _message6(kernel, pkt, msg)
    if state == CSUM_OFFLOADED:
        verdict = with_note(verdict, OFFLOADED_NOTE)
    return verdict


def _message6(kernel: Kernel, pkt: IpPacket, msg: bytes) -> Verdict:
    """icmpv6_rcv after the checksum: what the message type asks for."""
    if kernel.trace is not None:
        kernel.trace.append(f"ICMPv6 type {msg[0]} code {msg[1]} (icmpv6_rcv; spec §6)")
    if len(msg) < 8:
        return drop(DropReason.NOT_SPECIFIED, f"ICMPv6 message of {len(msg)} bytes, shorter than its header",
                    handler="icmpv6")
    type_ = msg[0]
    if type_ == ICMPV6_ECHO_REQUEST:
        return _echo6(kernel, pkt, msg)
    if type_ == ICMPV6_ECHO_REPLY:
        return deliver((), "echo reply consumed by the kernel (ping sockets are not modelled)",
                       handler="icmpv6 echo reply")
    if type_ in _NDISC_TYPES:
        return deliver((), f"neighbour discovery type {type_} consumed (not modelled: no answer)",
                       handler="icmpv6 ndisc")
    if type_ in _MLD_TYPES:
        return deliver((), f"MLD type {type_} consumed (not modelled: no answer)", handler="icmpv6 mld")
    if type_ < 128:
        tcp = tcp_err.receive_error(kernel, 6, type_, msg[1], bytes(msg[8:]))
        if tcp is not None:
            return tcp
        return deliver((), f"ICMPv6 error {type_}/{msg[1]} about a packet of this host, consumed by the kernel",
                       handler="icmpv6 error")
    return deliver((), f"ICMPv6 type {type_} consumed without reply", handler="icmpv6 discard")


def _echo6(kernel: Kernel, pkt: IpPacket, msg: bytes) -> Verdict:
    """icmpv6_echo_reply: type 129, code/id/seq/data copied, traffic class
    copied, auto flow label (or reflected), a multicast request answered from
    a unicast source chosen by source address selection."""
    s = kernel.ip_sysctls
    if s.icmp6_echo_ignore_all:
        return deliver((), "echo request ignored (echo_ignore_all)", handler="icmpv6 echo")
    multicast = pkt.dst[0] == 0xFF
    if multicast and s.icmp6_echo_ignore_multicast:
        return deliver((), "echo request to a multicast group ignored (echo_ignore_multicast)",
                       handler="icmpv6 echo")
    routing = kernel.routing
    dst = pkt.src
    src = routing.source_address(dst, routing.output_device(dst, pkt.device)) if multicast else pkt.dst
    if src is None:
        return deliver((), "no source address for the echo reply", handler="icmpv6 echo")
    limited = icmpv6_limited(ICMPV6_ECHO_REPLY, s.icmp6_ratemask)
    ok, apply = _global_gate(kernel, limited, "")
    if not ok or not _peer_gate(kernel, apply, dst, pkt.device, s.icmp6_ratelimit):
        return deliver((), "echo reply suppressed by the ICMPv6 rate limit", handler="icmpv6 echo")
    if s.flowlabel_reflect & FLOWLABEL_REFLECT_ECHO:
        flow_label = pkt.flow_label
    else:
        flow_label = _flow_label(kernel, src, dst)
    message = _icmpv6_message(src, dst, ICMPV6_ECHO_REPLY, msg[1], int.from_bytes(msg[4:8], "big"), msg[8:])
    reply = build_ipv6(
        src=src, dst=dst, next_header=PROTO_ICMPV6, payload=message,
        hop_limit=s.hop_limit, traffic_class=pkt.tos, flow_label=flow_label,
    )
    return deliver((), "echo request answered", replies=(reply,), handler="icmpv6 echo")
