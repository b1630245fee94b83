"""The host's addresses and the input-route decision for received packets.

Sans I/O: built once from the :class:`~pktdemux.kernel.Interface` list, then
answers per-packet questions with set and dict lookups on packed addresses
(4 or 16 bytes, network order).

Sources: net/ipv4/route.c:ip_route_input_rcu / ip_route_input_slow (spec
§1.1.1), net/ipv4/fib_frontend.c:fib_validate_source, net/ipv4/igmp.c:
ip_check_mc_rcu, net/ipv6/ip6_input.c:ip6_rcv_core / ip6_mc_input,
net/ipv6/addrconf.c (groups every IPv6 device joins), RFC 6724 (source
address selection).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .dropreason import DropReason
from .packet import RouteType

if TYPE_CHECKING:
    from .kernel import Interface

LOOPBACK_DEVICE = "lo"

V4_ANY = bytes(4)
V4_LIMITED_BROADCAST = b"\xff\xff\xff\xff"
V4_ALL_HOSTS = bytes((224, 0, 0, 1))
V6_LOOPBACK = bytes(15) + b"\x01"
V6_ANY = bytes(16)
#: ff01::1 (interface-local) and ff02::1 (link-local) all-nodes groups,
#: joined by every IPv6 device (addrconf.c:ipv6_add_dev)
V6_ALL_NODES = (b"\xff\x01" + bytes(13) + b"\x01", b"\xff\x02" + bytes(13) + b"\x01")
_SOLICITED_PREFIX = b"\xff\x02" + bytes(9) + b"\x01\xff"

#: ``classify4``/``classify6`` result: (route, reason, note).  ``route`` is
#: None exactly when the packet is dropped for ``reason``.
Route = tuple["RouteType | None", "DropReason | None", str]


def solicited_node(addr: bytes) -> bytes:
    """The solicited-node multicast group ff02::1:ffXX:XXXX of an IPv6 address (RFC 4291 §2.7.1)."""
    return _SOLICITED_PREFIX + addr[13:]


def _prefix_match(addr: bytes, net: bytes, plen: int) -> bool:
    full, rest = divmod(plen, 8)
    if addr[:full] != net[:full]:
        return False
    if rest == 0:
        return True
    mask = (0xFF << (8 - rest)) & 0xFF
    return (addr[full] & mask) == (net[full] & mask)


class Routing:
    """Address tables of one host and the kernel's input-route decision.

    Args:
        interfaces: the host's devices with their addresses and MTUs.

    Attributes:
        local4, local6: own unicast address -> device name.  IPv4 addresses
            are host-wide (a packet to any of them is accepted on any device,
            the "weak host" model of the local FIB table); IPv6 link-local
            addresses only count on their own device.
        broadcast4: subnet broadcast address -> device (from the prefixes,
            /31 and /32 have none; fib_add_ifaddr).
        joined_groups: multicast groups (IPv4 or IPv6, packed) that sockets of
            the host joined; a host file may fill it.  224.0.0.1, ff02::1 and
            the solicited-node groups of the host's addresses are always joined.
        has_default_route6: whether an IPv6 default route exists; without one
            an IPv6 packet to an address off every prefix gets ICMPv6 1/0
            (ip6_pkt_discard), as in a fresh network namespace.
    """

    def __init__(self, interfaces: Iterable[Interface]) -> None:
        self.interfaces = list(interfaces)
        self.devices = {i.name: i for i in self.interfaces}
        self.local4: dict[bytes, str] = {}
        self.local6: dict[bytes, str] = {}
        self.broadcast4: dict[bytes, str] = {}
        #: (network, prefix length, device, own address), longest prefix first
        self.prefixes4: list[tuple[bytes, int, str, bytes]] = []
        self.prefixes6: list[tuple[bytes, int, str, bytes]] = []
        self.device_groups6: dict[str, set[bytes]] = {}
        self.joined_groups: set[bytes] = set()
        self.has_default_route6 = False
        for iface in self.interfaces:
            groups = self.device_groups6.setdefault(iface.name, set(V6_ALL_NODES))
            for addr in iface.addresses:
                self._add_address(iface.name, addr, groups)
        self.set_noarp(LOOPBACK_DEVICE)
        self.prefixes4.sort(key=lambda p: -p[1])
        self.prefixes6.sort(key=lambda p: -p[1])

    def _add_address(self, device: str, addr: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                     groups6: set[bytes]) -> None:
        packed = addr.ip.packed
        net = addr.network
        if addr.version == 4:
            self.local4.setdefault(packed, device)
            self.prefixes4.append((net.network_address.packed, net.prefixlen, device, packed))
            if net.prefixlen < 31:
                self.broadcast4.setdefault(net.broadcast_address.packed, device)
        else:
            self.local6.setdefault(packed, device)
            self.prefixes6.append((net.network_address.packed, net.prefixlen, device, packed))
            groups6.add(solicited_node(packed))

    # -- address questions -------------------------------------------------

    def is_local(self, addr: bytes) -> bool:
        """Whether ``addr`` is one of the host's own unicast addresses (127/8 included)."""
        if len(addr) == 4:
            return addr in self.local4 or addr[0] == 127
        return addr in self.local6

    def classify(self, dst: bytes) -> RouteType | None:
        """The address type of ``dst`` for this host, ignoring the ingress device.

        LOCAL for an own address (and all of 127/8), BROADCAST for
        255.255.255.255 and subnet broadcasts, MULTICAST for any multicast
        address, None for everything else (inet_addr_type / ipv6_addr_type).
        """
        if len(dst) == 4:
            if dst in self.local4 or dst[0] == 127:
                return RouteType.LOCAL
            if dst == V4_LIMITED_BROADCAST or dst in self.broadcast4:
                return RouteType.BROADCAST
            if 224 <= dst[0] <= 239:
                return RouteType.MULTICAST
            return None
        if dst in self.local6:
            return RouteType.LOCAL
        if dst[0] == 0xFF:
            return RouteType.MULTICAST
        return None

    def is_joined(self, group: bytes, device: str) -> bool:
        """Whether the host listens to multicast ``group`` on ``device``."""
        if group in self.joined_groups:
            return True
        if len(group) == 4:
            return group == V4_ALL_HOSTS
        return group in self.device_groups6.get(device, ())

    def set_noarp(self, device: str) -> None:
        """Mark ``device`` IFF_NOARP (a TUN device): it joins no solicited-node
        groups (addrconf.c:addrconf_join_solict), so echo requests to them go
        unanswered there.  ``lo`` is always treated so."""
        groups = self.device_groups6.get(device)
        if groups is not None:
            groups.difference_update([g for g in groups if g.startswith(_SOLICITED_PREFIX)])

    def join(self, group: bytes) -> None:
        """Record that a socket of the host joined ``group`` (IP_ADD_MEMBERSHIP)."""
        self.joined_groups.add(group)

    # -- devices ---------------------------------------------------------

    def ingress_device(self, packet: bytes) -> str:
        """The device a packet without link-layer information arrived on.

        ``lo`` for destinations in 127/8 and ``::1``; the first non-loopback
        device otherwise (``lo`` when the host has no other device).
        """
        version = packet[0] >> 4 if packet else 0
        if version == 4 and len(packet) >= 20 and packet[16] == 127:
            return LOOPBACK_DEVICE
        if version == 6 and len(packet) >= 40 and packet[24:40] == V6_LOOPBACK:
            return LOOPBACK_DEVICE
        for iface in self.interfaces:
            if iface.name != LOOPBACK_DEVICE:
                return iface.name
        return LOOPBACK_DEVICE

    def mtu(self, device: str) -> int:
        """The MTU of ``device`` in bytes (1500 when the device is unknown)."""
        iface = self.devices.get(device)
        return iface.mtu if iface is not None else 1500

    def initrwnd(self, device: str) -> int:
        """The initrwnd metric of the routes out of ``device`` (0: not set,
        also for an unknown device)."""
        iface = self.devices.get(device)
        return iface.initrwnd if iface is not None else 0

    def output_device(self, dst: bytes, ingress: str) -> str:
        """The device a reply to ``dst`` leaves by.

        ``lo`` when ``dst`` is one of the host's addresses; else the device
        with the longest matching on-link prefix; else ``ingress`` (the
        default route is assumed to point back where the packet came from).
        """
        if self.is_local(dst):
            return LOOPBACK_DEVICE
        prefixes = self.prefixes4 if len(dst) == 4 else self.prefixes6
        for net, plen, device, _own in prefixes:
            if _prefix_match(dst, net, plen):
                return device
        return ingress

    def on_link(self, dst: bytes) -> bool:
        """Whether ``dst`` lies in one of the host's on-link prefixes (or fe80::/10)."""
        if len(dst) == 16 and dst[0] == 0xFE and dst[1] & 0xC0 == 0x80:
            return True
        prefixes = self.prefixes4 if len(dst) == 4 else self.prefixes6
        return any(_prefix_match(dst, net, plen) for net, plen, _d, _o in prefixes)

    # -- source address selection ----------------------------------------

    def source_address(self, dst: bytes, device: str) -> bytes | None:
        """The source the kernel picks for a packet it sends to ``dst`` via ``device``.

        IPv4 (inet_select_addr): the address of ``device`` whose subnet holds
        ``dst``, else the first address of ``device``, else any host address.
        IPv6 (RFC 6724 §5, rules 1, 2 and 8 only): ``dst`` itself when it is
        one of the host's addresses (rule 1; ipv6_dev_get_saddr takes the
        candidates of every device for a global destination, and a local
        link-local destination's route names its own device); else an
        address of the same scope (link-local for fe80::/10 and link-scope
        multicast) on ``device``, preferring the longest common prefix with
        ``dst``.  None when the host has no address of that family.
        """
        if len(dst) == 4:
            return self._source4(dst, device)
        return self._source6(dst, device)

    def _source4(self, dst: bytes, device: str) -> bytes | None:
        first = None
        for net, plen, dev, own in self.prefixes4:
            if dev != device:
                continue
            if _prefix_match(dst, net, plen):
                return own
            if first is None:
                first = own
        if first is not None:
            return first
        return next(iter(self.local4), None)

    def _source6(self, dst: bytes, device: str) -> bytes | None:
        if dst in self.local6:
            return dst
        want_link = (dst[0] == 0xFE and dst[1] & 0xC0 == 0x80) or (dst[0] == 0xFF and dst[1] & 0x0F <= 2)
        best, best_len = None, -1
        for _net, _plen, dev, own in self.prefixes6:
            own_link = own[0] == 0xFE and own[1] & 0xC0 == 0x80
            if dev != device or own_link != want_link:
                continue
            common = _common_prefix_len(own, dst)
            if common > best_len:
                best, best_len = own, common
        if best is None:
            # no address of the right scope on the device: any non-loopback one
            best = next((a for a, d in self.local6.items() if d == device), None)
            best = best or next((a for a in self.local6 if a != V6_LOOPBACK), None)
        return best

    # -- input route -----------------------------------------------------

    def classify4(self, src: bytes, dst: bytes, device: str, proto: int, *,
                  route_localnet: bool = False, accept_local: bool = False) -> Route:
        """The input route of an IPv4 packet, in the kernel's check order (spec §1.1.1).

        Args:
            src, dst: packed IPv4 addresses from the header.
            device: ingress device name.
            proto: IP protocol (IGMP is accepted for any multicast group).
            route_localnet: net.ipv4.conf.all.route_localnet.
            accept_local: net.ipv4.conf.all.accept_local.

        Returns:
            ``(route, None, "")`` when the packet is for this host, else
            ``(None, reason, note)``.  Reasons follow net/ipv4/route.c (6.13+):
            IP_INVALID_SOURCE, IP_INVALID_DEST, IP_LOCALNET, IP_LOCAL_SOURCE,
            IP_INADDRERRORS (ip_error with forwarding off), NOT_SPECIFIED
            (multicast group not joined, ip_route_input_rcu).
        """
        d0 = dst[0]
        s0 = src[0]
        if 224 <= d0 <= 239:
            return self._multicast4(src, dst, device, proto, route_localnet, accept_local)
        if 224 <= s0 <= 239 or src == V4_LIMITED_BROADCAST:
            return None, DropReason.IP_INVALID_SOURCE, "martian source (multicast or limited broadcast)"
        if dst == V4_LIMITED_BROADCAST or (src == V4_ANY and dst == V4_ANY):
            return self._broadcast4(src, device, accept_local)
        if s0 == 0:
            return None, DropReason.IP_INVALID_SOURCE, "martian source in 0.0.0.0/8"
        if d0 == 0:
            return None, DropReason.IP_INVALID_DEST, "martian destination in 0.0.0.0/8"
        if device != LOOPBACK_DEVICE and not route_localnet:
            if d0 == 127:
                return None, DropReason.IP_LOCALNET, "loopback destination on a non-loopback device"
            if s0 == 127:
                return None, DropReason.IP_LOCALNET, "loopback source on a non-loopback device"
        if dst in self.broadcast4:
            return self._broadcast4(src, device, accept_local)
        if dst in self.local4 or d0 == 127:
            # the host's own packets on lo carry their output route and skip
            # fib_validate_source; from any other device an own source is martian
            if not accept_local and device != LOOPBACK_DEVICE and src in self.local4:
                return None, DropReason.IP_LOCAL_SOURCE, "source is one of the host's own addresses"
            return RouteType.LOCAL, None, ""
        return None, DropReason.IP_INADDRERRORS, "destination is not a local address and forwarding is off"

    def _broadcast4(self, src: bytes, device: str, accept_local: bool) -> Route:
        # brd_input: fib_validate_source only for a non-zero source
        if src != V4_ANY and not accept_local and device != LOOPBACK_DEVICE and src in self.local4:
            return None, DropReason.IP_LOCAL_SOURCE, "source is one of the host's own addresses"
        return RouteType.BROADCAST, None, ""

    def _multicast4(self, src: bytes, dst: bytes, device: str, proto: int,
                    route_localnet: bool, accept_local: bool) -> Route:
        # ip_check_mc_rcu: IGMP is accepted for any group
        if proto != 2 and not self.is_joined(dst, device):
            return None, DropReason.NOT_SPECIFIED, "multicast group not joined on this device"
        # ip_mc_validate_source
        if 224 <= src[0] <= 239 or src == V4_LIMITED_BROADCAST:
            return None, DropReason.IP_INVALID_SOURCE, "martian source (multicast or limited broadcast)"
        if src[0] == 127 and device != LOOPBACK_DEVICE and not route_localnet:
            return None, DropReason.IP_LOCALNET, "loopback source on a non-loopback device"
        if src[0] == 0:
            # 0.0.0.0/8 source only for 224.0.0.0/24 groups or IGMP
            if not (dst[:3] == b"\xe0\x00\x00" or proto == 2):
                return None, DropReason.IP_INVALID_SOURCE, "martian source in 0.0.0.0/8"
        elif not accept_local and device != LOOPBACK_DEVICE and src in self.local4:
            return None, DropReason.IP_LOCAL_SOURCE, "source is one of the host's own addresses"
        return RouteType.MULTICAST, None, ""

    def classify6(self, src: bytes, dst: bytes, device: str) -> Route:
        """The input route of an IPv6 packet whose header passed ip6_rcv_core.

        LOCAL for an own address (link-local ones only on their device or
        ``lo``),
        MULTICAST for a group joined on ``device``; otherwise dropped:
        NOT_SPECIFIED for an unjoined group (ip6_mc_input), IP_INADDRERRORS
        for an on-link or routed address with forwarding off (ip6_forward),
        IP_INNOROUTES when no route covers ``dst`` (ip6_pkt_discard, which
        also sends ICMPv6 1/0: the caller does that).
        """
        if dst[0] == 0xFF:
            if self.is_joined(dst, device):
                return RouteType.MULTICAST, None, ""
            return None, DropReason.NOT_SPECIFIED, "multicast group not joined on this device"
        owner = self.local6.get(dst)
        if owner is not None:
            # the host's own packets on lo carry their output route (ip6_rcv_finish
            # skips the input lookup when the skb has a dst): no device check
            if dst[0] == 0xFE and dst[1] & 0xC0 == 0x80 and owner != device and device != LOOPBACK_DEVICE:
                return None, DropReason.IP_INADDRERRORS, "link-local address of another device"
            return RouteType.LOCAL, None, ""
        if dst == V6_ANY:
            return None, DropReason.IP_INADDRERRORS, "unspecified destination address"
        if self.has_default_route6 or self.on_link(dst):
            return None, DropReason.IP_INADDRERRORS, "destination is not a local address and forwarding is off"
        return None, DropReason.IP_INNOROUTES, "no route to the destination"


def _common_prefix_len(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) * 8 - x.bit_length()
