"""The pytest plugin, used as a project would: a test file with three lines
next to its capture or scenario, run by pytest with the plugin loaded (by
its ``pytest11`` entry point once installed, else with ``-p``)."""

from __future__ import annotations

import importlib.metadata
import pathlib
import shutil

import pytest

# Imported here once: pytester's in-process runs drop the modules each run imports.
import pktdemux.golden
import pktdemux.pytest_plugin
import pktdemux.record
import pktdemux.scenario  # noqa: F401

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "closed_port_rst.scn"

TEST_FILE = """
def test_closed_port(pktdemux_golden):
    pktdemux_golden.scenario("closed_port_rst.scn")

def test_refused_syn(pktdemux_golden):
    pktdemux_golden.replay("tcp_syn_refused.pcap", host="tcp_syn_refused.toml")
"""


def plugin_args() -> list[str]:
    """``-p`` unless the installed distribution already registers the plugin."""
    registered = any(ep.value == "pktdemux.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if registered else ["-p", "pktdemux.pytest_plugin"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project: a test file, a scenario, a capture and its host file."""
    shutil.copy(SCENARIO, pytester.path)
    for name in ("tcp_syn_refused.pcap", "tcp_syn_refused.toml"):
        shutil.copy(ROOT / "pcaps" / name, pytester.path)
    pytester.makepyfile(test_web=TEST_FILE)
    return pytester


def test_update_writes_the_goldens_next_to_the_test_and_they_pass(project: pytest.Pytester) -> None:
    project.runpytest(*plugin_args(), "--pktdemux-update").assert_outcomes(passed=2)
    written = (project.path / "closed_port_rst.golden").read_text()
    assert written.startswith("pktdemux-golden 1\nprofile linux-6.18\n")
    assert "R. seq 0 ack 1001 win 0 (ttl 64 id 0 DF len 40)" in written
    assert (project.path / "tcp_syn_refused.golden").exists()
    project.runpytest(*plugin_args()).assert_outcomes(passed=2)


def test_a_changed_behaviour_fails_with_the_diff(project: pytest.Pytester) -> None:
    project.runpytest(*plugin_args(), "--pktdemux-update").assert_outcomes(passed=2)
    scenario = project.path / "closed_port_rst.scn"
    scenario.write_text(scenario.read_text().replace("seq 1000 win 64240", "seq 1100 win 64240"))
    result = project.runpytest(*plugin_args())
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*transcript differs from *closed_port_rst.golden (pytest --pktdemux-update rewrites it):*",
        "-0.000000 > 10.0.0.1:81 > 10.0.0.2:40000 R. seq 0 ack 1001 win 0 (ttl 64 id 0 DF len 40)",
        "+0.000000 > 10.0.0.1:81 > 10.0.0.2:40000 R. seq 0 ack 1101 win 0 (ttl 64 id 0 DF len 40)",
    ])
    assert "Traceback" not in result.stdout.str()


def test_a_missing_golden_and_bad_input_fail_with_one_line(project: pytest.Pytester) -> None:
    (project.path / "closed_port_rst.scn").write_text("[host]\n---\n0 < nonsense\n")
    result = project.runpytest(*plugin_args())
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*pktdemux: *closed_port_rst.scn: line 3: column 5: unexpected 'nonsense'*",
                                 "*tcp_syn_refused.golden: no golden file yet; write it with pytest --pktdemux-update*"])


def test_the_option_is_documented_in_help(project: pytest.Pytester) -> None:
    project.runpytest(*plugin_args(), "--help").stdout.fnmatch_lines(["*--pktdemux-update*"])
