"""The terminal table's packet summaries (pktdemux.render)."""

from __future__ import annotations

import pathlib
import struct

import pytest

from pktdemux.capture import read_capture
from pktdemux.linklayer import decode
from pktdemux.render import summarize
from pktdemux.wire import build_ipv4, build_ipv6, parse_addr

PCAPS = pathlib.Path(__file__).resolve().parent.parent / "pcaps"


def tcp(flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", 80, 5000, 1, 2, 5 << 4, flags, 0, 0, 0) + payload


def udp(payload: bytes) -> bytes:
    return struct.pack("!HHHH", 53, 5000, 8 + len(payload), 0) + payload


V4 = dict(src=parse_addr("10.0.0.1"), dst=parse_addr("10.0.0.2"))
V6 = dict(src=parse_addr("fd00::1"), dst=parse_addr("fd00::2"))

CASES = [
    # id, IP packet, expected info
    ("tcp-rst", build_ipv4(proto=6, payload=tcp(0x14), **V4), "[RST,ACK]"),
    ("tcp-rst-padded", build_ipv4(proto=6, payload=tcp(0x14), **V4) + bytes(6), "[RST,ACK]"),
    ("tcp-data-padded", build_ipv4(proto=6, payload=tcp(0x18, b"abc"), **V4) + bytes(3), "[PSH,ACK] len=3"),
    ("tcp6-padded", build_ipv6(next_header=6, payload=tcp(0x14), **V6) + bytes(4), "[RST,ACK]"),
    ("udp-padded", build_ipv4(proto=17, payload=udp(b"ab"), **V4) + bytes(16), "len=2"),
    ("udp6-padded", build_ipv6(next_header=17, payload=udp(b"ab"), **V6) + bytes(16), "len=2"),
]


@pytest.mark.parametrize("ip,info", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_payload_length_comes_from_the_ip_length(ip: bytes, info: str) -> None:
    assert summarize(ip).info == info


def test_ethernet_padding_of_a_real_rst_is_not_payload() -> None:
    """pcaps/tcp_syn_refused.pcap packet 2: a 40-byte RST in a 60-byte frame."""
    record = list(read_capture(PCAPS / "tcp_syn_refused.pcap"))[1]
    _family, ip = decode(record.linktype, record.frame)
    assert len(ip) > 40  # the padding is there
    assert summarize(ip).info == "[RST,ACK]"
