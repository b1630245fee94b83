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


#: :func:`received_checksum` results
CSUM_OK = "ok"                #: the checksum verifies over the pseudo-header
CSUM_OFFLOADED = "offloaded"  #: the field holds the pseudo-header sum alone, left for the NIC
CSUM_LOOPBACK = "loopback"    #: not verified: the packet came in on ``lo``
CSUM_BAD = "bad"              #: neither: the kernel drops it as a checksum error

#: the phrase a verdict's note carries when the checksum was taken as offloaded
OFFLOADED_NOTE = "checksum taken as offloaded (the field holds the pseudo-header sum, CHECKSUM_PARTIAL)"

LOOPBACK_DEVICE = "lo"


def received_checksum(src: bytes, dst: bytes, proto: int, raw: bytes, l4: int, field: int,
                      device: str, addr_sum: int | None = None) -> str:
    """How the kernel takes the TCP/UDP/ICMPv6 checksum of a received segment.

    Args:
        src, dst: the IP addresses (4 or 16 bytes each).
        proto: 6, 17 or 58: the pseudo-header's protocol.
        raw: bytes holding the segment from ``l4`` to their end (trimmed to
            the segment's length: the IP or UDP length).
        l4: offset of the transport header in ``raw``.
        field: offset of the checksum field in the transport header (16
            for TCP, 6 for UDP, 2 for ICMPv6).
        device: the ingress device.
        addr_sum: ``int.from_bytes(src + dst, "big") % 0xFFFF`` when the
            caller already has it.

    Returns:
        :data:`CSUM_LOOPBACK` on ``lo`` (the host's own packets arrive
        CHECKSUM_PARTIAL or already verified, loopback_xmit, so
        tcp_checksum_complete / udp_lib_checksum_complete do no check);
        :data:`CSUM_OK` when it verifies (RFC 1071 over the pseudo-header,
        RFC 9293 §3.1, RFC 768, RFC 8200 §8.1); :data:`CSUM_OFFLOADED` when
        the field holds the folded pseudo-header sum and nothing more: what
        a capture taken on the sending host shows when the NIC fills the
        checksum in later (CHECKSUM_PARTIAL: the stack stores
        ``~csum_tcpudp_magic(...)``); else :data:`CSUM_BAD`.  One pass
        over the segment: its big-endian integer modulo 0xFFFF is its
        16-bit word sum (2**16 ≡ 1).
    """
    if device == LOOPBACK_DEVICE:
        return CSUM_LOOPBACK
    length = len(raw) - l4
    data = int.from_bytes(raw[l4:] if l4 else raw, "big")
    if length & 1:
        data <<= 8  # pad the odd byte to a word
    if addr_sum is None:
        addr_sum = int.from_bytes(src + dst, "big")
    pseudo = addr_sum + proto + length
    if (pseudo + data) % 0xFFFF == 0:
        return CSUM_OK
    if raw[l4 + field] << 8 | raw[l4 + field + 1] == (pseudo % 0xFFFF or 0xFFFF):
        return CSUM_OFFLOADED
    return CSUM_BAD


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


def ip_datagram(ip: bytes) -> bytes:
    """``ip`` cut to the length its header gives (IPv4 total length, IPv6
    40 + payload length): what follows is link padding (a short Ethernet
    frame's) or an FCS, not payload.  A length the bytes cannot hold, an
    IPv6 payload length of 0 (jumbogram), or bytes that are not IPv4/IPv6
    leave ``ip`` as it is."""
    version = ip[0] >> 4 if ip else 0
    if version == 4 and len(ip) >= 20:
        length = (ip[2] << 8) | ip[3]
        if length < (ip[0] & 15) * 4:
            return ip
    elif version == 6 and len(ip) >= 40:
        length = 40 + ((ip[4] << 8) | ip[5])
        if length == 40:
            return ip
    else:
        return ip
    return ip[:length] if length < len(ip) else ip


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
