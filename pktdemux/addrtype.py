"""What an address is to this host, as bind() and connect() ask it.

Thin questions over :class:`~pktdemux.routing.Routing` (which owns the
host's address tables), phrased the way the socket calls need them.
Addresses are packed bytes: 4 for IPv4, 16 for IPv6.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .packet import RouteType

if TYPE_CHECKING:
    from .routing import Routing

LOOPBACK_DEVICE = "lo"
V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
V6_LOOPBACK = bytes(15) + b"\x01"


def is_v4_mapped(addr: bytes) -> bool:
    """``::ffff:a.b.c.d`` (RFC 4291 §2.5.5.2)."""
    return len(addr) == 16 and addr.startswith(V4_MAPPED_PREFIX)


def v4_mapped(addr4: bytes) -> bytes:
    """The v4-mapped IPv6 form of a 4-byte IPv4 address."""
    return V4_MAPPED_PREFIX + addr4


def ipv4_bindable(routing: Routing, addr: bytes) -> bool:
    """Whether an AF_INET socket may bind ``addr`` without ip_nonlocal_bind.

    0.0.0.0, a local address (all of 127/8), a broadcast or a multicast
    address; not the subnet's network address, not 0.0.0.0/8 (verified on
    Linux 6.18).  Source: net/ipv4/af_inet.c:inet_addr_valid_or_nonlocal
    over fib_frontend.c:inet_addr_type_dev_table; spec §7.1 step 2.
    """
    return not any(addr) or routing.classify(addr) is not None


def ipv6_bindable(routing: Routing, addr: bytes, device: str | None) -> bool:
    """Whether an AF_INET6 socket may bind native address ``addr`` without ip_nonlocal_bind.

    The address must be assigned to the host; a link-local or loopback one
    only counts on the socket's bound device when it has one.  Source:
    net/ipv6/addrconf.c:ipv6_chk_addr (strict=0), called by __inet6_bind.
    """
    owner = routing.local6.get(addr)
    if owner is None:
        return False
    scoped = (addr[0] == 0xFE and addr[1] & 0xC0 == 0x80) or addr == V6_LOOPBACK
    return not (scoped and device is not None and device != owner)


def is_broadcast_or_multicast(routing: Routing, addr4: bytes) -> bool:
    """An IPv4 destination a TCP connect() refuses (route flagged RTCF_BROADCAST/MULTICAST)."""
    return routing.classify(addr4) in (RouteType.BROADCAST, RouteType.MULTICAST)


def is_broadcast(routing: Routing, addr4: bytes) -> bool:
    """An IPv4 broadcast destination (a UDP connect() needs SO_BROADCAST for it)."""
    return routing.classify(addr4) is RouteType.BROADCAST


def connect_source(routing: Routing, dst: bytes, device: str) -> bytes | None:
    """The source address connect() takes for ``dst``, or None (ENETUNREACH).

    A v4-mapped ``dst`` gets a v4-mapped answer.  A loopback destination is
    reached through ``lo``; another of the host's own addresses through its
    own device, whose route prefers the subnet's primary address (``ip route
    get 10.0.0.3`` on a host with 10.0.0.1/24 and 10.0.0.3/24 says ``src
    10.0.0.1``); anything else through ``device`` (the socket's
    SO_BINDTODEVICE or the default device).  Source:
    net/ipv4/route.c:ip_route_output_key_hash_rcu (fib prefsrc) via
    :meth:`~pktdemux.routing.Routing.source_address`; spec §4.2.
    """
    if is_v4_mapped(dst):
        src4 = connect_source(routing, dst[12:], device)
        return None if src4 is None else v4_mapped(src4)
    if _is_loopback(dst):
        return routing.source_address(dst, LOOPBACK_DEVICE)
    device = (routing.local4 if len(dst) == 4 else routing.local6).get(dst, device)
    src = routing.source_address(dst, device)
    # a loopback source never leaves lo: no address of that family to reach dst
    return None if src is None or _is_loopback(src) else src


def _is_loopback(addr: bytes) -> bool:
    return addr[0] == 127 if len(addr) == 4 else addr == V6_LOOPBACK
