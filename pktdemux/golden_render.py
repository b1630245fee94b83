"""One text line per IP packet, for golden transcripts (docs/golden.md).

The line shows every field whose value the kernel decides (flags, sequence
numbers, window, TCP options in order, TTL/hop limit, TOS, DF, lengths,
checksum validity, ICMP quotes) and renders symbolically the fields Linux
draws at random in the host's own packets, so a transcript recorded on the
real kernel and one from the emulation compare equal:

* the ISN of the host's SYN or SYN-ACK is ``seq isn``; the host's later
  sequence numbers and the peer's ACKs of that connection are ``isn+N``;
* the host's TSval is ``tsval``;
* the IPv4 ID and the IPv6 flow label are ``rand`` (``0`` when zero: DF
  packets without a connected socket, ``auto_flowlabels`` off).

Which fields are random comes from :func:`pktdemux.matching.mask_random_fields`.
Payloads and quotes are shown by length and the first 8 hex digits of their
SHA-256.  Never raises on a malformed packet: it shows what it could read.
"""

from __future__ import annotations

import hashlib
import struct

from .matching import mask_random_fields
from .wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    checksum,
    format_addr,
    transport_checksum_ok,
)

_IPV6_EXT = {0: "hbh", 43: "rt", 60: "dst"}
_IPV6_FRAG = 44
_ICMP4 = {(0, None): "echo-reply", (8, None): "echo-request", (3, 0): "net-unreachable",
          (3, 1): "host-unreachable", (3, 2): "protocol-unreachable", (3, 3): "port-unreachable",
          (3, 4): "frag-needed", (11, 0): "ttl-exceeded", (11, 1): "reassembly-timeout",
          (12, None): "parameter-problem", (13, None): "timestamp", (14, None): "timestamp-reply"}
_ICMP6 = {(128, None): "echo-request", (129, None): "echo-reply", (1, 0): "no-route",
          (1, 1): "admin-prohibited", (1, 3): "address-unreachable", (1, 4): "port-unreachable",
          (2, None): "packet-too-big", (3, 0): "hop-limit-exceeded", (3, 1): "reassembly-timeout",
          (4, None): "parameter-problem"}
_ICMP4_ERRORS = {3, 11, 12}
_ICMP6_ERRORS = {1, 2, 3, 4}
#: packetdrill's flag letters, in its order; ``.`` is ACK
_TCP_FLAGS = ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x20, "U"), (0x40, "E"), (0x80, "W"),
              (0x10, "."))


def digest(data: bytes) -> str:
    """``#`` and the first 8 hex digits of the SHA-256 of ``data``."""
    return "#" + hashlib.sha256(data).hexdigest()[:8]


def tcp_flags(flags: int) -> str:
    """packetdrill's spelling of a flags byte: ``S``, ``S.``, ``R.``, ``P.``; ``-`` for none."""
    return "".join(letter for bit, letter in _TCP_FLAGS if flags & bit) or "-"


def _random(packet: bytes, offset: int, pattern: bytes) -> bool:
    """Whether mask_random_fields treats these bytes as drawn at random:
    set them to ``pattern`` and see whether masking clears them."""
    probe = bytearray(packet)
    probe[offset:offset + len(pattern)] = bytes(a | b for a, b in zip(probe[offset:], pattern))
    masked = mask_random_fields(bytes(probe))
    return masked[offset:offset + len(pattern)] != bytes(probe[offset:offset + len(pattern)])


class LineRenderer:
    """Renders the packets of one transcript, in order.

    Remembers the ISN of each connection's host side (from the host's SYN or
    SYN-ACK), keyed by (host address, host port, peer address, peer port),
    so that later sequence and acknowledgment numbers are shown relative to it.
    """

    def __init__(self) -> None:
        self._isn: dict[tuple[bytes, int, bytes, int], int] = {}

    def render(self, ip: bytes, host: bool) -> str:
        """The line for ``ip`` (an IPv4/IPv6 packet from its header); ``host``
        is True for a packet the host sends, False for one it receives."""
        version = ip[0] >> 4 if ip else 0
        if version == 4 and len(ip) >= 20 and (ip[0] & 15) >= 5:
            return self._ipv4(ip, host)
        if version == 6 and len(ip) >= 40:
            return self._ipv6(ip, host)
        return f"unreadable IP packet {len(ip)} bytes {digest(ip)}"

    # -- IP ---------------------------------------------------------------------

    def _ipv4(self, ip: bytes, host: bool) -> str:
        ihl = (ip[0] & 15) * 4
        tos, total, ident, frag, ttl, proto = struct.unpack_from("!BHHHBB", ip, 1)
        fields = [f"ttl {ttl}"]
        if tos:
            fields.append(f"tos 0x{tos:02x}")
        fields.append("id rand" if host and ident and _random(ip, 4, b"\xff\xff") else f"id {ident}")
        fields += [name for bit, name in ((0x4000, "DF"), (0x2000, "MF")) if frag & bit]
        if frag & 0x1FFF:
            fields.append(f"frag {(frag & 0x1FFF) * 8}")
        if ihl > 20:
            fields.append(f"opts {ip[20:ihl].hex()}")
        fields.append(f"len {total}")
        if len(ip) < ihl or checksum(ip[:ihl]) != 0:
            fields.append("bad-ipsum")
        complete = len(ip) >= total
        if len(ip) != total:
            fields.append(f"caplen {len(ip)}")
        first = not frag & 0x3FFF
        body = self._l4(ip[12:16], ip[16:20], proto, ip[ihl:total] if complete else ip[ihl:],
                        first, complete and first, host)
        return f"{body} ({' '.join(fields)})"

    def _ipv6(self, ip: bytes, host: bool) -> str:
        word, plen, nh, hlim = struct.unpack_from("!IHBB", ip)
        flow, tclass = word & 0xFFFFF, (word >> 20) & 0xFF
        fields = [f"hlim {hlim}"]
        if tclass:
            fields.append(f"tc 0x{tclass:02x}")
        if host:
            fields.append("flow rand" if flow and _random(ip, 1, b"\x0f\xff\xff") else f"flow {flow}")
        elif flow:
            fields.append(f"flow {flow}")
        off, first, ext = 40, True, []
        while nh in _IPV6_EXT or nh == _IPV6_FRAG:
            if len(ip) < off + 8:
                break
            if nh == _IPV6_FRAG:
                offset, more = struct.unpack_from("!H", ip, off + 2)[0] >> 3, ip[off + 3] & 1
                ext.append(f"frag {offset * 8}{' MF' if more else ''} fid {struct.unpack_from('!I', ip, off + 4)[0]}")
                first = first and offset == 0
                nh, off = ip[off], off + 8
            else:
                ext.append(_IPV6_EXT[nh])
                nh, off = ip[off], off + 8 * (ip[off + 1] + 1)
        if ext:
            fields.append("ext " + ",".join(ext))
        fields.append(f"len {40 + plen}")
        complete = len(ip) >= 40 + plen
        if len(ip) != 40 + plen:
            fields.append(f"caplen {len(ip)}")
        single = complete and first and not any(e.startswith("frag") for e in ext)
        body = self._l4(ip[8:24], ip[24:40], nh, ip[off:40 + plen] if complete else ip[off:],
                        first, single, host)
        return f"{body} ({' '.join(fields)})"

    # -- transport ------------------------------------------------------------------

    def _l4(self, src: bytes, dst: bytes, proto: int, seg: bytes, first: bool, whole: bool,
            host: bool) -> str:
        """``whole``: ``seg`` is the entire segment (its checksum can be checked)."""
        a, b = format_addr(src), format_addr(dst)
        if not first:
            return f"{a} > {b} {_proto_name(proto)} fragment {len(seg)} {digest(seg)}"
        if proto == PROTO_TCP:
            return self._tcp(src, dst, seg, whole, host)
        if proto == PROTO_UDP and len(seg) >= 8:
            return _udp(src, dst, seg, whole)
        if proto in (PROTO_ICMP, PROTO_ICMPV6) and len(seg) >= 4:
            return self._icmp(src, dst, proto, seg, whole, host)
        return f"{a} > {b} {_proto_name(proto)} {len(seg)} {digest(seg)}"

    def _tcp(self, src: bytes, dst: bytes, seg: bytes, whole: bool, host: bool) -> str:
        if len(seg) < 20:
            ports = _ports(src, dst, seg)
            return f"{ports} tcp cut {len(seg)} {digest(seg)}"
        sport, dport, seq, ack, doff, flags, win, _, urg = struct.unpack_from("!HHIIBBHHH", seg)
        key = (src, sport, dst, dport) if host else (dst, dport, src, sport)
        if host and flags & 0x02:
            self._isn[key] = seq
        isn = self._isn.get(key)
        parts = [_ports(src, dst, seg), tcp_flags(flags)]
        parts.append(f"seq {_relative(seq, isn) if host else seq}")
        if flags & 0x10 or ack:
            parts.append(f"ack {ack if host else _relative(ack, isn)}")
        parts.append(f"win {win}")
        if flags & 0x20 or urg:
            parts.append(f"urg {urg}")
        hlen = (doff >> 4) * 4
        if hlen > 20:
            parts.append(_tcp_options(seg[20:hlen], host))
        payload = seg[max(hlen, 20):]
        if payload:
            parts.append(f"len {len(payload)} {digest(payload)}")
        if whole and not transport_checksum_ok(src, dst, PROTO_TCP, seg):
            parts.append("bad-csum")
        return " ".join(parts)

    def _icmp(self, src: bytes, dst: bytes, proto: int, seg: bytes, whole: bool, host: bool) -> str:
        v6 = proto == PROTO_ICMPV6
        itype, code = seg[0], seg[1]
        table = _ICMP6 if v6 else _ICMP4
        name = table.get((itype, code)) or table.get((itype, None)) or f"type {itype} code {code}"
        parts = [f"{format_addr(src)} > {format_addr(dst)}", "icmpv6" if v6 else "icmp", name]
        rest, body = seg[4:8], seg[8:]
        if itype in (_ICMP6_ERRORS if v6 else _ICMP4_ERRORS):
            if rest != bytes(4):
                parts.append(f"info {rest.hex()}")
            if body:
                parts.append(f"quote [{LineRenderer().render(body, host=False)}] {len(body)} {digest(body)}")
        elif len(seg) >= 8:
            ident, seqno = struct.unpack_from("!HH", seg, 4)
            parts.append(f"id {ident} seq {seqno}")
            if not v6 and itype == 14 and host and len(seg) >= 20:
                parts.append(f"orig {seg[8:12].hex()} recv rand xmit rand")
                body = seg[20:]
            if body:
                parts.append(f"len {len(body)} {digest(body)}")
        ok = transport_checksum_ok(src, dst, proto, seg) if v6 else checksum(seg) == 0
        if whole and not ok:
            parts.append("bad-csum")
        return " ".join(parts)


def _udp(src: bytes, dst: bytes, seg: bytes, whole: bool) -> str:
    """The UDP length decides the payload; a quote or a cut capture shows
    the bytes present (the IP part of the line says how many)."""
    _, _, length, csum = struct.unpack_from("!HHHH", seg)
    payload = seg[8:length]
    parts = [_ports(src, dst, seg), "udp", f"len {max(length - 8, 0)}"]
    if payload:
        parts.append(digest(payload))
    if length < 8 or (whole and length != len(seg)):
        parts.append(f"ulen {length}")
    if csum == 0:
        parts.append("csum 0")
    elif whole and not transport_checksum_ok(src, dst, PROTO_UDP, seg):
        parts.append("bad-csum")
    return " ".join(parts)


def _proto_name(proto: int) -> str:
    return {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmpv6"}.get(proto, f"proto {proto}")


def _ports(src: bytes, dst: bytes, seg: bytes) -> str:
    a, b = format_addr(src), format_addr(dst)
    if len(seg) < 4:
        return f"{a} > {b}"
    sport, dport = struct.unpack_from("!HH", seg)
    if len(src) == 16:
        return f"[{a}]:{sport} > [{b}]:{dport}"
    return f"{a}:{sport} > {b}:{dport}"


def _relative(value: int, isn: int | None) -> str:
    if isn is None:
        return str(value)
    delta = (value - isn) & 0xFFFFFFFF
    return "isn" if delta == 0 else f"isn+{delta}"


def _tcp_options(opts: bytes, host: bool) -> str:
    """``<mss 1460,sackOK,TS val tsval ecr 0,nop,wscale 7>``, in wire order;
    the host's TSval is random (a per-connection offset plus a clock)."""
    out, i = [], 0
    while i < len(opts):
        kind = opts[i]
        if kind in (0, 1):
            out.append("eol" if kind == 0 else "nop")
            i += 1
            continue
        size = opts[i + 1] if i + 1 < len(opts) else 0
        if size < 2 or i + size > len(opts):
            out.append(f"bad {opts[i:].hex()}")
            break
        out.append(_option(kind, opts[i + 2:i + size], host))
        i += size
    return "<" + ",".join(out) + ">"


def _option(kind: int, data: bytes, host: bool) -> str:
    if kind == 2 and len(data) == 2:
        return f"mss {struct.unpack('!H', data)[0]}"
    if kind == 3 and len(data) == 1:
        return f"wscale {data[0]}"
    if kind == 4 and not data:
        return "sackOK"
    if kind == 8 and len(data) == 8:
        val, ecr = struct.unpack("!II", data)
        return f"TS val {'tsval' if host else val} ecr {ecr}"
    if kind == 5 and len(data) % 8 == 0:
        blocks = [struct.unpack_from("!II", data, j) for j in range(0, len(data), 8)]
        return "sack " + " ".join(f"{a}:{b}" for a, b in blocks)
    return f"opt {kind} {data.hex()}"
