"""Byte-level helpers shared by the receive path and the reply builders:
the Internet checksum, pseudo-headers, and IPv4/IPv6 header construction.

Addresses are ``bytes`` in network byte order (4 bytes for IPv4, 16 for
IPv6); ports and other integers are in host byte order.  Nothing here
imports Scapy: this is the hot path.
"""

from __future__ import annotations

import ipaddress
import struct

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

_V4_MAPPED = bytes(10) + b"\xff\xff"
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6_FIXED = struct.Struct("!IHBB16s16s")


def ones_complement_sum(data: bytes | memoryview, start: int = 0) -> int:
    """The 16-bit ones' complement sum of ``data`` (RFC 1071), folded, plus ``start``.

    Uses the identity that the ones' complement sum of 16-bit words equals the
    big-endian integer of the data modulo 0xFFFF (2**16 ≡ 1), which CPython
    computes in C.  Returns a value in 0..0xFFFF, where 0xFFFF stands for the
    "negative zero" that a correct checksum folds to.
    """
    if len(data) & 1:
        data = bytes(data) + b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF + start
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    # Any non-zero input that sums to a multiple of 0xFFFF folds to 0xFFFF, not 0.
    if total == 0 and (start or any(data)):
        return 0xFFFF
    return total


def checksum(data: bytes | memoryview, start: int = 0) -> int:
    """The Internet checksum (RFC 1071) of ``data`` with ``start`` pre-added."""
    return (~ones_complement_sum(data, start)) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1)."""
    if len(src) == 4:
        ph = src + dst + struct.pack("!BBH", 0, proto, length)
    else:
        ph = src + dst + struct.pack("!IxxxB", length, proto)
    return ones_complement_sum(ph)


def transport_checksum_ok(src: bytes, dst: bytes, proto: int, segment: bytes | memoryview) -> bool:
    """True when a TCP/UDP/ICMPv6 segment's checksum verifies over the pseudo-header."""
    return ones_complement_sum(segment, pseudo_header_sum(src, dst, proto, len(segment))) == 0xFFFF


def transport_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    """The checksum to store in a TCP/UDP/ICMPv6 segment whose checksum field is zero."""
    return checksum(segment, pseudo_header_sum(src, dst, proto, len(segment)))


def build_ipv4(
    *,
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    df: bool = False,
    options: bytes = b"",
) -> bytes:
    """An IPv4 packet (RFC 791) with a correct header checksum.

    ``options`` must already be padded to a multiple of 4 bytes.
    """
    ihl = 5 + len(options) // 4
    header = _IPV4.pack(
        0x40 | ihl, tos, 4 * ihl + len(payload), ident, 0x4000 if df else 0,
        ttl, proto, 0, src, dst,
    ) + options
    csum = checksum(header)
    return header[:10] + csum.to_bytes(2, "big") + header[12:] + payload


def build_ipv6(
    *,
    src: bytes,
    dst: bytes,
    next_header: int,
    payload: bytes,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """An IPv6 packet (RFC 8200) without extension headers."""
    first = (6 << 28) | (traffic_class << 20) | (flow_label & 0xFFFFF)
    return _IPV6_FIXED.pack(first, len(payload), next_header, hop_limit, src, dst) + payload


def format_addr(addr: bytes) -> str:
    """``10.0.0.1`` or ``fd00::1`` for a 4- or 16-byte address."""
    if len(addr) == 16 and addr[:12] == _V4_MAPPED:
        # Spell v4-mapped addresses as ::ffff:a.b.c.d, as the kernel and ss do.
        return "::ffff:" + str(ipaddress.IPv4Address(addr[12:]))
    return str(ipaddress.ip_address(addr))


def parse_addr(text: str) -> bytes:
    """The packed form of a textual IPv4 or IPv6 address.

    Raises:
        ValueError: if ``text`` is neither.
    """
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


def format_endpoint(addr: bytes, port: int) -> str:
    """``10.0.0.1:80`` or ``[fd00::1]:80``."""
    text = format_addr(addr)
    return f"[{text}]:{port}" if len(addr) == 16 else f"{text}:{port}"
