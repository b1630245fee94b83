"""Link-layer decoding: hand-made frames of every supported link type, the
snap-length rule, and robustness on random bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pktdemux.dropreason import DropReason
from pktdemux.linklayer import (
    SUPPORTED_LINKTYPES,
    Decoded,
    Undecoded,
    decode,
    ip_cut_short,
)
from pktdemux.wire import build_ipv4, build_ipv6

V4 = build_ipv4(src=bytes([10, 0, 0, 2]), dst=bytes([10, 0, 0, 1]), proto=17, payload=bytes(8))
V6 = build_ipv6(src=bytes(15) + b"\x02", dst=bytes(15) + b"\x01", next_header=17, payload=bytes(8))
MACS = bytes.fromhex("020000000001" "020000000002")  # destination, source


def eth(etype: int, payload: bytes) -> bytes:
    return MACS + struct.pack("!H", etype) + payload


def tag(tpid: int, vid: int) -> bytes:
    return struct.pack("!HH", tpid, vid)


def sll(proto: int, payload: bytes, hatype: int = 1) -> bytes:
    return struct.pack("!HHH8sH", 0, hatype, 6, bytes(8), proto) + payload


def sll2(proto: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, 2, 1, 0, 6, bytes(8)) + payload


def mpls(label: int, bottom: bool) -> bytes:
    return struct.pack("!I", (label << 12) | (0x100 if bottom else 0) | 64)


PPPOE = bytes([0x11, 0x00, 0x00, 0x01]) + struct.pack("!H", 30)
SNAP = bytes.fromhex("aaaa03000000")

DECODED = [
    # (id, linktype, frame, family, ip)
    ("ethernet-ipv4", 1, eth(0x0800, V4), 4, V4),
    ("ethernet-ipv6", 1, eth(0x86DD, V6), 6, V6),
    ("ethernet-padding-kept", 1, eth(0x0800, V4 + bytes(10)), 4, V4 + bytes(10)),
    ("dot1q", 1, MACS + tag(0x8100, 100) + b"\x08\x00" + V4, 4, V4),
    ("qinq-88a8", 1, MACS + tag(0x88A8, 10) + tag(0x8100, 20) + b"\x86\xdd" + V6, 6, V6),
    ("qinq-9100", 1, MACS + tag(0x9100, 10) + tag(0x8100, 20) + b"\x08\x00" + V4, 4, V4),
    ("vlan0-priority", 1, MACS + tag(0x8100, 0x6000) + b"\x08\x00" + V4, 4, V4),
    ("pppoe-ipv4", 1, eth(0x8864, PPPOE + b"\x00\x21" + V4), 4, V4),
    ("pppoe-ipv6", 1, eth(0x8864, PPPOE + b"\x00\x57" + V6), 6, V6),
    ("mpls-one-label", 1, eth(0x8847, mpls(16, True) + V4), 4, V4),
    ("mpls-two-labels-v6", 1, eth(0x8847, mpls(16, False) + mpls(17, True) + V6), 6, V6),
    ("llc-snap-ipv4", 1, eth(len(V4) + 8, SNAP + b"\x08\x00" + V4), 4, V4),
    ("sll-ipv4", 113, sll(0x0800, V4), 4, V4),
    ("sll-ipv6", 113, sll(0x86DD, V6), 6, V6),
    ("sll-vlan", 113, sll(0x8100, b"\x00\x05\x08\x00" + V4), 4, V4),
    ("sll2-ipv4", 276, sll2(0x0800, V4), 4, V4),
    ("sll2-ipv6", 276, sll2(0x86DD, V6), 6, V6),
    ("null-af2-little-endian", 0, struct.pack("<I", 2) + V4, 4, V4),
    ("null-af2-big-endian", 0, struct.pack(">I", 2) + V4, 4, V4),
    ("null-af24", 0, struct.pack("<I", 24) + V6, 6, V6),
    ("null-af28", 0, struct.pack("<I", 28) + V6, 6, V6),
    ("null-af30", 0, struct.pack("<I", 30) + V6, 6, V6),
    ("null-af30-big-endian", 0, struct.pack(">I", 30) + V6, 6, V6),
    ("loop-af2", 108, struct.pack(">I", 2) + V4, 4, V4),
    ("loop-af24", 108, struct.pack(">I", 24) + V6, 6, V6),
    ("raw101-v4", 101, V4, 4, V4),
    ("raw101-v6", 101, V6, 6, V6),
    ("dlt-raw12", 12, V6, 6, V6),
    ("dlt-raw14", 14, V4, 4, V4),
    ("ipv4-228", 228, V4, 4, V4),
    ("ipv6-229", 229, V6, 6, V6),
    # The link type decides the family, even when the header disagrees.
    ("ipv4-228-carrying-v6", 228, V6, 4, V6),
    ("ethertype-v6-carrying-v4", 1, eth(0x86DD, V4), 6, V4),
]


@pytest.mark.parametrize(("linktype", "frame", "family", "ip"),
                         [c[1:] for c in DECODED], ids=[c[0] for c in DECODED])
def test_decodes_ip(linktype: int, frame: bytes, family: int, ip: bytes) -> None:
    assert decode(linktype, frame) == Decoded(family, ip)


TRUNC = DropReason.CAPTURE_TRUNCATED
UNSUP = DropReason.UNSUPPORTED_LINK
NOT_DECODED = [
    # (id, linktype, frame, reason, words expected in the note)
    ("arp", 1, eth(0x0806, bytes(28)), None, "ARP"),
    ("lldp", 1, eth(0x88CC, bytes(20)), None, "LLDP"),
    ("unknown-ethertype", 1, eth(0x1234, bytes(20)), None, "0x1234"),
    ("stp-llc", 1, eth(38, bytes.fromhex("424203") + bytes(35)), None, "LLC"),
    ("vlan-arp", 1, MACS + tag(0x8100, 5) + b"\x08\x06" + bytes(28), None, "ARP"),
    ("pppoe-lcp", 1, eth(0x8864, PPPOE + b"\xc0\x21" + bytes(8)), None, "PPP protocol 0xc021"),
    ("mpls-pseudowire", 1, eth(0x8847, mpls(16, True) + bytes(4) + MACS), None, "MPLS"),
    ("sll-arp", 113, sll(0x0806, bytes(28)), None, "ARP"),
    ("sll-special-proto", 113, sll(0x0001, bytes(28)), None, "0x0001"),
    ("null-af7", 0, struct.pack("<I", 7) + V4, None, "family 7"),
    ("ethernet-cut-header", 1, MACS[:10], TRUNC, "Ethernet header (10 of 14"),
    ("ethernet-empty", 1, b"", TRUNC, "0 of 14"),
    ("vlan-cut-tag", 1, MACS + b"\x81\x00\x00", TRUNC, "VLAN tag"),
    ("pppoe-cut", 1, eth(0x8864, PPPOE[:3]), TRUNC, "PPPoE"),
    ("mpls-cut", 1, eth(0x8847, b"\x00\x01"), TRUNC, "MPLS label"),
    ("sll-cut", 113, bytes(15), TRUNC, "SLL"),
    ("sll2-cut", 276, bytes(19), TRUNC, "SLL2"),
    ("null-cut", 0, b"\x02\x00", TRUNC, "BSD loopback header"),
    ("loop-cut", 108, b"", TRUNC, "OpenBSD loopback"),
    ("raw-empty", 101, b"", TRUNC, "raw IP frame"),
    ("raw-bad-version", 101, b"\x50" + bytes(19), UNSUP, "IP version 5"),
    ("ipv4-228-empty", 228, b"", TRUNC, "IPv4"),
    ("ethernet-mpacket-274", 274, bytes(64), UNSUP, "link type 274"),
    ("unknown-linktype", 147, V4, UNSUP, "link type 147"),
    ("too-many-tags", 1, MACS + tag(0x8100, 1) * 20 + b"\x08\x00" + V4, UNSUP, "headers"),
]


@pytest.mark.parametrize(("linktype", "frame", "reason", "words"),
                         [c[1:] for c in NOT_DECODED], ids=[c[0] for c in NOT_DECODED])
def test_reports_frames_without_ip(linktype: int, frame: bytes, reason: DropReason | None, words: str) -> None:
    result = decode(linktype, frame)
    assert isinstance(result, Undecoded)
    assert result.reason is reason
    assert words in result.note


def test_supported_linktypes_are_the_documented_ones() -> None:
    assert SUPPORTED_LINKTYPES == {0, 1, 12, 14, 101, 108, 113, 228, 229, 276}


CUT = [
    ("v4-complete", V4, False),
    ("v4-missing-last-byte", V4[:-1], True),
    ("v4-header-only-part", V4[:12], True),
    ("v4-extra-trailer", V4 + bytes(4), False),
    ("v6-complete", V6, False),
    ("v6-missing-payload", V6[:44], True),
    ("v6-header-cut", V6[:30], True),
    ("empty", b"", True),
    ("unknown-version", b"\x50" + bytes(3), False),
]


@pytest.mark.parametrize(("ip", "cut"), [c[1:] for c in CUT], ids=[c[0] for c in CUT])
def test_ip_cut_short(ip: bytes, cut: bool) -> None:
    assert ip_cut_short(ip) is cut


@settings(max_examples=400, deadline=None)
@given(linktype=st.one_of(st.sampled_from(sorted(SUPPORTED_LINKTYPES)), st.integers(0, 0xFFFF)),
       frame=st.binary(max_size=80))
def test_decode_never_raises(linktype: int, frame: bytes) -> None:
    result = decode(linktype, frame)
    assert isinstance(result, (Decoded, Undecoded))
    if isinstance(result, Decoded):
        assert result.family in (4, 6)
        assert frame.endswith(result.ip)
    else:
        assert result.reason in (None, TRUNC, UNSUP)
        assert result.note
    ip_cut_short(frame)


@settings(max_examples=200, deadline=None)
@given(tags=st.lists(st.sampled_from([0x8100, 0x88A8, 0x9100]), max_size=4),
       etype=st.sampled_from([0x0800, 0x86DD]), body=st.binary(max_size=40))
def test_any_tag_stack_reaches_the_ip_packet(tags: list[int], etype: int, body: bytes) -> None:
    frame = MACS + b"".join(tag(t, 7) for t in tags) + struct.pack("!H", etype) + body
    assert decode(1, frame) == Decoded(4 if etype == 0x0800 else 6, body)
