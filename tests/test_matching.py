"""mask_random_fields / same_packet / first_difference: exactly the fields
Linux draws at random are masked (spec §0, §9)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tcp_helpers import segment

from pktdemux.matching import (
    describe_fields,
    first_difference,
    mask_random_fields,
    same_packet,
)
from pktdemux.wire import PROTO_ICMP, build_ipv4, build_ipv6, checksum

T01_REPLY = bytes.fromhex("4500002800004000400626c50a0000010a00000b00519c4000000000000003e950140000fb4a0000")
L02_REPLY = bytes.fromhex("4500003c00004000400626b50a0000010a00001c0050a028") + bytes.fromhex(
    "95e6a96a00000065a012fe88ce420000020405b40402080a84a6e127000003e80103030a")
TS_OPTS = bytes.fromhex("0101080a0000000100000002")


def with_ip_id(packet: bytes, ident: int) -> bytes:
    header = bytearray(packet[:20])
    header[4:6] = ident.to_bytes(2, "big")
    header[10:12] = b"\0\0"
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + packet[20:]


def with_seq(packet: bytes, seq: int) -> bytes:
    return packet[:24] + seq.to_bytes(4, "big") + packet[28:]


CASES = [
    # (id, a, b, same after masking?)
    ("rst-ip-id-is-exact", T01_REPLY, with_ip_id(T01_REPLY, 7), False),
    ("synack-isn-masked", L02_REPLY, with_seq(L02_REPLY, 1), True),
    ("synack-ip-id-is-exact", L02_REPLY, with_ip_id(L02_REPLY, 9), False),
    ("ack-ip-id-masked", segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6),
     with_ip_id(segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6), 4242), True),
    ("ack-seq-is-exact", segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6),
     segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 7, 6), False),
    ("tsval-masked", segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6, options=TS_OPTS),
     segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6, options=TS_OPTS[:4] + b"\x99\x99\x99\x99" + TS_OPTS[8:]),
     True),
    ("tsecr-is-exact", segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6, options=TS_OPTS),
     segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6, options=TS_OPTS[:8] + b"\x00\x00\x00\x09"), False),
    ("window-is-exact", segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6, window=100),
     segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6, window=101), False),
    ("icmp-ip-id-masked", build_ipv4(src=b"\1\2\3\4", dst=b"\5\6\7\x08", proto=PROTO_ICMP, payload=b"\3\3" + bytes(30),
                                     ident=1),
     build_ipv4(src=b"\1\2\3\4", dst=b"\5\6\7\x08", proto=PROTO_ICMP, payload=b"\3\3" + bytes(30), ident=2), True),
    ("ipv6-flow-label-masked", build_ipv6(src=bytes(16), dst=bytes(15) + b"\1", next_header=59, payload=b"", flow_label=5),
     build_ipv6(src=bytes(16), dst=bytes(15) + b"\1", next_header=59, payload=b"", flow_label=6), True),
    ("ipv6-traffic-class-is-exact",
     build_ipv6(src=bytes(16), dst=bytes(15) + b"\1", next_header=59, payload=b"", traffic_class=0xb8),
     build_ipv6(src=bytes(16), dst=bytes(15) + b"\1", next_header=59, payload=b"", traffic_class=0xb9), False),
]


@pytest.mark.parametrize(("case", "a", "b", "same"), CASES, ids=[c[0] for c in CASES])
def test_masking_rules(case: str, a: bytes, b: bytes, same: bool) -> None:
    assert same_packet(a, b) is same
    assert (first_difference(a, b) == "") is same


def test_first_difference_names_the_field() -> None:
    a = segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6, window=100)
    b = segment("10.0.0.1", "10.0.0.2", 80, 4000, "A", 5, 6, window=101)
    assert first_difference(a, b) == "tcp.window: 100 != 101"
    assert first_difference(T01_REPLY, with_ip_id(T01_REPLY, 7)).startswith("ip.id: 0 != 7")


def test_masked_checksums_are_zeroed() -> None:
    masked = mask_random_fields(L02_REPLY)
    assert masked[4:6] == L02_REPLY[4:6] and masked[10:12] == L02_REPLY[10:12]  # ID 0 kept, so its checksum too
    assert masked[24:28] == bytes(4) and masked[36:38] == bytes(2)


def test_describe_fields_of_a_reply() -> None:
    f = dict(describe_fields(T01_REPLY))
    assert (f["ip.flags"], f["tcp.flags"], f["tcp.ack"], f["tcp.options"]) == ("DF", "RA", "1001", "none")


@given(st.binary(max_size=120))
def test_masking_never_raises_and_keeps_length(data: bytes) -> None:
    masked = mask_random_fields(data)
    assert len(masked) == len(data)
    assert mask_random_fields(masked) == masked
    assert same_packet(data, data) and first_difference(data, data) == ""


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF))
def test_random_fields_never_matter(isn: int, ts: int, ident: int) -> None:
    opts = b"\x01\x01\x08\x0a" + struct.pack("!II", ts, 1)
    a = segment("10.0.0.1", "10.0.0.2", 80, 4000, "SA", isn, 6, options=opts)
    b = segment("10.0.0.1", "10.0.0.2", 80, 4000, "SA", 12345, 6, options=opts[:4] + b"\0\0\0\0" + opts[8:])
    assert same_packet(a, b)
    data = segment("10.0.0.1", "10.0.0.2", 80, 4000, "PA", 5, 6, payload=b"x")
    assert same_packet(data, with_ip_id(data, ident))


@given(st.binary(max_size=60), st.binary(max_size=60), st.integers(0, 15), st.integers(0, 15))
def test_tcp_difference_names_the_field_the_full_listing_names(a: bytes, b: bytes, doff_a: int,
                                                                doff_b: int) -> None:
    from pktdemux.matching import _difference, _tcp_difference, _tcp_fields

    for x, y in ((a, b), (bytes(12) + bytes([doff_a << 4]) + bytes(7) + a,
                          bytes(12) + bytes([doff_b << 4]) + bytes(7) + b)):
        assert _tcp_difference(x, y) == _difference(_tcp_fields(x), _tcp_fields(y))
