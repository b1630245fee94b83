"""The socket API against the real kernel: the call sequences of
tests/bind_cases.py run on Linux in private network namespaces
(tests/bind_kernel_runner.py under ``unshare -n``) and on the emulation; every
call must succeed or fail alike, with the same errno and, where a port was
picked, the same parity.

Needs root.  Outside CI a missing namespace skips these tests with the
reason; under CI=true it fails them.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from bind_cases import ALL_CASES, BASE_PORT, Case
from bind_support import run_emulated
from ci_support import unavailable

pytestmark = pytest.mark.kernel

RUNNER = pathlib.Path(__file__).with_name("bind_kernel_runner.py")
#: seconds for the whole batch (about 90 namespaces)
TIMEOUT = 120


def _unavailable(reason: str) -> None:
    unavailable(f"real-kernel bind tests cannot run: {reason}")


def _port_of(index: int) -> int:
    return BASE_PORT + 10 * index


@pytest.fixture(scope="module")
def kernel_results() -> dict[str, list[str]]:
    """Case id -> results on the running Linux kernel."""
    if sys.platform != "linux":
        _unavailable(f"needs Linux, this is {sys.platform}")
    if os.geteuid() != 0:
        _unavailable("needs root (network namespaces, TUN devices, seteuid)")
    unshare = shutil.which("unshare")
    if unshare is None:
        _unavailable("the unshare command (util-linux) is not installed")
    cases = [[c.id, _port_of(i), list(c.steps)] for i, c in enumerate(ALL_CASES)]
    try:
        done = subprocess.run([unshare, "-n", sys.executable, str(RUNNER)], input=json.dumps(cases),
                              capture_output=True, text=True, timeout=TIMEOUT, cwd=RUNNER.parent)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the kernel-side runner took more than {TIMEOUT} s", pytrace=False)
    if done.returncode != 0:
        _unavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    results: dict[str, list[str]] = json.loads(done.stdout)
    return results


@pytest.mark.parametrize("index_case", list(enumerate(ALL_CASES)), ids=[c.id for c in ALL_CASES])
def test_emulation_matches_kernel(kernel_results: dict[str, list[str]], index_case: tuple[int, Case]) -> None:
    """Each call of the sequence gives the same result on Linux and on the emulation."""
    index, case = index_case
    on_linux = kernel_results[case.id]
    emulated = run_emulated(case, _port_of(index))
    assert emulated == on_linux, f"steps: {'; '.join(case.steps)}"


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_table_matches_kernel(kernel_results: dict[str, list[str]], case: Case) -> None:
    """The expected results written in bind_cases.py are what Linux does."""
    assert kernel_results[case.id] == list(case.expected)
