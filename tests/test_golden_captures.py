"""Every shipped capture with a host file has a golden transcript in
tests/golden/, and ``pktdemux replay --golden`` checks and rewrites them.

Regenerate them all after an intended change of behaviour (docs/golden.md)::

    for h in pcaps/*.toml; do s=${h%.toml}; c=$(ls $s.pcap $s.pcapng 2>/dev/null | head -1); [ -n "$c" ] || continue
        pktdemux replay $c --host $h --golden tests/golden/$(basename $s).golden --update-golden; done
"""

from __future__ import annotations

import pathlib
import shutil

import pytest
from click.testing import CliRunner

from pktdemux.cli import main
from pktdemux.golden import capture_transcript, compare
from pktdemux.hostfile import load_host

ROOT = pathlib.Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"
GOLDEN = ROOT / "tests" / "golden"


def shipped() -> list[tuple[pathlib.Path, pathlib.Path]]:
    pairs = []
    for host in sorted(PCAPS.glob("*.toml")):
        captures = [host.with_suffix(ext) for ext in (".pcap", ".pcapng") if host.with_suffix(ext).exists()]
        pairs += [(captures[0], host)] if captures else []
    return pairs


def test_every_shipped_capture_with_a_host_has_a_golden() -> None:
    assert len(shipped()) >= 15
    assert sorted(p.stem for p, _ in shipped()) == sorted(g.stem for g in GOLDEN.glob("*.golden"))


@pytest.mark.parametrize(("capture", "host"), shipped(), ids=lambda p: p.name)
def test_replay_matches_its_golden(capture: pathlib.Path, host: pathlib.Path) -> None:
    golden = GOLDEN / f"{capture.stem}.golden"
    diff = compare(golden.read_text(), capture_transcript(str(capture), load_host(str(host))), str(golden), "now")
    assert diff == "", f"behaviour changed (regenerate: see tests/test_golden_captures.py):\n{diff}"


def invoke(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_replay_golden_equal_differs_and_update(tmp_path: pathlib.Path) -> None:
    capture, host = PCAPS / "tcp_syn_refused.pcap", PCAPS / "tcp_syn_refused.toml"
    golden = tmp_path / "g.golden"
    shutil.copy(GOLDEN / "tcp_syn_refused.golden", golden)
    assert invoke("replay", capture, "--host", host, "--golden", golden) == (0, "", f"{golden}: matches\n")
    golden.write_text(golden.read_text().replace("win 0 (ttl 64 id 0 DF len 40)\n", "win 1 (ttl 64 id 0 DF len 40)\n", 1))
    code, out, err = invoke("replay", capture, "--host", host, "--golden", golden)
    assert code == 1
    assert out.startswith(f"--- {golden}\n+++ now\n") and "-0.000000 > 10.1.1.6:20000" in out
    assert "differs" in err
    assert invoke("replay", capture, "--host", host, "--golden", golden, "--update-golden")[0] == 0
    assert golden.read_text() == (GOLDEN / "tcp_syn_refused.golden").read_text()


def test_cli_replay_golden_errors_are_one_line(tmp_path: pathlib.Path) -> None:
    capture, host = PCAPS / "tcp_syn_refused.pcap", PCAPS / "tcp_syn_refused.toml"
    code, _, err = invoke("replay", capture, "--host", host, "--golden", tmp_path / "none.golden")
    assert (code, err.count("\n")) == (2, 1) and "no golden file yet" in err
    code, _, err = invoke("replay", PCAPS / "pcap_bad_version.pcap", "--host", host, "--golden", tmp_path / "x")
    assert (code, err.count("\n")) == (2, 1) and err.startswith(f"pktdemux: error: {PCAPS / 'pcap_bad_version.pcap'}")
    code, _, err = invoke("replay", capture, "--host", host, "--update-golden")
    assert (code, err) == (2, "pktdemux: error: --update-golden needs --golden FILE\n")
