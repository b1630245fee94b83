"""``pktdemux replay``: output, JSONL, --write, exit codes and one-line errors,
through click's CliRunner and as a subprocess."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest
from ci_support import require_program
from click.testing import CliRunner

from pktdemux.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"
VECTORS = PCAPS / "linux618_vectors.pcap"
HOST_TOML = textwrap.dedent("""\
    [host]
    addresses = ["10.0.0.1/24", "fd00::1/64"]
    interface = "tun0"
    mtu = 1500
""")

@pytest.fixture
def host(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "host.toml"
    path.write_text(HOST_TOML)
    return path


def invoke(*args: str | pathlib.Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["replay", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def count_records(path: pathlib.Path) -> int:
    from pktdemux.capture import read_capture

    return sum(1 for _ in read_capture(path))


def test_rows_and_summary_in_plain_text(host: pathlib.Path) -> None:
    code, out, err = invoke(VECTORS, "--host", host)
    assert code == 0, err
    lines = out.splitlines()
    n = count_records(VECTORS)
    assert lines[0].split()[:3] == ["No.", "Time", "Dir"]
    rows = lines[1:n + 1]
    assert [int(r.split()[0]) for r in rows] == list(range(1, n + 1))
    assert "\x1b[" not in out  # no colours when stdout is not a terminal
    assert f"{n} packets:" in out
    assert "host's own replies" in out
    assert err == ""


def test_summary_only_and_quiet(host: pathlib.Path) -> None:
    code, out, _ = invoke(VECTORS, "--host", host, "--summary-only")
    assert code == 0
    assert out.splitlines()[0].startswith(f"{count_records(VECTORS)} packets:")
    code, out, _ = invoke(VECTORS, "--host", host, "--quiet")
    assert (code, out) == (0, "")


def test_jsonl_has_one_object_per_packet(host: pathlib.Path, tmp_path: pathlib.Path) -> None:
    jsonl = tmp_path / "out.jsonl"
    code, _, err = invoke(VECTORS, "--host", host, "--jsonl", jsonl, "--quiet")
    assert code == 0, err
    objs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [o["n"] for o in objs] == list(range(1, count_records(VECTORS) + 1))
    for o in objs:
        assert o["direction"] in ("in", "out", "other")
        assert isinstance(o["sockets"], list) and isinstance(o["replies"], list)
        assert {"verdict", "reason", "time"} <= o.keys()
        if o["direction"] == "in":
            assert o["verdict"] in ("deliver", "drop")
            assert (o["reason"] is None) == (o["verdict"] == "deliver")
        elif o["direction"] == "out":
            assert "matched" in o and o["matched"] in (True, False, None)
            assert o["verdict"] is None or o["looped"]
        else:
            assert o["verdict"] is None and o["reason"] is None
        for reply in o["replies"]:
            assert bytes.fromhex(reply)[0] >> 4 in (4, 6)
    assert {o["direction"] for o in objs} == {"in", "out", "other"}


def test_write_pcapng_reads_back(host: pathlib.Path, tmp_path: pathlib.Path) -> None:
    from scapy.utils import RawPcapNgReader

    out = tmp_path / "out.pcapng"
    jsonl = tmp_path / "out.jsonl"
    code, _, err = invoke(VECTORS, "--host", host, "--write", out, "--jsonl", jsonl, "--quiet")
    assert code == 0, err
    objs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    replies = sum(len(o["replies"]) for o in objs)
    from pktdemux.capture import read_capture

    original = [r.frame for r in read_capture(VECTORS)]
    got = list(RawPcapNgReader(str(out)))
    assert len(got) == len(original) + replies
    captured = [(data, meta) for data, meta in got if not meta.comments[0].startswith(b"pktdemux: emulated reply")]
    assert [data for data, _ in captured] == original
    for (_, meta), obj in zip(captured, objs, strict=True):
        comment = meta.comments[0].decode()
        assert comment.startswith(f"pktdemux: {obj['direction']}")
        if obj["reason"]:
            assert obj["reason"] in comment


def test_write_pcapng_reads_in_tshark(host: pathlib.Path, tmp_path: pathlib.Path) -> None:
    tshark = require_program("tshark")
    out = tmp_path / "out.pcapng"
    code, _, _ = invoke(PCAPS / "pcapng_eth_sll_mysql.pcapng", "--host", host, "--write", out, "--quiet")
    assert code == 0
    run = subprocess.run([tshark, "-r", str(out), "-T", "fields", "-e", "frame.comment",
                          "-e", "frame.time_epoch"], capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert all(line.startswith("pktdemux: ") for line in lines)
    captured = [line for line in lines if not line.startswith("pktdemux: emulated reply")]
    assert len(captured) == 159
    assert captured[0].endswith("1422527998.578402281")  # nanoseconds kept


CORRUPT = [
    # (capture, records kept, the error line's tail)
    ("cutoff_dns.pcap", 1, "cutoff_dns.pcap: record 2 at byte 240: file ends inside the record header (7 of 16 bytes)"),
    ("pcapng_spb_bad_blocklen.pcapng", 0, "record 1 at byte 96: block length 139 is not a multiple of 4"),
    ("pcap_bad_version.pcap", 0, "pcap_bad_version.pcap: byte 4: pcap version 1.4 is not supported (only 2.x)"),
    ("pcap_kuznetzov.pcap", 0, "byte 0: Kuznetzov-modified pcap (magic a1b2cd34) is not supported"),
]


@pytest.mark.parametrize(("name", "kept", "tail"), CORRUPT, ids=[c[0] for c in CORRUPT])
def test_bad_capture_is_one_line_and_keeps_work(host: pathlib.Path, tmp_path: pathlib.Path,
                                                name: str, kept: int, tail: str) -> None:
    jsonl = tmp_path / "out.jsonl"
    code, out, err = invoke(PCAPS / name, "--host", host, "--jsonl", jsonl)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pktdemux: error: ") and err.rstrip().endswith(tail)
    assert "Traceback" not in err
    if kept:
        assert len(jsonl.read_text().splitlines()) == kept
        assert f"{kept} packets:" in out  # the summary of what was read


def test_not_a_capture(host: pathlib.Path) -> None:
    code, _, err = invoke(host, "--host", host)
    assert code == 2
    assert err == f"pktdemux: error: {host}: byte 0: not a pcap or pcapng capture (starts with 0x5b686f73)\n"


def test_malformed_host_file(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[host\naddresses = [")
    code, out, err = invoke(VECTORS, "--host", bad)
    assert code == 2 and out == ""
    assert err.startswith(f"pktdemux: error: {bad}") and err.count("\n") == 1


def test_usage_errors_exit_2(host: pathlib.Path) -> None:
    assert invoke(VECTORS)[0] == 2  # --host missing
    assert invoke(VECTORS, "--host", host, "--seed", "x")[0] == 2


def test_unwritable_output(host: pathlib.Path, tmp_path: pathlib.Path) -> None:
    code, _, err = invoke(VECTORS, "--host", host, "--jsonl", tmp_path / "no" / "dir" / "x.jsonl")
    assert code == 2
    assert err.startswith("pktdemux: error: ") and "No such file or directory" in err


def run_module(*args: str | pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pktdemux", "replay", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_success_and_failure(host: pathlib.Path, tmp_path: pathlib.Path) -> None:
    jsonl = tmp_path / "out.jsonl"
    ok = run_module(VECTORS, "--host", host, "--jsonl", jsonl, "--summary-only")
    assert ok.returncode == 0, ok.stderr
    assert len(jsonl.read_text().splitlines()) == count_records(VECTORS)
    bad = run_module(PCAPS / "cutoff_dns.pcap", "--host", host)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        f"pktdemux: error: {PCAPS / 'cutoff_dns.pcap'}: record 2 at byte 240: "
        "file ends inside the record header (7 of 16 bytes)"]
    assert "1 packets:" in bad.stdout


def _tcp(flags: int, payload: bytes = b"") -> bytes:
    from pktdemux.wire import build_ipv4

    seg = bytes.fromhex("9c4000500000000100000000") + bytes([0x50, flags]) + bytes(6) + payload
    return build_ipv4(src=bytes([10, 0, 0, 2]), dst=bytes([10, 0, 0, 1]), proto=6, payload=seg)


def _icmp6(itype: int, code: int) -> bytes:
    from pktdemux.wire import build_ipv6

    return build_ipv6(src=bytes(15) + b"\x01", dst=bytes(15) + b"\x02", next_header=58,
                      payload=bytes([itype, code]) + bytes(6))


SUMMARIES = [
    ("syn", _tcp(0x02), ("10.0.0.2:40000", "10.0.0.1:80", "TCP", "[SYN]")),
    ("rst-ack", _tcp(0x14), ("10.0.0.2:40000", "10.0.0.1:80", "TCP", "[RST,ACK]")),
    ("psh-ack-data", _tcp(0x18, b"hello"), ("10.0.0.2:40000", "10.0.0.1:80", "TCP", "[PSH,ACK] len=5")),
    ("icmpv6-port-unreachable", _icmp6(1, 4), ("::1", "::2", "ICMPv6", "port unreachable")),
    ("icmpv6-unknown", _icmp6(200, 9), ("::1", "::2", "ICMPv6", "ICMPv6 type 200 code 9")),
    ("short-header", b"\x45" + bytes(10), ("", "", "IPv4", "11 bytes, header unreadable")),
    ("empty", b"", ("", "", "", "0 bytes, header unreadable")),
]


@pytest.mark.parametrize(("ip", "want"), [s[1:] for s in SUMMARIES], ids=[s[0] for s in SUMMARIES])
def test_packet_summaries(ip: bytes, want: tuple[str, str, str, str]) -> None:
    from pktdemux.render import summarize

    assert tuple(summarize(ip)) == want


def test_later_fragment_shows_no_ports() -> None:
    from pktdemux.render import summarize

    ip = bytearray(_tcp(0x02))
    ip[6:8] = (0x2000 | 10).to_bytes(2, "big")  # MF, offset 80
    assert summarize(bytes(ip)) == ("10.0.0.2", "10.0.0.1", "TCP", "frag off=80 MF")
