"""The few TCP segments the oracle builds and reads itself: the peer's side of
a handshake (SYN, final ACK) and the kernel's SYN-ACK.

Bytes in, bytes out, with :mod:`pktdemux.wire` for checksums and IP headers.
Addresses are packed (4 or 16 bytes), integers host order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    build_ipv4,
    build_ipv6,
    checksum,
    transport_checksum,
)

_TCP = struct.Struct("!HHIIBBHHH")

SYN, RST, ACK = 0x02, 0x04, 0x10

#: Window the injected handshake segments advertise (bytes).
PEER_WINDOW = 64240


@dataclass(frozen=True, slots=True)
class TcpView:
    """The fields of a TCP segment the oracle needs.

    Attributes:
        src, dst: packed addresses.
        sport, dport, seq, ack, flags, window: header fields, host order.
        payload_len: bytes after the TCP header.
    """

    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload_len: int


def parse_tcp(packet: bytes) -> TcpView | None:
    """The TCP view of an IPv4/IPv6 packet, or None when it is not a whole
    TCP segment (other protocol, IPv6 extension headers, truncated)."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != PROTO_TCP or ihl < 20:
            return None
        total = int.from_bytes(packet[2:4], "big")
        src, dst, l4 = packet[12:16], packet[16:20], packet[ihl:total]
    elif version == 6 and len(packet) >= 40:
        if packet[6] != PROTO_TCP:
            return None
        plen = int.from_bytes(packet[4:6], "big")
        src, dst, l4 = packet[8:24], packet[24:40], packet[40:40 + plen]
    else:
        return None
    if len(l4) < 20:
        return None
    sport, dport, seq, ack, off, flags, window, _, _ = _TCP.unpack_from(l4)
    return TcpView(src, dst, sport, dport, seq, ack, flags, window, len(l4) - (off >> 4) * 4)


def build_segment(
    *,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int = PEER_WINDOW,
    options: bytes = b"",
    payload: bytes = b"",
) -> bytes:
    """A TCP segment in an IPv4 or IPv6 packet (by address length), checksums correct.

    IPv4: TTL 64, ID 0, DF set; IPv6: hop limit 64, flow label 0.
    ``options`` must be padded to a multiple of 4 bytes.
    """
    off = (5 + len(options) // 4) << 4
    header = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off, flags, window, 0, 0)
    segment = header + options + payload
    csum = transport_checksum(src, dst, PROTO_TCP, segment)
    segment = segment[:16] + csum.to_bytes(2, "big") + segment[18:]
    if len(src) == 4:
        return build_ipv4(src=src, dst=dst, proto=PROTO_TCP, payload=segment, df=True)
    return build_ipv6(src=src, dst=dst, next_header=PROTO_TCP, payload=segment)


def mss_option(mss: int) -> bytes:
    """The 4-byte MSS option (RFC 9293 §3.2)."""
    return struct.pack("!BBH", 2, 4, mss)


def final_ack(syn: bytes, synack: bytes) -> bytes | None:
    """The peer's third handshake segment for ``syn`` answered by ``synack``.

    Returns None when ``synack`` is not a SYN-ACK for ``syn``'s flow.
    seq = SYN.seq + 1, ack = ISN + 1, no options, no payload.
    """
    s, r = parse_tcp(syn), parse_tcp(synack)
    if s is None or r is None or r.flags & (SYN | ACK | RST) != SYN | ACK:
        return None
    if (r.src, r.dst, r.sport, r.dport) != (s.dst, s.src, s.dport, s.sport):
        return None
    return build_segment(
        src=s.src, dst=s.dst, sport=s.sport, dport=s.dport, seq=s.seq + 1, ack=r.seq + 1, flags=ACK
    )


def rebase_ack(packet: bytes, isn: int) -> bytes:
    """``packet`` with ``isn`` added to its TCP acknowledgment number (mod
    2**32) and the TCP checksum recomputed; other packets unchanged.

    Lets a scenario written before the kernel picked its ISN acknowledge
    "ISN + n": the packet carries n.
    """
    view = parse_tcp(packet)
    if view is None:
        return packet
    version = packet[0] >> 4
    l4 = (packet[0] & 0x0F) * 4 if version == 4 else 40
    end = int.from_bytes(packet[2:4], "big") if version == 4 else 40 + int.from_bytes(packet[4:6], "big")
    segment = bytearray(packet[l4:end])
    segment[8:12] = ((view.ack + isn) & 0xFFFFFFFF).to_bytes(4, "big")
    segment[16:18] = b"\0\0"
    segment[16:18] = transport_checksum(view.src, view.dst, PROTO_TCP, bytes(segment)).to_bytes(2, "big")
    return packet[:l4] + bytes(segment) + packet[end:]


def _quoted_tcp_at(packet: bytes) -> tuple[int, int] | None:
    """(offset of the ICMP message, offset of the quoted TCP header) of an
    ICMPv4/ICMPv6 error quoting an IPv4/IPv6 TCP segment, else None."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20 and packet[9] == PROTO_ICMP:
        icmp = (packet[0] & 0x0F) * 4
        quote = icmp + 8
        if len(packet) < quote + 20 or packet[quote] >> 4 != 4 or packet[quote + 9] != PROTO_TCP:
            return None
        tcp = quote + (packet[quote] & 0x0F) * 4
    elif version == 6 and len(packet) >= 40 and packet[6] == PROTO_ICMPV6:
        icmp, quote = 40, 48
        if len(packet) < quote + 40 or packet[quote] >> 4 != 6 or packet[quote + 6] != PROTO_TCP:
            return None
        tcp = quote + 40
    else:
        return None
    return (icmp, tcp) if len(packet) >= tcp + 8 else None


def quoted_flow(packet: bytes) -> tuple[bytes, int, bytes, int] | None:
    """(source, source port, destination, destination port), packed
    addresses, of the TCP segment an ICMP/ICMPv6 error quotes, else None."""
    at = _quoted_tcp_at(packet)
    if at is None:
        return None
    icmp, tcp = at
    if packet[0] >> 4 == 4:
        src, dst = packet[icmp + 20:icmp + 24], packet[icmp + 24:icmp + 28]
    else:
        src, dst = packet[icmp + 16:icmp + 32], packet[icmp + 32:icmp + 48]
    sport, dport = struct.unpack_from("!HH", packet, tcp)
    return src, sport, dst, dport


def rebase_quoted_seq(packet: bytes, isn: int) -> bytes:
    """``packet``, an ICMP/ICMPv6 error quoting a TCP segment, with ``isn``
    added to the quoted sequence number (mod 2**32) and the ICMP checksum
    recomputed; other packets unchanged.  The quoted TCP checksum is left
    as it is (Linux reads only the ports and the sequence number)."""
    at = _quoted_tcp_at(packet)
    if at is None:
        return packet
    icmp, tcp = at
    buf = bytearray(packet)
    seq = int.from_bytes(buf[tcp + 4:tcp + 8], "big")
    buf[tcp + 4:tcp + 8] = ((seq + isn) & 0xFFFFFFFF).to_bytes(4, "big")
    buf[icmp + 2:icmp + 4] = b"\0\0"
    if packet[0] >> 4 == 4:
        end = int.from_bytes(packet[2:4], "big")
        csum = checksum(bytes(buf[icmp:end]))
    else:
        end = 40 + int.from_bytes(packet[4:6], "big")
        csum = transport_checksum(packet[8:24], packet[24:40], PROTO_ICMPV6, bytes(buf[icmp:end]))
    buf[icmp + 2:icmp + 4] = csum.to_bytes(2, "big")
    return bytes(buf)


def complete_checksum(packet: bytes) -> bytes:
    """``packet`` with its TCP or UDP checksum computed over the whole segment.

    Packets the kernel sends through ``lo`` leave the checksum to the device
    (checksum offload): only the pseudo-header sum is filled in.  This gives
    the bytes a real wire would carry.  IPv4 or IPv6 without extension
    headers only; other packets are returned unchanged.
    """
    if len(packet) < 20:
        return packet
    version = packet[0] >> 4
    if version == 4:
        l4, proto = (packet[0] & 0x0F) * 4, packet[9]
        src, dst, end = packet[12:16], packet[16:20], int.from_bytes(packet[2:4], "big")
    elif version == 6 and len(packet) >= 40:
        l4, proto = 40, packet[6]
        src, dst, end = packet[8:24], packet[24:40], 40 + int.from_bytes(packet[4:6], "big")
    else:
        return packet
    at = {PROTO_TCP: 16, PROTO_UDP: 6}.get(proto)
    segment = bytearray(packet[l4:end])
    if at is None or len(segment) < at + 2:
        return packet
    segment[at:at + 2] = b"\0\0"
    csum = transport_checksum(src, dst, proto, bytes(segment))
    if proto == PROTO_UDP and csum == 0:
        csum = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    segment[at:at + 2] = csum.to_bytes(2, "big")
    return packet[:l4] + bytes(segment) + packet[end:]
