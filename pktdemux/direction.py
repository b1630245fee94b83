"""Which way a captured IP packet went, seen from the emulated host.

* ``"in"``: addressed to the host (one of its addresses, a broadcast of one
  of its subnets, 255.255.255.255, or a multicast group) and not sent by it:
  the kernel receives it.
* ``"out"``: sent by the host (its source is one of the host's addresses).
* ``"loop"``: sent by the host to itself (source and destination both the
  host's), as on a loopback capture: the host's output and also its input.
* ``"other"``: traffic between other machines.

127.0.0.0/8 counts as the host's whole (the ``lo`` route is a /8 local route).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IN = "in"
OUT = "out"
LOOP = "loop"
OTHER = "other"

_LIMITED_BROADCAST = b"\xff\xff\xff\xff"


class Directions:
    """Classifies packets by their addresses.

    Args:
        interfaces: the host's addresses with prefix length
            (``ipaddress.IPv4Interface`` / ``IPv6Interface``), e.g. from
            ``Kernel.interfaces[i].addresses``.
    """

    __slots__ = ("broadcast", "local")

    def __init__(self, interfaces: Iterable[ipaddress.IPv4Interface | ipaddress.IPv6Interface]) -> None:
        self.local: set[bytes] = set()
        self.broadcast: set[bytes] = {_LIMITED_BROADCAST}
        for iface in interfaces:
            self.local.add(iface.ip.packed)
            net = iface.network
            if net.version == 4 and net.prefixlen < 31:
                self.broadcast.add(net.broadcast_address.packed)

    @classmethod
    def of_kernel(cls, kernel) -> Directions:  # type: ignore[no-untyped-def]
        """The host addresses of every device of ``kernel`` (a Kernel)."""
        return cls(a for iface in kernel.interfaces for a in iface.addresses)

    def is_local(self, addr: bytes) -> bool:
        """True for one of the host's own addresses (4 or 16 bytes)."""
        return addr in self.local or (len(addr) == 4 and addr[0] == 127)

    def classify(self, ip: bytes) -> str:
        """``"in"``, ``"out"``, ``"loop"`` or ``"other"`` for an IP packet.

        A packet too short to hold both addresses, or of an unknown version,
        is ``"in"``: the kernel receives it and judges the header.
        """
        version = ip[0] >> 4 if ip else 0
        local = self.local
        if version == 4 and len(ip) >= 20:
            src, dst = ip[12:16], ip[16:20]
            if src in local or src[0] == 127:
                return LOOP if dst in local or dst[0] == 127 else OUT
            if dst in local or 224 <= dst[0] <= 239 or dst in self.broadcast:
                return IN
            return OTHER
        if version == 6 and len(ip) >= 40:
            src, dst = ip[8:24], ip[24:40]
            if src in local:
                return LOOP if dst in local else OUT
            if dst in local or dst[0] == 0xFF:
                return IN
            return OTHER
        return IN
