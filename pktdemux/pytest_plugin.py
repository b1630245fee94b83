"""pytest plugin: golden-transcript tests of a host's network behaviour.

Loaded through the ``pytest11`` entry point once pktdemux is installed.  A
test asks for the ``pktdemux_golden`` fixture::

    def test_web_host(pktdemux_golden):
        pktdemux_golden.replay("web.pcap", host="web.toml")

    def test_closed_port(pktdemux_golden):
        pktdemux_golden.scenario("closed_port.scn")

Each call makes the transcript (docs/golden.md) and compares it with the
golden file next to the test (default: the capture's or scenario's name
with ``.golden``, in the test file's folder); relative paths are taken
from the test file's folder.  A difference fails the test with the unified
diff.  ``pytest --pktdemux-update`` writes the golden files instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UPDATE_OPTION = "--pktdemux-update"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Adds ``--pktdemux-update``."""
    group = parser.getgroup("pktdemux", "pktdemux golden transcripts")
    group.addoption(UPDATE_OPTION, action="store_true", default=False,
                    help="write the pktdemux golden files instead of comparing with them")


class GoldenChecker:
    """What the ``pktdemux_golden`` fixture gives a test.

    Args:
        folder: the test file's folder; relative paths start there.
        update: write goldens instead of comparing.
    """

    def __init__(self, folder: Path, update: bool) -> None:
        self.folder = folder
        self.update = update

    def replay(self, capture: str | Path, host: str | Path, golden: str | Path | None = None,
               seed: int = 0) -> str:
        """Replay ``capture`` (pcap/pcapng) against the host file ``host``
        and check the transcript against ``golden``; returns the transcript.

        Fails the test on a difference, a missing golden, or bad input.
        """
        from .golden import capture_transcript
        from .hostfile import load_host

        capture_path = self._path(capture)
        return self._check(lambda: capture_transcript(str(capture_path), load_host(str(self._path(host))), seed),
                           self._golden(golden, capture_path))

    def scenario(self, scenario: str | Path, golden: str | Path | None = None, seed: int = 0) -> str:
        """Run a scenario file on the emulation and check its transcript
        against ``golden``; returns the transcript."""
        from .record import emulated
        from .scenario import load_scenario

        path = self._path(scenario)
        return self._check(lambda: emulated(load_scenario(str(path)), seed), self._golden(golden, path))

    def _path(self, path: str | Path) -> Path:
        return self.folder / path

    def _golden(self, golden: str | Path | None, source: Path) -> Path:
        return self._path(golden) if golden is not None else source.with_suffix(".golden")

    def _check(self, make, golden: Path) -> str:  # type: ignore[no-untyped-def]
        from .errors import PktdemuxError
        from .golden import compare, read_golden, write_golden

        try:
            text = make()
            if self.update:
                write_golden(str(golden), text)
                return text
            if not golden.exists():
                pytest.fail(f"{golden}: no golden file yet; write it with pytest {UPDATE_OPTION}", pytrace=False)
            diff = compare(read_golden(str(golden)), text, str(golden), "now")
        except PktdemuxError as err:
            pytest.fail(f"pktdemux: {err}", pytrace=False)
        if diff:
            pytest.fail(f"transcript differs from {golden} (pytest {UPDATE_OPTION} rewrites it):\n{diff}",
                        pytrace=False)
        return text


@pytest.fixture
def pktdemux_golden(request: pytest.FixtureRequest) -> GoldenChecker:
    """Checks pktdemux transcripts against golden files next to the test."""
    return GoldenChecker(Path(request.path).parent, bool(request.config.getoption(UPDATE_OPTION)))
