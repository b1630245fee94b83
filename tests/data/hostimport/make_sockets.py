"""Run inside a fresh network namespace (``unshare -n``): open a known set of
sockets, then print as JSON what ``ss -tuanpe`` and /proc/net/{tcp,tcp6,udp,udp6}
show of them, and ``ip -j addr``.

The set (ports 7001.. so that nothing else in the namespace collides):
TCP listeners on 0.0.0.0:7001, 10.0.0.1:7002, [::]:7003 dual-stack,
[::]:7004 V6ONLY, 0.0.0.0:7005 bound to tun0, two SO_REUSEPORT listeners
on 0.0.0.0:7006; an established loopback connection to 127.0.0.1:7001
(both ends); UDP bound on 0.0.0.0:7101 and [fd00::1]:7102, UDP connected
from 10.0.0.1:7103 to 10.0.0.2:9999.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def main() -> None:
    ip("link", "set", "lo", "up")
    ip("tuntap", "add", "dev", "tun0", "mode", "tun")
    ip("addr", "add", "10.0.0.1/24", "dev", "tun0")
    ip("addr", "add", "fd00::1/64", "dev", "tun0", "nodad")
    ip("link", "set", "tun0", "up")
    keep = []

    def tcp(family, addr, port, backlog, **opts):
        s = socket.socket(family, socket.SOCK_STREAM)
        if "v6only" in opts:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(opts["v6only"]))
        if opts.get("reuseport"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if "device" in opts:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, opts["device"].encode())
        s.bind((addr, port))
        s.listen(backlog)
        keep.append(s)
        return s

    tcp(socket.AF_INET, "0.0.0.0", 7001, 128)
    tcp(socket.AF_INET, "10.0.0.1", 7002, 64)
    tcp(socket.AF_INET6, "::", 7003, 128, v6only=False)
    tcp(socket.AF_INET6, "::", 7004, 32, v6only=True)
    tcp(socket.AF_INET, "0.0.0.0", 7005, 16, device="tun0")
    tcp(socket.AF_INET, "0.0.0.0", 7006, 10, reuseport=True)
    tcp(socket.AF_INET, "0.0.0.0", 7006, 10, reuseport=True)
    client = socket.create_connection(("127.0.0.1", 7001))
    server, _ = keep[0].accept()
    keep += [client, server]
    for family, addr, port in ((socket.AF_INET, "0.0.0.0", 7101), (socket.AF_INET6, "fd00::1", 7102)):
        u = socket.socket(family, socket.SOCK_DGRAM)
        u.bind((addr, port))
        keep.append(u)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("10.0.0.1", 7103))
    u.connect(("10.0.0.2", 9999))
    keep.append(u)

    out = {
        "pid": os.getpid(),
        "comm": pathlib.Path("/proc/self/comm").read_text().strip(),  # what `ss -p` names the process
        "uid": os.getuid(),
        "client_port": client.getsockname()[1],
        "ss": subprocess.run(["ss", "-tuanpe"], check=True, capture_output=True, text=True).stdout,
        "ip_addr": subprocess.run(["ip", "-j", "addr"], check=True, capture_output=True, text=True).stdout,
    }
    for name in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{name}") as f:
            out[name] = f.read()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
