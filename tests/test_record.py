"""Scenario goldens in scenarios/: recorded on Linux with ``pktdemux record
--kernel``, checked against the emulation here, and re-recorded on the
real kernel by the kernel test; the verdicts a recording can prove; and
``pktdemux record``'s refusals."""

from __future__ import annotations

import os
import pathlib
import platform
import subprocess
import sys
import tempfile

import pytest
from click.testing import CliRunner

from pktdemux.cli import main
from pktdemux.golden import compare
from pktdemux.hostfile import build_kernel
from pktdemux.oracle import OracleResult, PacketResult, Reply, SocketReport
from pktdemux.oracle.result import Datagram
from pktdemux.record import _recorded_events, emulated, recorded
from pktdemux.scenario import load_scenario, parse_scenario

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.scn"))


def test_the_shipped_scenarios_cover_the_basic_answers() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"closed_port_rst", "listener_synack", "udp_port_unreachable", "icmp_echo", "dual_stack_v6only",
            "listener_precedence"} <= names
    assert all(p.with_suffix(".golden").exists() for p in SCENARIOS)
    assert all("# recorded on Linux 6.18" in p.with_suffix(".golden").read_text() for p in SCENARIOS)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_the_emulation_matches_the_golden_recorded_on_linux(path: pathlib.Path) -> None:
    golden = path.with_suffix(".golden")
    diff = compare(golden.read_text(), emulated(load_scenario(str(path))), str(golden), "emulation")
    assert diff == "", f"the emulation differs from Linux:\n{diff}"


@pytest.mark.kernel
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_linux_today_matches_the_emulation(path: pathlib.Path, kernel_oracle: object) -> None:
    scenario = load_scenario(str(path))
    diff = compare(recorded(scenario, platform.release()), emulated(scenario), "linux", "emulation")
    assert diff == "", f"Linux and the emulation differ:\n{diff}"


SCN = ('[host]\naddresses = ["10.0.0.1/24"]\n\n[[sockets]]\nname = "dns"\nlabel = "udp://0.0.0.0:53"\n---\n'
       "0 < 10.0.0.2:5353 > 10.0.0.1:53 udp len 2\n"
       "+0.1 < 10.0.0.2:5353 > 10.0.0.1:54 udp len 2\n"
       "+0.1 < 10.0.0.2:5353 > 10.0.0.1:54 udp len 2 bad-csum\n")


def fake_result(replies: list[tuple[bytes, ...]], datagrams: tuple[Datagram, ...]) -> OracleResult:
    scenario = parse_scenario(SCN, "s.scn")
    packets = tuple(PacketResult(i, p.offset, p.data, tuple(Reply(p.offset, r) for r in rs))
                    for i, (p, rs) in enumerate(zip(scenario.packets, replies)))
    return OracleResult("s", "eth0", packets, (SocketReport(0, "dns", datagrams=datagrams),), (), 0, (), 0.0, 0.0)


def test_recorded_verdicts_are_what_the_kernel_shows() -> None:
    scenario = parse_scenario(SCN, "s.scn")
    unreachable = [r for r in emulated(scenario).splitlines() if "port-unreachable" in r]
    assert unreachable
    emulated_replies = []
    kernel = build_kernel(scenario.host)
    for p in scenario.packets:
        emulated_replies.append(kernel.receive(p.data, now=1.0 + p.offset, device="eth0").replies)
    result = fake_result(emulated_replies, (Datagram("::ffff:10.0.0.2", 5353, b"\x00\x01"),))
    verdicts = [e.outcome for e in _recorded_events(scenario, result) if e.received]
    assert verdicts == ['deliver "dns"', "drop NO_SOCKET", "*"]


def test_record_needs_kernel_flag_and_bad_files_are_one_line(tmp_path: pathlib.Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["record", str(SCENARIOS[0])])
    assert (result.exit_code, result.stderr) == (
        2, "pktdemux: error: record needs --kernel (the real Linux kernel is the only recorder)\n")
    bad = tmp_path / "bad.scn"
    bad.write_text("[host]\n---\n0 < x\n")
    result = runner.invoke(main, ["record", str(bad), "--kernel"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and f"{bad}: line 3" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the command as another user")
def test_record_refuses_in_one_line_where_no_namespace_can_be_made() -> None:
    """As an unprivileged user, which cannot create the namespace."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)  # readable by that user
        scenario = pathlib.Path(folder) / "s.scn"
        scenario.write_text(SCN)
        proc = _record_as_nobody(scenario)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"pktdemux: error: {scenario}: cannot run on the real kernel here: needs root")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def _record_as_nobody(scenario: pathlib.Path) -> subprocess.CompletedProcess[str]:
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               sys.executable, "-m", "pktdemux", "record", str(scenario), "--kernel"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, cwd="/", timeout=60)
