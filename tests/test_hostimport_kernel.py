"""ss and /proc/net of a real kernel, imported: a known socket set is created
in a private network namespace (tests/data/hostimport/make_sockets.py under
``unshare -n``), then ``ss -tuanpe`` and /proc/net/{tcp,tcp6,udp,udp6} read
there are imported and compared with the set.

Needs root.  Outside CI a missing namespace skips with the reason; under
CI=true it fails.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from ci_support import unavailable

from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.hostimport import (
    build_host,
    parse_ip_addr_json,
    parse_proc_net,
    parse_ss,
    render,
)

pytestmark = pytest.mark.kernel

RUNNER = pathlib.Path(__file__).parent / "data" / "hostimport" / "make_sockets.py"


def _unavailable(reason: str) -> None:
    unavailable(f"real-kernel socket listing cannot run: {reason}")


@pytest.fixture(scope="module")
def listing() -> dict:
    if sys.platform != "linux" or os.geteuid() != 0:
        _unavailable("needs Linux and root (network namespaces)")
    if shutil.which("unshare") is None or shutil.which("ss") is None or shutil.which("ip") is None:
        _unavailable("needs unshare (util-linux), ss and ip (iproute2)")
    done = subprocess.run(["unshare", "-n", sys.executable, str(RUNNER)], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        _unavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout)


def table(spec) -> set[tuple]:  # type: ignore[no-untyped-def]
    """What the known set fixes of each socket: label, backlog, peer, V6ONLY, device."""
    return {(s.label, s.listen, s.peer_text, s.v6only, s.device) for s in spec.sockets}


def expected(client_port: int, backlog: dict[int, int] | None, v6only_shown: bool, device: bool) -> set[tuple]:
    def bl(port: int) -> int:
        return backlog[port] if backlog else 4096

    return {
        ("tcp://0.0.0.0:7001", bl(7001), None, None, None),
        ("tcp://10.0.0.1:7002", bl(7002), None, None, None),
        ("tcp://[::]:7003", bl(7003), None, False, None),
        ("tcp://[::]:7004", bl(7004), None, v6only_shown, None),
        ("tcp://0.0.0.0:7005", bl(7005), None, None, "tun0" if device else None),
        ("tcp://0.0.0.0:7006", bl(7006), None, None, None),
        ("tcp://127.0.0.1:7001", None, f"127.0.0.1:{client_port}", None, None),
        (f"tcp://127.0.0.1:{client_port}", None, "127.0.0.1:7001", None, None),
        ("udp://0.0.0.0:7101", None, None, None, None),
        ("udp://[fd00::1]:7102", None, None, None, None),
        ("udp://10.0.0.1:7103", None, "10.0.0.2:9999", None, None),
    }


def test_ss_output_imports_as_the_known_set(listing: dict) -> None:
    imported = build_host(parse_ss(listing["ss"]).sockets, source="ss")
    spec = parse_host(render(imported))
    backlogs = {7001: 128, 7002: 64, 7003: 128, 7004: 32, 7005: 16, 7006: 10}
    assert table(spec) == expected(listing["client_port"], backlogs, v6only_shown=True, device=True)
    assert len(spec.sockets) == 12  # two SO_REUSEPORT listeners on 7006
    assert [s.reuseport for s in spec.sockets if s.port == 7006] == [True, True]
    assert {(s.process, s.pid, s.uid) for s in spec.sockets} == {(listing["comm"], listing["pid"], listing["uid"])}
    build_kernel(spec)


def test_proc_net_imports_as_the_known_set(listing: dict) -> None:
    sockets = [o for name in ("tcp", "tcp6", "udp", "udp6") for o in parse_proc_net(listing[name], name)]
    ip = parse_ip_addr_json(listing["ip_addr"])
    imported = build_host(sockets, source="proc", addresses=ip.addresses, interface=ip.interface, mtu=ip.mtu)
    spec = parse_host(render(imported))
    # /proc/net shows no backlog, V6ONLY or bound device: Linux's defaults stand in
    assert table(spec) == expected(listing["client_port"], None, v6only_shown=False, device=False)
    assert {s.uid for s in spec.sockets} == {listing["uid"]}
    assert [str(a) for a in spec.interfaces[0].addresses] == ["10.0.0.1/24", "fd00::1/64"]
    build_kernel(spec)
