"""The TUN device inside the oracle's network namespace, and the namespace's
sysctls.

Runs only inside the helper process (a fresh network namespace): it changes
the namespace's configuration freely.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Mapping

from .noise import is_background_noise
from .segments import complete_checksum

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4

#: Set before the device exists so that it never solicits routers, runs DAD
#: or makes a link-local address: the host has exactly the addresses its
#: host file lists, as the emulation assumes.
QUIET_IPV6 = {
    "net.ipv6.conf.default.router_solicitations": 0,
    "net.ipv6.conf.default.accept_dad": 0,
    "net.ipv6.conf.default.addr_gen_mode": 1,
}


class SetupError(Exception):
    """A namespace setup step failed (the message names the step)."""


def write_sysctl(name: str, value: object) -> None:
    """Write one sysctl through /proc/sys (``net.ipv4.x`` → ``net/ipv4/x``).

    Raises:
        SetupError: the sysctl does not exist or rejects the value.
    """
    text = " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise SetupError(f"sysctl {name}={text}: {exc.strerror}") from None


def write_sysctls(values: Mapping[str, object]) -> None:
    """Write several sysctls, in order (see :func:`write_sysctl`)."""
    for name, value in values.items():
        write_sysctl(name, value)


def _ip(*args: str) -> None:
    proc = subprocess.run(("ip", *args), check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class TunDevice:
    """A TUN device (IFF_TUN | IFF_NO_PI): packets written to it arrive at
    the kernel as if from the wire, packets the kernel routes out of it are
    read back.  After :meth:`configure`, packets the kernel sends to its own
    addresses (they go out of ``lo``) are read back too.

    Args:
        name: the device name (at most 15 bytes).

    Raises:
        SetupError: /dev/net/tun cannot be opened or the device not created.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(self.fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
        except OSError as exc:
            raise SetupError(f"creating TUN device {name!r}: {exc.strerror}") from None
        #: background packets read and discarded so far
        self.noise = 0
        self._lo: socket.socket | None = None

    def configure(self, addresses: Iterable[str], mtu: int | None) -> None:
        """Bring ``lo`` and the device up with these addresses.

        IPv4 addresses get their subnet broadcast (``brd +``); IPv6 ones skip
        duplicate address detection (``nodad``).  Default routes for both
        families point out of the device, so that replies to peers outside
        the subnets are sent too.

        Raises:
            SetupError: an ``ip`` command failed.
        """
        _ip("link", "set", "lo", "up")
        if mtu is not None:
            _ip("link", "set", self.name, "mtu", str(mtu))
        for text in addresses:
            iface = ipaddress.ip_interface(text)
            if iface.version == 4:
                _ip("addr", "add", str(iface), "brd", "+", "dev", self.name)
            else:
                _ip("-6", "addr", "add", str(iface), "dev", self.name, "nodad")
        _ip("link", "set", self.name, "up")
        _ip("route", "add", "default", "dev", self.name)
        _ip("-6", "route", "add", "default", "dev", self.name)
        # A reply to one of the host's own addresses is looped back through lo.
        self._lo = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_ALL))
        self._lo.bind(("lo", 0))
        self._lo.setblocking(False)

    def set_initrwnd(self, initrwnd: int) -> None:
        """Give every route out of the device (the on-link prefixes and the
        default routes of both families) the initrwnd metric:
        ``ip route change DST dev DEV ... initrwnd N``, keeping each route's
        protocol, scope, source and metric.

        Raises:
            SetupError: an ``ip`` command failed.
        """
        for family in ("-4", "-6"):
            proc = subprocess.run(("ip", "-j", family, "route", "show", "dev", self.name),
                                  check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SetupError(f"ip -j {family} route show dev {self.name}: {proc.stderr.strip()}")
            for route in json.loads(proc.stdout or "[]"):
                args = [family, "route", "change", route["dst"], "dev", self.name]
                for key, word in (("protocol", "proto"), ("scope", "scope"), ("prefsrc", "src"),
                                  ("metric", "metric")):
                    if key in route:
                        args += [word, str(route[key])]
                _ip(*args, "initrwnd", str(initrwnd))

    def write(self, packet: bytes) -> None:
        """Inject one IP packet."""
        os.write(self.fd, packet)

    def read_until(self, deadline: float) -> list[tuple[float, bytes]]:
        """Everything the kernel transmits until ``deadline`` (time.monotonic()),
        noise removed, as (monotonic time read, packet) pairs."""
        out: list[tuple[float, bytes]] = []
        while True:
            out.extend(self.read_ready())
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            select.select([self.fd] + ([self._lo] if self._lo else []), [], [], left)

    def read_ready(self) -> list[tuple[float, bytes]]:
        """The packets already queued, without waiting, noise removed, in the
        order they were read (the TUN device first, then ``lo``)."""
        out: list[tuple[float, bytes]] = []
        while True:
            try:
                packet = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            self._keep(out, packet)
        while self._lo is not None:
            try:
                packet, addr = self._lo.recvfrom(65536)
            except BlockingIOError:
                break
            if addr[2] == _PACKET_OUTGOING:  # each looped packet is also seen coming in
                self._keep(out, complete_checksum(packet))
        return out

    def _keep(self, out: list[tuple[float, bytes]], packet: bytes) -> None:
        if is_background_noise(packet):
            self.noise += 1
        else:
            out.append((time.monotonic(), packet))

    def close(self) -> None:
        """Close the device's file descriptor (the device disappears)."""
        if self._lo is not None:
            self._lo.close()
        os.close(self.fd)
