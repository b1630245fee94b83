"""``pktdemux ss`` against the real ``ss -tuanp``: the same sockets are
opened on Linux in a private network namespace (this file, run as a script
under ``unshare -n``) and built in the emulation from a host file; the rows
must be the same, cell for cell, and ss's layout of the real rows must be
what :func:`pktdemux.ss.render` makes of them, byte for byte.

Needs root and the ``ss`` command.  Outside CI a missing namespace skips
these tests with the reason; under CI=true it fails them.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest
from ci_support import unavailable

pytestmark = pytest.mark.kernel

TIMEOUT = 60
#: (label, options) of each socket, in creation order; a TCP socket without
#: "listen" stays bound only (ss does not show it)
SOCKETS: list[tuple[str, dict[str, object]]] = [
    ("tcp://[::]:80", {"listen": 128, "v6only": False}),
    ("tcp://[::]:81", {"listen": 10, "v6only": True}),
    ("tcp://0.0.0.0:82", {"listen": 5}),
    ("tcp://[::ffff:10.0.0.1]:83", {"listen": 4096, "v6only": False}),
    ("tcp://0.0.0.0:84", {"listen": 1, "device": "eth0"}),
    ("tcp://[::]:85", {"listen": 1, "v6only": False, "device": "eth0"}),
    ("tcp://[::]:86", {"listen": 1, "v6only": True, "device": "eth0"}),
    ("tcp://[fd00::1]:87", {"listen": 3}),
    ("tcp://10.0.0.1:8080", {}),
    ("udp://0.0.0.0:53", {}),
    ("udp://[::]:54", {"v6only": True}),
    ("udp://[::]:55", {"v6only": False}),
    ("udp://10.0.0.1:5000", {"peer": "10.0.0.2:6000"}),
    ("udp://[fd00::1]:5001", {"peer": "[fd00::2]:6001"}),
    ("udp://127.0.0.1:65535", {}),
]
#: a loopback connection: the accepted end takes the place of its listener's fd
LOOPBACK_PORT = 9000


def _unavailable(reason: str) -> None:
    unavailable(f"real-kernel ss test cannot run: {reason}")


def _split(label: str) -> tuple[str, int, str, int]:
    proto, rest = label.split("://")
    addr, port = rest.rsplit(":", 1)
    family = 6 if addr.startswith("[") else 4
    return proto, family, addr.strip("[]"), int(port)


# -- the Linux side (run as a script in the namespace) ------------------------------

def _setup_namespace() -> None:
    for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "tuntap", "add", "dev", "eth0", "mode", "tun"],
                ["ip", "addr", "add", "10.0.0.1/24", "dev", "eth0"],
                ["ip", "-6", "addr", "add", "fd00::1/64", "dev", "eth0", "nodad"],
                ["ip", "link", "set", "eth0", "up"]):
        subprocess.run(cmd, check=True, capture_output=True)


def _open(label: str, options: dict[str, object]) -> socket.socket:
    proto, family, addr, port = _split(label)
    sock = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET,
                         socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    if "v6only" in options:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(bool(options["v6only"])))
    if "device" in options:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, str(options["device"]).encode())
    sock.bind((addr, port))
    if "listen" in options:
        sock.listen(int(options["listen"]))  # type: ignore[call-overload]
    if "peer" in options:
        peer_addr, peer_port = str(options["peer"]).rsplit(":", 1)
        sock.connect((peer_addr.strip("[]"), int(peer_port)))
    return sock


def _linux_main() -> None:
    _setup_namespace()
    held = [_open(label, options) for label, options in SOCKETS]
    listener = socket.socket()
    listener.bind(("127.0.0.1", LOOPBACK_PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", LOOPBACK_PORT))
    accepted, (_, client_port) = listener.accept()
    os.dup2(accepted.fileno(), listener.detach())
    accepted.close()
    comm = pathlib.Path("/proc/self/comm").read_text().strip()
    out = subprocess.run(["ss", "-tuanp"], capture_output=True, text=True, check=True).stdout
    json.dump({"pid": os.getpid(), "comm": comm, "client_port": client_port, "ss": out}, sys.stdout)
    del held, client


# -- the test side ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def linux() -> dict[str, object]:
    if sys.platform != "linux":
        _unavailable(f"needs Linux, this is {sys.platform}")
    if os.geteuid() != 0:
        _unavailable("needs root (network namespaces, TUN devices)")
    for tool in ("unshare", "ss", "ip"):
        if shutil.which(tool) is None:
            _unavailable(f"the {tool} command is not installed")
    done = subprocess.run(["unshare", "-n", sys.executable, __file__], check=False, capture_output=True, text=True,
                          timeout=TIMEOUT)
    if done.returncode != 0:
        _unavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _emulated_host(pid: int, comm: str, client_port: int):  # type: ignore[no-untyped-def]
    from pktdemux.host import Host
    from pktdemux.hostfile import build_kernel, host_from_dict

    owner = {"process": comm, "pid": pid}
    entries = [{"label": label, **options, **owner} for label, options in SOCKETS]
    entries += [
        {"label": f"tcp://127.0.0.1:{LOOPBACK_PORT}", "peer": f"127.0.0.1:{client_port}", **owner},
        {"label": f"tcp://127.0.0.1:{client_port}", "peer": f"127.0.0.1:{LOOPBACK_PORT}", **owner},
    ]
    doc = {"host": {"addresses": ["10.0.0.1/24", "fd00::1/64"]}, "sockets": entries}
    return Host.from_kernel(build_kernel(host_from_dict(doc)))


def parse(text: str) -> list[tuple[str, ...]]:
    """The rows of ``ss -tuanp`` output as cells (addresses keep their ``:``)."""
    rows = []
    for line in text.splitlines()[1:]:
        netid, state, recv_q, send_q, local, peer, *process = line.split()
        local_addr, local_port = local.rsplit(":", 1)
        peer_addr, peer_port = peer.rsplit(":", 1)
        rows.append((netid, state, f"{recv_q:<6}", f"{send_q:<6}", local_addr + ":", local_port,
                     peer_addr + ":", peer_port, " " + process[0] if process else ""))
    return rows


def test_rows_match_linux(linux: dict[str, object]) -> None:
    """Every socket shows on the same row, spelled alike, as on Linux (order aside: Linux's is its hash order)."""
    host = _emulated_host(int(linux["pid"]), str(linux["comm"]), int(linux["client_port"]))  # type: ignore[call-overload]
    real = parse(str(linux["ss"]))
    emulated = parse(str(host.ss()))
    assert sorted(emulated) == sorted(real)
    assert len(real) == len(SOCKETS) - 1 + 2  # the bound-only TCP socket does not show


def test_layout_matches_linux(linux: dict[str, object]) -> None:
    """ss's own rows, laid out by pktdemux.ss.render, are ss's output byte for byte."""
    from pktdemux.ss import SsRow, render

    text = str(linux["ss"])
    assert render(SsRow(*cells) for cells in parse(text)) == text


def test_header_spelling_matches_linux(linux: dict[str, object]) -> None:
    assert str(linux["ss"]).splitlines()[0].split() == ["Netid", "State", "Recv-Q", "Send-Q", "Local",
                                                       "Address:Port", "Peer", "Address:Port", "Process"]


if __name__ == "__main__":
    _linux_main()
