"""Run bind_cases sequences on the real kernel; used by test_bind_kernel.py.

    unshare -n python3 bind_kernel_runner.py < cases.json > results.json

Input: a JSON list of [case id, port, [step, ...]].  Output: a JSON object
case id -> [result, ...] in the notation of bind_cases.py.  Each case runs in
a child process with a network namespace of its own (unshare(CLONE_NEWNET)),
holding lo and a TUN device tun0 with bind_cases.ADDRESSES, so that sysctls,
ports and sockets never leak from one case to the next.  Nothing is sent
anywhere: a TUN device without a reader drops what the kernel transmits.
Exit status 2 with a message on stderr when the namespace cannot be set up.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import sys

from bind_cases import (
    ADDRESSES,
    DEVICE,
    CallStep,
    SocketStep,
    SysctlStep,
    errname,
    parse_step,
)

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
SO_REUSEPORT = 15
IPV6_V6ONLY = 26
#: destinations whose handshake completes inside the namespace
LOCAL_HOSTS = {a.split("/")[0] for a in ADDRESSES} | {"127.0.0.1", "::1"}


class SetupError(Exception):
    """The namespace or its device could not be created."""


def new_namespace() -> int:
    """Enter a fresh network namespace with lo up and tun0 configured; returns the TUN fd."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise SetupError(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", DEVICE.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as err:
        raise SetupError(f"TUN device: {err}") from None
    commands = [["ip", "link", "set", "lo", "up"]]
    for addr in ADDRESSES:
        extra = ["nodad"] if ":" in addr else []
        commands.append(["ip", "addr", "add", addr, "dev", DEVICE, *extra])
    commands.append(["ip", "link", "set", DEVICE, "up"])
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SetupError(f"{' '.join(command)}: {done.stderr.strip()}")
    return fd


def run_case(port: int, steps: list[str]) -> list[str]:
    """The result of each call, in a namespace of its own."""
    tun = new_namespace()
    sockets: dict[str, tuple[socket.socket, SocketStep]] = {}
    results = []
    for text in steps:
        step = parse_step(text, port)
        if isinstance(step, SysctlStep):
            path = "/proc/sys/" + step.sysctl.replace(".", "/")
            with open(path, "w") as f:
                f.write(step.value)
        elif isinstance(step, SocketStep):
            with as_uid(step.uid):
                sockets[step.name] = (make_socket(step), step)
        else:
            sock, spec = sockets[step.name]
            with as_uid(spec.uid):
                results.append(call(sock, spec, step))
    os.close(tun)
    return results


class as_uid:
    """Effective uid ``uid`` for a while (socket owner and CAP_NET_BIND_SERVICE follow it)."""

    def __init__(self, uid: int) -> None:
        self.uid = uid

    def __enter__(self) -> None:
        if self.uid:
            os.seteuid(self.uid)

    def __exit__(self, *exc: object) -> None:
        if self.uid:
            os.seteuid(0)


def make_socket(step: SocketStep) -> socket.socket:
    family = socket.AF_INET if step.family == 4 else socket.AF_INET6
    kind = socket.SOCK_STREAM if step.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    if step.reuseaddr:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if step.reuseport:
        sock.setsockopt(socket.SOL_SOCKET, SO_REUSEPORT, 1)
    if step.v6only is not None:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_V6ONLY, int(step.v6only))
    if step.device:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, step.device.encode())
    return sock


def call(sock: socket.socket, spec: SocketStep, step: CallStep) -> str:
    port_before = _port(sock)
    address = (step.addr, step.port) if spec.family == 4 else (step.addr, step.port, 0, 0)
    try:
        if step.call == "bind":
            sock.bind(address)
        elif step.call == "listen":
            sock.listen(128)
        elif step.call == "connect":
            _connect(sock, spec, address)
        elif step.call == "close":
            sock.close()
            return "OK"
    except OSError as err:
        return errname(err.errno) if err.errno else type(err).__name__
    picks_port = port_before == 0 and (step.call != "bind" or step.port == 0)
    if picks_port and spec.proto == "tcp":
        return "OK even" if _port(sock) % 2 == 0 else "OK odd"
    return "OK"


def _connect(sock: socket.socket, spec: SocketStep, address: tuple) -> None:  # type: ignore[type-arg]
    if spec.proto == "udp":
        sock.connect(address)
        return
    sock.setblocking(False)
    err = sock.connect_ex(address)
    if err not in (0, errno.EINPROGRESS):
        raise OSError(err, os.strerror(err))
    if err and address[0] in LOCAL_HOSTS:
        # a local peer answers at once: finish the connect() as a blocking call would
        select.select([], [sock], [], 1.0)
        sock.connect_ex(address)


def _port(sock: socket.socket) -> int:
    try:
        return int(sock.getsockname()[1])
    except OSError:
        return 0


def main() -> int:
    cases = json.load(sys.stdin)
    results: dict[str, list[str]] = {}
    for case_id, port, steps in cases:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                payload = {"results": run_case(port, steps)}
            except SetupError as err:
                payload = {"setup_error": str(err)}
            except Exception as err:  # a broken case must not hide the others
                payload = {"results": [f"runner error: {err!r}"]}
            os.write(write, json.dumps(payload).encode())
            os._exit(0)
        os.close(write)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        os.waitpid(pid, 0)
        payload = json.loads(b"".join(chunks) or b'{"setup_error": "child died"}')
        if "setup_error" in payload:
            print(payload["setup_error"], file=sys.stderr)
            return 2
        results[case_id] = payload["results"]
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
