"""Capture reading: the shipped real captures (every container variant and
the malformed ones), hand-made damaged files, and truncation at any byte."""

from __future__ import annotations

import collections
import gzip
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pktdemux.capture import Capture, Record, read_capture
from pktdemux.errors import CaptureError

PCAPS = pathlib.Path(__file__).resolve().parent.parent / "pcaps"


def records(name: str) -> list[Record]:
    return list(read_capture(PCAPS / name))


# Counts from Wireshark's capinfos; link types from the file or IDB headers.
GOOD = [
    # (file, records, {linktype: records}, interfaces used)
    ("tcp_handshake_nano_sll.pcap", 3, {113: 3}, {0}),
    ("http_get_dns.pcap", 43, {1: 43}, {0}),
    ("ipv6_http_raw101.pcap", 19, {101: 19}, {0}),
    ("null_af30_ipv6_http.pcap", 24, {0: 24}, {0}),
    ("null_redis_v6_refused.pcap", 12, {0: 12}, {0}),
    ("raw101_v4v6_mixed.pcap", 100, {101: 100}, {0}),
    ("raw228_ipv4_dns.pcap", 1, {228: 1}, {0}),
    ("raw229_ipv6_dns.pcap", 1, {229: 1}, {0}),
    ("raw12_ipv6_http.pcap", 81, {12: 81}, {0}),
    ("sll_babel_ipv6.pcap", 25, {113: 25}, {0}),
    ("sll2_tcp.pcap", 3, {276: 3}, {0}),
    ("sll2_icmp_v4v6.pcap", 6, {276: 6}, {0}),
    ("vlan_qinq_icmp.pcap", 26, {1: 26}, {0}),
    ("dot1ad_qinq_icmp.pcap", 2, {1: 2}, {0}),
    ("http_ns_be.pcap", 10, {1: 10}, {0}),
    ("icmp_echo_be.pcap", 2, {1: 2}, {0}),
    ("pcapng_11if_dns_tcp.pcapng", 64, {1: 62, 0: 2}, {0, 10}),
    ("pcapng_eth_sll_mysql.pcapng", 159, {1: 59, 113: 100}, {0, 1}),
    # Three sections; interface numbers run on across sections.
    ("pcapng_5if_be.pcapng", 8, {1: 6, 0: 2}, {0, 1, 2, 4}),
    ("ldap_v6_vlan_manyif.pcapng", 17, {1: 17}, {48}),
    ("zero_caplen_fuzz.pcap", 38, {1: 38}, {0}),
    ("trunc_ether_hdr.pcap", 1, {1: 1}, {0}),
    ("eth_snaplen20_icmp.pcap", 1, {1: 1}, {0}),
    ("empty_header_only.pcap", 0, {}, set()),
    # Link-type field 0x00300000: the reserved bits are masked off (NULL), no records.
    ("linktype_reserved_bits.pcap", 0, {}, set()),
]


@pytest.mark.parametrize(("name", "count", "linktypes", "interfaces"), GOOD, ids=[g[0] for g in GOOD])
def test_reads_real_captures(name: str, count: int, linktypes: dict[int, int], interfaces: set[int]) -> None:
    got = records(name)
    assert len(got) == count
    assert [r.n for r in got] == list(range(1, count + 1))
    assert dict(collections.Counter(r.linktype for r in got)) == linktypes
    assert {r.ifindex for r in got} == interfaces
    for r in got:
        assert len(r.frame) <= r.wirelen or name == "zero_caplen_fuzz.pcap"
        assert r.time == r.ts_ns / 10**9


# First timestamps as tshark prints them (frame.time_epoch), in nanoseconds.
TIMES = [
    ("tcp_handshake_nano_sll.pcap", [1418145369924505488, 1418145370052027262, 1418145370052115157]),  # pcap ns, LE
    ("http_ns_be.pcap", [1766361926167647291, 1766361926167658091]),  # pcap ns, big-endian
    ("icmp_echo_be.pcap", [1335958313152630000, 1335958317529201000]),  # pcap us, big-endian
    ("pcapng_eth_sll_mysql.pcapng", [1422527998578402281, 2894531997938836488]),  # if_tsresol 9
    ("pcapng_11if_dns_tcp.pcapng", [1439753725701607000, 1439753725701855000, 1439753725701568000]),
    ("pcapng_5if_be.pcapng", [1340954905298858000]),  # big-endian pcapng
]


@pytest.mark.parametrize(("name", "times"), TIMES, ids=[t[0] for t in TIMES])
def test_timestamps_keep_nanoseconds(name: str, times: list[int]) -> None:
    assert [r.ts_ns for r in records(name)[: len(times)]] == times


def test_snaplen_cut_keeps_wire_length() -> None:
    (rec,) = records("eth_snaplen20_icmp.pcap")
    assert (len(rec.frame), rec.wirelen) == (20, 98)


BAD = [
    # (file, records kept, position, words of the reason)
    ("cutoff_dns.pcap", 1, "record 2 at byte 240", "file ends inside the record header (7 of 16 bytes)"),
    ("pcap_bad_version.pcap", 0, "byte 4", "pcap version 1.4 is not supported"),
    ("pcapng_bad_version.pcapng", 0, "byte 12", "pcapng version 0.1 is not supported"),
    ("pcapng_shb_opt_too_long.pcapng", 0, "byte 24", "past the end of its block"),
    ("pcap_kuznetzov.pcap", 0, "byte 0", "Kuznetzov"),
    ("pcapng_spb_bad_blocklen.pcapng", 0, "record 1 at byte 96", "block length 139 is not a multiple of 4"),
]


@pytest.mark.parametrize(("name", "kept", "position", "words"), BAD, ids=[b[0] for b in BAD])
def test_reports_damaged_captures(name: str, kept: int, position: str, words: str) -> None:
    got: list[Record] = []
    with pytest.raises(CaptureError) as info:
        got.extend(read_capture(PCAPS / name))
    err = info.value
    assert len(got) == kept
    assert err.path.endswith(name)
    assert err.position == position
    assert words in err.reason
    assert str(err) == f"{err.path}: {position}: {err.reason}"
    assert "\n" not in str(err)


# -- hand-made files ----------------------------------------------------------

def pcap_bytes(frames: list[bytes], *, endian: str = "<", nano: bool = False, linktype: int = 101,
               version: tuple[int, int] = (2, 4)) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, *version, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(endian + "IIII", 1_700_000_000 + i, 123456, len(f), len(f)) + f
    return out


def write(tmp_path: pathlib.Path, data: bytes, name: str = "x.pcap") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


FRAMES = [bytes([0x45]) + bytes(19), bytes([0x60]) + bytes(39), bytes([0x45]) + bytes(30)]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_both_byte_orders_and_resolutions(tmp_path: pathlib.Path, endian: str, nano: bool) -> None:
    got = list(read_capture(write(tmp_path, pcap_bytes(FRAMES, endian=endian, nano=nano))))
    assert [r.frame for r in got] == FRAMES
    frac = 123456 if nano else 123456000
    assert [r.ts_ns for r in got] == [(1_700_000_000 + i) * 10**9 + frac for i in range(3)]


def test_pcap_fcs_bits_are_masked(tmp_path: pathlib.Path) -> None:
    got = list(read_capture(write(tmp_path, pcap_bytes(FRAMES, linktype=0x14000001))))
    assert {r.linktype for r in got} == {1}


def test_pcap_cut_inside_record_data(tmp_path: pathlib.Path) -> None:
    data = pcap_bytes(FRAMES)
    path = write(tmp_path, data[:-5])
    got: list[Record] = []
    with pytest.raises(CaptureError) as info:
        got.extend(read_capture(path))
    assert len(got) == 2
    offset = 24 + 2 * 16 + len(FRAMES[0]) + len(FRAMES[1])
    assert info.value.position == f"record 3 at byte {offset}"
    assert "26 of 31 bytes" in info.value.reason


def test_pcap_cut_is_reported_once(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    """Scapy logs a record it had to cut short; CaptureError says it instead."""
    path = write(tmp_path, pcap_bytes(FRAMES)[:-5])
    with caplog.at_level("DEBUG"), pytest.raises(CaptureError):
        list(read_capture(path))
    assert not [r for r in caplog.records if r.name.startswith("scapy")]


def test_gzip_read_error_is_reported(tmp_path: pathlib.Path) -> None:
    """A read error (here the gzip CRC, met when the last block is read) is
    not taken for the end of the file; the records before it come first."""
    frames = FRAMES * 1000
    data = bytearray(gzip.compress(pcap_bytes(frames)))
    data[-8] ^= 0xFF  # the CRC-32 of the gzip trailer
    got: list[Record] = []
    with pytest.raises(CaptureError) as info:
        got.extend(read_capture(write(tmp_path, bytes(data), "x.pcap.gz")))
    assert got and [r.frame for r in got] == frames[:len(got)]
    offset = 24 + sum(16 + len(r.frame) for r in got)
    assert info.value.position == f"record {len(got) + 1} at byte {offset}"
    assert "CRC check failed" in info.value.reason


def test_pcap_absurd_record_length(tmp_path: pathlib.Path) -> None:
    data = pcap_bytes(FRAMES[:1]) + struct.pack("<IIII", 1, 0, 0x7FFFFFF0, 0x7FFFFFF0) + bytes(100)
    with pytest.raises(CaptureError) as info:
        list(read_capture(write(tmp_path, data)))
    assert info.value.position == "record 2 at byte 60"
    assert "more than" in info.value.reason


@pytest.mark.parametrize(("data", "words"), [
    (b"", "empty file"),
    (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", "not a pcap or pcapng capture (starts with 0x47455420)"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "file ends inside the pcap file header (6 of 24 bytes)"),
])
def test_not_a_capture(tmp_path: pathlib.Path, data: bytes, words: str) -> None:
    with pytest.raises(CaptureError) as info:
        Capture(write(tmp_path, data))
    assert info.value.position == "byte 0"
    assert words in info.value.reason


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(CaptureError) as info:
        Capture(tmp_path / "nope.pcap")
    assert "No such file" in info.value.reason


def ng_block(btype: int, body: bytes, endian: str = "<", trailer: int | None = None) -> bytes:
    body += bytes(-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(endian + "II", btype, length) + body + struct.pack(endian + "I", trailer or length)


def shb(endian: str = "<") -> bytes:
    return ng_block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def idb(linktype: int, endian: str = "<", snaplen: int = 0, tsresol: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = struct.pack(endian + "HHB3x", 9, 1, tsresol) + struct.pack(endian + "HH", 0, 0)
    return ng_block(1, struct.pack(endian + "HHI", linktype, 0, snaplen) + opts, endian)


def epb(intid: int, ts: int, frame: bytes, endian: str = "<", caplen: int | None = None) -> bytes:
    cap = len(frame) if caplen is None else caplen
    return ng_block(6, struct.pack(endian + "IIIII", intid, ts >> 32, ts & 0xFFFFFFFF, cap, len(frame)) + frame, endian)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_sections(tmp_path: pathlib.Path, endian: str) -> None:
    data = (shb(endian) + idb(101, endian) + idb(1, endian, tsresol=9)
            + epb(1, 1_700_000_000_123456789, b"\x00" * 14 + FRAMES[0], endian)
            + epb(0, 1_700_000_001_000001, FRAMES[1], endian)
            + shb(endian) + idb(228, endian) + epb(0, 5_000_000, FRAMES[2], endian))
    got = list(read_capture(write(tmp_path, data, "x.pcapng")))
    assert [(r.n, r.linktype, r.ifindex) for r in got] == [(1, 1, 1), (2, 101, 0), (3, 228, 2)]
    assert [r.ts_ns for r in got] == [1_700_000_000_123456789, 1_700_000_001_000001000, 5_000_000_000]


def test_pcapng_simple_packet_block_with_unlimited_snaplen(tmp_path: pathlib.Path) -> None:
    spb = ng_block(3, struct.pack("<I", len(FRAMES[1])) + FRAMES[1])
    got = list(read_capture(write(tmp_path, shb() + idb(101) + spb, "x.pcapng")))
    assert [r.frame for r in got] == [FRAMES[1]]


PCAPNG_DAMAGE = [
    ("unknown-interface", epb(3, 0, FRAMES[0]), "names interface 3"),
    ("lengths-differ", ng_block(6, struct.pack("<5I", 0, 0, 0, 20, 20) + FRAMES[0], trailer=999),
     "block length 52 at its start but 999 at its end"),
    ("caplen-past-block", epb(0, 0, FRAMES[0], caplen=200), "runs past the end of its block"),
    ("cut-block", epb(0, 0, FRAMES[0])[:30], "runs past the end of the file"),
    ("cut-header", b"\x06\x00\x00", "file ends inside a block header"),
]


@pytest.mark.parametrize(("tail", "words"), [d[1:] for d in PCAPNG_DAMAGE], ids=[d[0] for d in PCAPNG_DAMAGE])
def test_pcapng_damage_after_a_good_record(tmp_path: pathlib.Path, tail: bytes, words: str) -> None:
    head = shb() + idb(101) + epb(0, 0, FRAMES[1])
    got: list[Record] = []
    with pytest.raises(CaptureError) as info:
        got.extend(read_capture(write(tmp_path, head + tail, "x.pcapng")))
    assert [r.frame for r in got] == [FRAMES[1]]
    assert info.value.position == f"record 2 at byte {len(head)}"
    assert words in info.value.reason


def test_offset_and_size_for_progress() -> None:
    with Capture(PCAPS / "http_get_dns.pcap") as cap:
        assert cap.size == (PCAPS / "http_get_dns.pcap").stat().st_size
        assert cap.offset == 24
        for _ in cap.records():
            pass
        assert cap.offset == cap.size


@pytest.mark.parametrize("name", ["http_get_dns.pcap", "pcapng_eth_sll_mysql.pcapng", "http_ns_be.pcap"])
@settings(max_examples=40, deadline=None)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_any_truncation_keeps_a_prefix(tmp_path_factory: pytest.TempPathFactory,
                                                            name: str, cut: float) -> None:
    full = (PCAPS / name).read_bytes()
    whole = records(name)
    size = int(len(full) * cut)
    path = tmp_path_factory.mktemp("cut") / name
    path.write_bytes(full[:size])
    got: list[Record] = []
    try:
        got.extend(read_capture(path))
    except CaptureError as e:
        assert str(e).startswith(str(path))
    else:
        # Only a cut between two records (or before the first) reads as a shorter file.
        assert size == len(full) or len(got) < len(whole)
    assert [(r.frame, r.ts_ns) for r in got] == [(r.frame, r.ts_ns) for r in whole[: len(got)]]
