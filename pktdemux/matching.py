"""Compare IP packets with the fields Linux draws at random masked out.

The emulation's replies and the real kernel's agree byte for byte except for
values the kernel takes from boot-time secrets or clocks (spec §0, §9):

* IPv4 ID of packets that are not sent through the TCP control socket: ICMP,
  UDP, and every TCP segment of a full socket (per-socket counter with a
  random start).  RSTs and SYN-ACKs carry ID 0 (DF set, ip_select_ident_segs)
  and are compared exactly.
* The TCP sequence number of a SYN or SYN-ACK (the ISN, net/core/secure_seq.c).
* TSval in the TCP timestamp option (per-connection offset + ms clock).
* The IPv6 flow label (ip6_make_flowlabel auto label).
* The receive and transmit times of an ICMP timestamp reply.

Masking writes zeros over those fields and over the checksums that cover them
(IPv4 header checksum when the ID is masked, TCP checksum when the ISN or
TSval is masked, ICMP checksum when timestamps are masked), so two packets
mask equal exactly when every deterministic byte is equal.

Everything here works on packet bytes (network order) and never raises for
malformed input: what cannot be parsed is compared as it is.
"""

from __future__ import annotations

import struct

from .wire import PROTO_ICMP, PROTO_TCP, PROTO_UDP, format_addr

_TCP_SYN = 0x02
_TCP_RST = 0x04
_TCP_ACK = 0x10
_ICMP_TIMESTAMP_REPLY = 14


def mask_random_fields(packet: bytes) -> bytes:
    """``packet`` with the randomly drawn fields and their checksums zeroed.

    Args:
        packet: an IPv4 or IPv6 packet from its IP header.

    Returns:
        Bytes of the same length; ``packet`` itself when nothing needs
        masking (e.g. an RST) or when it is not IPv4/IPv6 or too short to
        parse.
    """
    if len(packet) < 20:
        return packet
    version = packet[0] >> 4
    if version == 4:
        return _mask_ipv4(packet)
    if version == 6 and len(packet) >= 40:
        return _mask_ipv6(packet)
    return packet


def _mask_ipv4(packet: bytes) -> bytes:
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[9]
    whole = ihl >= 20 and not (packet[6] & 0x1F or packet[7])  # fragment offset 0: a transport header follows
    if proto == PROTO_TCP and whole:
        if len(packet) < ihl + 14:
            return _zero(packet, _IP_ID_SPANS)
        flags = packet[ihl + 13]
        spans = _tcp_spans(packet, ihl, flags) if len(packet) >= ihl + 20 else ()
        if not (flags & _TCP_RST or flags & _SYN_ACK == _SYN_ACK):
            spans = _IP_ID_SPANS + spans
        return _zero(packet, spans) if spans else packet
    buf = bytearray(packet)
    if proto == PROTO_ICMP and whole:
        _mask_icmp(buf, ihl)
    buf[4:6] = b"\0\0"
    buf[10:12] = b"\0\0"
    return bytes(buf)


def _mask_ipv6(packet: bytes) -> bytes:
    buf = bytearray(packet)
    buf[1] &= 0xF0
    buf[2] = 0
    buf[3] = 0
    # Only packets without extension headers are dissected further: the
    # kernel's own replies never carry any.
    if packet[6] == PROTO_TCP and len(packet) >= 60:
        for start, end in _tcp_spans(packet, 40, packet[53]):
            buf[start:end] = bytes(end - start)
    return bytes(buf)


#: IPv4 ID and header checksum, masked together.
_IP_ID_SPANS = ((4, 6), (10, 12))
_SYN_ACK = _TCP_SYN | _TCP_ACK


def _tcp_spans(packet: bytes, l4: int, flags: int) -> tuple[tuple[int, int], ...]:
    """The byte ranges of the ISN (a SYN's), the TSval and then the TCP
    checksum that covers them; empty when neither is present."""
    tsval = tsval_offset(packet, l4)
    if flags & _TCP_SYN:
        if tsval is None:
            return ((l4 + 4, l4 + 8), (l4 + 16, l4 + 18))
        return ((l4 + 4, l4 + 8), (l4 + 16, l4 + 18), (tsval, tsval + 4))
    if tsval is None:
        return ()
    return ((l4 + 16, l4 + 18), (tsval, tsval + 4))


def _zero(packet: bytes, spans: tuple[tuple[int, int], ...]) -> bytes:
    buf = bytearray(packet)
    for start, end in spans:
        buf[start:end] = bytes(end - start)
    return bytes(buf)


_ALIGNED_TS = b"\x01\x01\x08\x0a"


def tsval_offset(buf: bytearray | bytes, l4: int) -> int | None:
    """Offset in ``buf`` of the TSval of the timestamp option of the TCP
    header at ``l4``, or None when there is none."""
    end = min(l4 + (buf[l4 + 12] >> 4) * 4, len(buf))
    i = l4 + 20
    if i + 12 <= end and buf[i:i + 4] == _ALIGNED_TS:
        return i + 4  # the layout Linux always writes (tcp_options_write)
    while i < end:
        kind = buf[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or buf[i + 1] < 2:
            return None
        if kind == 8 and buf[i + 1] == 10 and i + 10 <= end:
            return i + 2
        i += buf[i + 1]
    return None


def _mask_icmp(buf: bytearray, l4: int) -> None:
    if len(buf) >= l4 + 20 and buf[l4] == _ICMP_TIMESTAMP_REPLY:
        buf[l4 + 2:l4 + 4] = b"\0\0"
        buf[l4 + 12:l4 + 20] = bytes(8)


def same_packet(a: bytes, b: bytes) -> bool:
    """Whether ``a`` and ``b`` are equal once random fields are masked."""
    return a == b or mask_random_fields(a) == mask_random_fields(b)


def first_difference(a: bytes, b: bytes) -> str:
    """A short note naming the first field where ``a`` and ``b`` differ.

    Fields are compared after masking, in header order, e.g.
    ``"tcp.window: 64240 != 64235"``.  Returns ``""`` when they are the same
    packet (:func:`same_packet`).
    """
    masked_a, masked_b = mask_random_fields(a), mask_random_fields(b)
    if masked_a == masked_b:
        return ""
    transport = _transport_start(masked_a, masked_b)
    if transport is not None:
        # The IP headers are byte-identical, so only the transport fields can differ.
        if (masked_a[9] if transport == 20 else masked_a[6]) == PROTO_TCP:
            note = _tcp_difference(masked_a[transport:], masked_b[transport:])
        else:
            note = _difference(_transport_fields(masked_a, transport), _transport_fields(masked_b, transport))
        if note and not note.startswith("layers:"):
            return note
    return _difference(describe_fields(masked_a), describe_fields(masked_b))


def _difference(fields_a: list[tuple[str, str]], fields_b: list[tuple[str, str]]) -> str:
    for (name, value_a), (_, value_b) in zip(fields_a, fields_b):
        if value_a != value_b:
            return f"{name}: {value_a} != {value_b}"
    if len(fields_a) != len(fields_b):
        return f"layers: {_layers(fields_a)} != {_layers(fields_b)}"
    return ""


def _transport_start(a: bytes, b: bytes) -> int | None:
    """Where the transport header starts when ``a`` and ``b`` have the same
    plain IPv4/IPv6 header (no IPv4 options), else None."""
    if len(a) < 40 or len(b) < 40 or a[0] != b[0]:
        return None
    if a[0] == 0x45 and a[:20] == b[:20]:
        return 20
    if a[0] >> 4 == 6 and a[:40] == b[:40]:
        return 40
    return None


def _transport_fields(packet: bytes, l4: int) -> list[tuple[str, str]]:
    proto = packet[9] if l4 == 20 else packet[6]
    segment = packet[l4:]
    if proto == PROTO_TCP:
        return _tcp_fields(segment)
    if proto == PROTO_UDP:
        return _udp_fields(segment)
    if proto in (PROTO_ICMP, 58):
        return _icmp_fields(segment)
    return [("payload", segment.hex())]


def _layers(fields: list[tuple[str, str]]) -> str:
    seen: list[str] = []
    for name, _ in fields:
        layer = name.split(".")[0]
        if layer not in seen:
            seen.append(layer)
    return "/".join(seen)


def describe_fields(packet: bytes) -> list[tuple[str, str]]:
    """The named header fields of an IP packet, in wire order, as text.

    Names are ``layer.field`` (``ip.ttl``, ``ipv6.flow_label``, ``tcp.flags``,
    ``tcp.options``, ``udp.payload``, ``icmp.type``, ...).  A layer that is cut
    short ends the list with a ``<layer>.truncated`` entry.
    """
    if not packet:
        return [("ip.version", "none")]
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        fields, proto, l4 = _ipv4_fields(packet)
    elif version == 6 and len(packet) >= 40:
        fields, proto, l4 = _ipv6_fields(packet)
    else:
        return [("ip.version", str(version)), ("ip.bytes", packet.hex())]
    segment = packet[l4:]
    if proto == PROTO_TCP:
        fields += _tcp_fields(segment)
    elif proto == PROTO_UDP:
        fields += _udp_fields(segment)
    elif proto in (PROTO_ICMP, 58):
        fields += _icmp_fields(segment)
    else:
        fields.append(("payload", segment.hex()))
    return fields


def _ipv4_fields(p: bytes) -> tuple[list[tuple[str, str]], int, int]:
    vihl, tos, total, ident, frag, ttl, proto, csum = struct.unpack_from("!BBHHHBBH", p)
    ihl = (vihl & 0x0F) * 4
    flags = "DF" if frag & 0x4000 else ""
    flags += "MF" if frag & 0x2000 else ""
    fields = [
        ("ip.version", "4"), ("ip.ihl", str(ihl)), ("ip.tos", f"0x{tos:02x}"),
        ("ip.total_length", str(total)), ("ip.id", str(ident)), ("ip.flags", flags or "none"),
        ("ip.frag_offset", str((frag & 0x1FFF) * 8)), ("ip.ttl", str(ttl)), ("ip.proto", str(proto)),
        ("ip.checksum", f"0x{csum:04x}"), ("ip.src", format_addr(p[12:16])),
        ("ip.dst", format_addr(p[16:20])), ("ip.options", p[20:ihl].hex() or "none"),
    ]
    return fields, proto, max(ihl, 20)


def _ipv6_fields(p: bytes) -> tuple[list[tuple[str, str]], int, int]:
    first, plen, nh, hlim = struct.unpack_from("!IHBB", p)
    fields = [
        ("ipv6.version", "6"), ("ipv6.traffic_class", f"0x{(first >> 20) & 0xFF:02x}"),
        ("ipv6.flow_label", str(first & 0xFFFFF)), ("ipv6.payload_length", str(plen)),
        ("ipv6.next_header", str(nh)), ("ipv6.hop_limit", str(hlim)),
        ("ipv6.src", format_addr(p[8:24])), ("ipv6.dst", format_addr(p[24:40])),
    ]
    return fields, nh, 40


_TCP_FLAG_LETTERS = "FSRPAUEC"


def tcp_flags_text(flags: int) -> str:
    """``"SA"``, ``"RA"``, ``"FPA"``... (tcpdump/Scapy letters, low bit first)."""
    return "".join(c for i, c in enumerate(_TCP_FLAG_LETTERS) if flags >> i & 1) or "none"


def _tcp_fields(s: bytes) -> list[tuple[str, str]]:
    if len(s) < 20:
        return [("tcp.truncated", s.hex())]
    sport, dport, seq, ack, off, flags, win, csum, urg = struct.unpack_from("!HHIIBBHHH", s)
    doff = (off >> 4) * 4
    return [
        ("tcp.sport", str(sport)), ("tcp.dport", str(dport)), ("tcp.seq", str(seq)),
        ("tcp.ack", str(ack)), ("tcp.doff", str(doff)), ("tcp.flags", tcp_flags_text(flags)),
        ("tcp.window", str(win)), ("tcp.checksum", f"0x{csum:04x}"), ("tcp.urgent", str(urg)),
        ("tcp.options", s[20:doff].hex() or "none"), ("tcp.payload", f"{len(s) - doff} bytes {s[doff:].hex()}"),
    ]


_TCP_FIXED = struct.Struct("!HHIIBBHHH")
_TCP_FIXED_NAMES = ("tcp.sport", "tcp.dport", "tcp.seq", "tcp.ack", "tcp.doff", "tcp.flags", "tcp.window",
                    "tcp.checksum", "tcp.urgent")


def _tcp_difference(a: bytes, b: bytes) -> str:
    """:func:`_difference` of the :func:`_tcp_fields` of two segments,
    formatting only the field that differs (a mismatch is common in
    captures, and the payload's hex is long)."""
    if len(a) < 20 or len(b) < 20:
        return _difference(_tcp_fields(a), _tcp_fields(b))
    fa, fb = _TCP_FIXED.unpack_from(a), _TCP_FIXED.unpack_from(b)
    for i in range(9):
        if i == 4:
            va, vb = (fa[4] >> 4) * 4, (fb[4] >> 4) * 4
        else:
            va, vb = fa[i], fb[i]
        if va != vb:
            break
    else:
        doff = (fa[4] >> 4) * 4
        if a[20:doff] != b[20:doff]:
            return f"tcp.options: {a[20:doff].hex() or 'none'} != {b[20:doff].hex() or 'none'}"
        if a[doff:] != b[doff:]:
            return (f"tcp.payload: {len(a) - doff} bytes {a[doff:].hex()} != "
                    f"{len(b) - doff} bytes {b[doff:].hex()}")
        return ""
    if i == 5:
        text_a, text_b = tcp_flags_text(va), tcp_flags_text(vb)
    elif i == 7:
        text_a, text_b = f"0x{va:04x}", f"0x{vb:04x}"
    else:
        text_a, text_b = str(va), str(vb)
    return f"{_TCP_FIXED_NAMES[i]}: {text_a} != {text_b}"


def _udp_fields(s: bytes) -> list[tuple[str, str]]:
    if len(s) < 8:
        return [("udp.truncated", s.hex())]
    sport, dport, length, csum = struct.unpack_from("!HHHH", s)
    return [
        ("udp.sport", str(sport)), ("udp.dport", str(dport)), ("udp.length", str(length)),
        ("udp.checksum", f"0x{csum:04x}"), ("udp.payload", f"{len(s) - 8} bytes {s[8:].hex()}"),
    ]


def _icmp_fields(s: bytes) -> list[tuple[str, str]]:
    if len(s) < 8:
        return [("icmp.truncated", s.hex())]
    return [
        ("icmp.type", str(s[0])), ("icmp.code", str(s[1])), ("icmp.checksum", s[2:4].hex()),
        ("icmp.rest", s[4:8].hex()), ("icmp.payload", f"{len(s) - 8} bytes {s[8:].hex()}"),
    ]
