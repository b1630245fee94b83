"""Run a scenario on the real Linux kernel, in a private network namespace.

The calling process is not changed: a helper (``unshare -n`` and this
Python running :mod:`pktdemux.oracle.netns`) gets the scenario as JSON on
stdin and answers with JSON on stdout.  Nothing is sent outside the new
namespace, which disappears with the helper.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

from .errors import OracleError, OracleUnavailable
from .netns import EXIT_RUN, EXIT_SETUP
from .result import OracleResult
from .scenario import Scenario

#: Seconds allowed for namespace setup and collection, on top of the
#: scenario's own duration.
OVERHEAD_TIMEOUT = 30.0

_PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def check_available() -> None:
    """Raise :class:`OracleUnavailable` unless a namespace can be tried here:
    Linux, root (effective uid 0), ``unshare`` on PATH, ``/dev/net/tun``."""
    if not sys.platform.startswith("linux"):
        raise OracleUnavailable(f"needs Linux, this is {sys.platform}")
    if os.geteuid() != 0:
        raise OracleUnavailable("needs root (effective uid 0) to create a network namespace and a TUN device")
    if shutil.which("unshare") is None:
        raise OracleUnavailable("the unshare command (util-linux) is not installed")
    if shutil.which("ip") is None:
        raise OracleUnavailable("the ip command (iproute2) is not installed")
    if not os.path.exists("/dev/net/tun"):
        raise OracleUnavailable("/dev/net/tun does not exist")


def run_scenario(scenario: Scenario, *, timeout: float | None = None, python: str | None = None) -> OracleResult:
    """What the real kernel transmits for each packet of ``scenario``.

    Args:
        scenario: the host and the packets.
        timeout: seconds before the helper is killed; default the scenario's
            duration plus :data:`OVERHEAD_TIMEOUT`.
        python: the interpreter for the helper (default: this one).

    Returns:
        The kernel's replies per packet and the sockets' receipts.

    Raises:
        OracleUnavailable: not root, or the namespace or TUN device could not
            be created (the reason says which).
        OracleError: the helper failed or timed out while running the scenario.
    """
    check_available()
    duration = scenario.duration + scenario.settle
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    command = ["unshare", "-n", python or sys.executable, "-m", "pktdemux.oracle.netns"]
    try:
        proc = subprocess.run(
            command, check=False, input=json.dumps(scenario.to_json()), capture_output=True, text=True,
            timeout=timeout if timeout is not None else duration + OVERHEAD_TIMEOUT, env=env,
        )
    except subprocess.TimeoutExpired:
        raise OracleError(f"scenario {scenario.name!r} timed out") from None
    except OSError as exc:
        raise OracleUnavailable(f"cannot start {command[0]}: {exc.strerror}") from None
    return _parse(scenario, proc)


def _parse(scenario: Scenario, proc: subprocess.CompletedProcess[str]) -> OracleResult:
    stderr = proc.stderr.strip()
    last_line = stderr.splitlines()[-1] if stderr else ""
    if proc.returncode == 0:
        return OracleResult.from_json(json.loads(proc.stdout))
    if stderr.startswith("unshare:"):
        raise OracleUnavailable(f"cannot create a network namespace ({last_line})")
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        answer = {}
    if proc.returncode == EXIT_SETUP:
        raise OracleUnavailable(f"namespace setup failed: {answer.get('reason', last_line)}")
    if proc.returncode == EXIT_RUN:
        raise OracleError(f"scenario {scenario.name!r} failed", answer.get("reason", last_line))
    raise OracleError(f"oracle helper exited with status {proc.returncode}", last_line)
