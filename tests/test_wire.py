"""The byte-level helpers: Internet checksum and header construction."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pktdemux.wire import (
    CSUM_BAD,
    CSUM_LOOPBACK,
    CSUM_OFFLOADED,
    CSUM_OK,
    build_ipv4,
    build_ipv6,
    checksum,
    format_addr,
    format_endpoint,
    ones_complement_sum,
    parse_addr,
    pseudo_header_sum,
    received_checksum,
    transport_checksum,
    transport_checksum_ok,
)

# Spec §12.1 T01: the kernel's RST, whose IP and TCP checksums are known good.
T01_REPLY = bytes.fromhex(
    "4500002800004000400626c50a0000010a00000b00519c4000000000000003e950140000fb4a0000"
)


def reference_sum(data: bytes) -> int:
    """RFC 1071 word-by-word ones' complement sum, the slow obvious way."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


@given(st.binary(max_size=300))
def test_fast_sum_matches_rfc1071_word_sum(data: bytes) -> None:
    """The big-integer shortcut agrees with the word-by-word sum (up to ±0 on all-zero input)."""
    fast = ones_complement_sum(data)
    slow = reference_sum(data)
    assert fast == slow or (slow in (0, 0xFFFF) and fast in (0, 0xFFFF) and not any(data))


def test_kernel_reply_checksums_verify() -> None:
    """A packet captured from Linux verifies: header sums to 0xFFFF, TCP over its pseudo-header."""
    assert checksum(T01_REPLY[:20]) == 0
    assert transport_checksum_ok(T01_REPLY[12:16], T01_REPLY[16:20], 6, T01_REPLY[20:])


def test_build_ipv4_reproduces_kernel_rst_byte_for_byte() -> None:
    """DF, ID 0, TTL 64 and a computed header checksum give the kernel's exact bytes."""
    built = build_ipv4(src=T01_REPLY[12:16], dst=T01_REPLY[16:20], proto=6, payload=T01_REPLY[20:], df=True)
    assert built == T01_REPLY


def test_transport_checksum_fills_a_zeroed_field() -> None:
    """Zeroing the TCP checksum and recomputing it gives back the original value."""
    segment = bytearray(T01_REPLY[20:])
    original = int.from_bytes(segment[16:18], "big")
    segment[16:18] = b"\0\0"
    assert transport_checksum(T01_REPLY[12:16], T01_REPLY[16:20], 6, bytes(segment)) == original


def test_build_ipv6_fixed_header_fields() -> None:
    """Version, traffic class, flow label, payload length, next header and hop limit land in place."""
    pkt = build_ipv6(src=parse_addr("fd00::1"), dst=parse_addr("fd00::2"), next_header=58,
                     payload=b"\x81\x00\x00\x00", hop_limit=64, traffic_class=0xB8, flow_label=0x12345)
    first, plen, nh, hlim = struct.unpack_from("!IHBB", pkt)
    assert (first >> 28, (first >> 20) & 0xFF, first & 0xFFFFF) == (6, 0xB8, 0x12345)
    assert (plen, nh, hlim, len(pkt)) == (4, 58, 64, 44)


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [("10.0.0.1", "10.0.0.1:80"), ("fd00::1", "[fd00::1]:80"), ("::ffff:10.0.0.1", "[::ffff:10.0.0.1]:80")],
)
def test_address_round_trip(text: str, endpoint: str) -> None:
    """Addresses parse to packed bytes and format back; IPv6 endpoints are bracketed."""
    packed = parse_addr(text)
    assert format_addr(packed) == text
    assert format_endpoint(packed, 80) == endpoint


def test_parse_addr_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        parse_addr("10.0.0")


def _segment(proto: int, src: bytes, dst: bytes, field: int, how: str, body: bytes) -> bytes:
    """A segment whose checksum field is right ("ok"), holds the pseudo-header sum ("offloaded") or is off by one."""
    seg = bytearray(body)
    seg[field:field + 2] = b"\0\0"
    if how == "offloaded":
        value = pseudo_header_sum(src, dst, proto, len(seg))
    else:
        value = transport_checksum(src, dst, proto, bytes(seg))
        if how == "bad":
            value ^= 1
    seg[field:field + 2] = value.to_bytes(2, "big")
    return bytes(seg)


V4 = (parse_addr("10.0.0.2"), parse_addr("10.0.0.1"))
V6 = (parse_addr("fd00::2"), parse_addr("fd00::1"))
CSUM_CASES = [
    # id, proto, addresses, checksum field offset, how the field was filled, device, expected
    ("tcp-ok", 6, V4, 16, "ok", "eth0", CSUM_OK),
    ("tcp-offloaded", 6, V4, 16, "offloaded", "eth0", CSUM_OFFLOADED),
    ("tcp-bad", 6, V4, 16, "bad", "eth0", CSUM_BAD),
    ("udp-ok", 17, V4, 6, "ok", "eth0", CSUM_OK),
    ("udp-offloaded", 17, V4, 6, "offloaded", "eth0", CSUM_OFFLOADED),
    ("udp6-offloaded", 17, V6, 6, "offloaded", "eth0", CSUM_OFFLOADED),
    ("udp-bad", 17, V4, 6, "bad", "eth0", CSUM_BAD),
    ("icmpv6-ok", 58, V6, 2, "ok", "eth0", CSUM_OK),
    ("icmpv6-offloaded", 58, V6, 2, "offloaded", "eth0", CSUM_OFFLOADED),
    ("icmpv6-bad", 58, V6, 2, "bad", "eth0", CSUM_BAD),
    ("bad-on-lo-not-verified", 17, V4, 6, "bad", "lo", CSUM_LOOPBACK),
]


@pytest.mark.parametrize("proto,addrs,field,how,device,expected", [c[1:] for c in CSUM_CASES],
                         ids=[c[0] for c in CSUM_CASES])
def test_received_checksum(proto, addrs, field, how, device, expected) -> None:
    body = bytes(range(40, 40 + 27))  # odd length: the pad byte counts
    seg = _segment(proto, *addrs, field, how, body)
    assert received_checksum(*addrs, proto, seg, 0, field, device) == expected
    # the same segment behind an IP header: the offset is honoured
    assert received_checksum(*addrs, proto, bytes(20) + seg, 20, field, device) == expected


@given(st.binary(min_size=8, max_size=64), st.sampled_from([6, 17, 58]))
def test_received_checksum_agrees_with_full_verification(body: bytes, proto: int) -> None:
    src, dst = V6
    field = {6: 2, 17: 6, 58: 2}[proto]
    ok = transport_checksum_ok(src, dst, proto, body)
    state = received_checksum(src, dst, proto, body, 0, field, "eth0")
    assert (state == CSUM_OK) == ok
