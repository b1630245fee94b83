"""Input-route classification and address questions (spec §1.1.1, §1.2)."""

from __future__ import annotations

import pytest
from ip_vectors import a, make_kernel

from pktdemux.dropreason import DropReason as R
from pktdemux.packet import RouteType as T


@pytest.fixture
def routing():
    return make_kernel().routing


CASES4 = [
    # id, src, dst, device, proto, expected route, expected reason
    ("unicast-local", "10.0.0.2", "10.0.0.1", "tun0", 17, T.LOCAL, None),
    ("subnet-broadcast", "10.0.0.2", "10.0.0.255", "tun0", 17, T.BROADCAST, None),
    ("limited-broadcast", "10.0.0.2", "255.255.255.255", "tun0", 17, T.BROADCAST, None),
    ("zero-to-zero-is-broadcast", "0.0.0.0", "0.0.0.0", "tun0", 17, T.BROADCAST, None),
    ("dhcp-discover", "0.0.0.0", "255.255.255.255", "tun0", 17, T.BROADCAST, None),
    ("all-hosts-joined", "10.0.0.2", "224.0.0.1", "tun0", 17, T.MULTICAST, None),
    ("unjoined-group", "10.0.0.2", "239.9.9.9", "tun0", 17, None, R.NOT_SPECIFIED),
    ("igmp-any-group", "10.0.0.2", "239.9.9.9", "tun0", 2, T.MULTICAST, None),
    ("multicast-source", "224.1.2.3", "10.0.0.1", "tun0", 17, None, R.IP_INVALID_SOURCE),
    ("limited-broadcast-source", "255.255.255.255", "10.0.0.1", "tun0", 17, None, R.IP_INVALID_SOURCE),
    ("zero-source", "0.0.0.0", "10.0.0.1", "tun0", 17, None, R.IP_INVALID_SOURCE),
    ("zeronet-destination", "10.0.0.2", "0.1.2.3", "tun0", 17, None, R.IP_INVALID_DEST),
    ("loopback-dst-off-lo", "10.0.0.2", "127.0.0.1", "tun0", 17, None, R.IP_LOCALNET),
    ("loopback-src-off-lo", "127.0.0.1", "10.0.0.1", "tun0", 17, None, R.IP_LOCALNET),
    ("loopback-on-lo", "127.0.0.1", "127.0.0.1", "lo", 17, T.LOCAL, None),
    ("all-127-is-local", "127.0.0.1", "127.1.2.3", "lo", 17, T.LOCAL, None),
    ("own-address-source", "10.0.0.1", "10.0.0.1", "tun0", 17, None, R.IP_LOCAL_SOURCE),
    ("own-source-on-lo-ok", "10.0.0.1", "10.0.0.1", "lo", 17, T.LOCAL, None),
    ("subnet-broadcast-source-accepted", "10.0.0.255", "10.0.0.1", "tun0", 17, T.LOCAL, None),
    ("on-link-not-local", "10.0.0.2", "10.0.0.99", "tun0", 17, None, R.IP_INADDRERRORS),
    ("network-address-not-broadcast", "10.0.0.2", "10.0.0.0", "tun0", 17, None, R.IP_INADDRERRORS),
    ("off-link", "10.0.0.2", "192.0.2.1", "tun0", 17, None, R.IP_INADDRERRORS),
]


@pytest.mark.parametrize("src,dst,device,proto,route,reason", [c[1:] for c in CASES4], ids=[c[0] for c in CASES4])
def test_classify4(routing, src, dst, device, proto, route, reason):
    got_route, got_reason, note = routing.classify4(a(src), a(dst), device, proto)
    assert (got_route, got_reason) == (route, reason)
    assert bool(note) == (route is None)


def test_route_localnet_accepts_loopback_off_lo(routing):
    assert routing.classify4(a("10.0.0.2"), a("127.0.0.1"), "tun0", 17, route_localnet=True)[0] is T.LOCAL
    # 127.0.0.1 is still an address of the host: as a source from outside it stays martian
    assert routing.classify4(a("127.0.0.1"), a("127.0.0.1"), "tun0", 17, route_localnet=True)[1] is R.IP_LOCAL_SOURCE


def test_accept_local_accepts_own_source(routing):
    assert routing.classify4(a("10.0.0.1"), a("10.0.0.1"), "tun0", 17, accept_local=True)[0] is T.LOCAL


def test_joined_group_is_accepted(routing):
    routing.join(a("239.1.1.1"))
    assert routing.classify4(a("10.0.0.2"), a("239.1.1.1"), "tun0", 17)[0] is T.MULTICAST


CASES6 = [
    ("local", "fd00::2", "fd00::1", "tun0", T.LOCAL, None),
    ("all-nodes", "fd00::2", "ff02::1", "tun0", T.MULTICAST, None),
    ("solicited-node", "fd00::2", "ff02::1:ff00:1", "tun0", T.MULTICAST, None),
    ("all-routers-not-joined", "fd00::2", "ff02::2", "tun0", None, R.NOT_SPECIFIED),
    ("on-link-not-local", "fd00::2", "fd00::99", "tun0", None, R.IP_INADDRERRORS),
    ("no-route", "fd00::2", "2001:db8::99", "tun0", None, R.IP_INNOROUTES),
    ("loopback-on-lo", "::1", "::1", "lo", T.LOCAL, None),
    ("own-link-local-on-its-device", "fe80::2", "fe80::1", "tun0", T.LOCAL, None),
    ("own-link-local-on-another-device", "fe80::2", "fe80::1", "tun1", None, R.IP_INADDRERRORS),
    # the host's own packet on lo keeps its output route (ip6_rcv_finish)
    ("own-link-local-over-lo", "fe80::1", "fe80::1", "lo", T.LOCAL, None),
]


@pytest.mark.parametrize("src,dst,device,route,reason", [c[1:] for c in CASES6], ids=[c[0] for c in CASES6])
def test_classify6(routing, src, dst, device, route, reason):
    routing = _with_link_local(routing)
    assert routing.classify6(a(src), a(dst), device)[:2] == (route, reason)


def _with_link_local(routing):
    """The test host's routing plus fe80::1/64 on tun0 and a second device tun1."""
    import ipaddress

    from pktdemux.kernel import Interface
    from pktdemux.routing import Routing

    ifaces = [Interface(i.name, list(i.addresses), i.mtu) for i in routing.interfaces]
    next(i for i in ifaces if i.name == "tun0").addresses.append(ipaddress.IPv6Interface("fe80::1/64"))
    ifaces.append(Interface("tun1", [ipaddress.IPv6Interface("fd01::1/64")]))
    return Routing(ifaces)


def test_default_route_turns_no_route_into_forwarding_drop(routing):
    routing.has_default_route6 = True
    assert routing.classify6(a("fd00::2"), a("2001:db8::99"), "tun0")[1] is R.IP_INADDRERRORS


@pytest.mark.parametrize("addr,kind", [
    ("10.0.0.1", T.LOCAL), ("127.9.9.9", T.LOCAL), ("10.0.0.255", T.BROADCAST),
    ("255.255.255.255", T.BROADCAST), ("239.1.2.3", T.MULTICAST), ("10.0.0.2", None),
    ("fd00::1", T.LOCAL), ("ff02::1", T.MULTICAST), ("fd00::2", None),
], ids=str)
def test_classify_address_type(routing, addr, kind):
    assert routing.classify(a(addr)) is kind


@pytest.mark.parametrize("packet_dst,device", [
    ("127.0.0.1", "lo"), ("10.0.0.1", "tun0"), ("::1", "lo"), ("fd00::1", "tun0"),
], ids=str)
def test_ingress_device(routing, packet_dst, device):
    from ip_vectors import udp4, udp6
    packet = udp4("10.0.0.2", packet_dst, 1, 2) if "." in packet_dst else udp6("fd00::2", packet_dst, 1, 2)
    assert routing.ingress_device(packet) == device


def test_mtu(routing):
    assert (routing.mtu("tun0"), routing.mtu("lo")) == (1500, 65536)


@pytest.mark.parametrize("dst,device,source", [
    ("10.0.0.7", "tun0", "10.0.0.1"),
    ("fd00::7", "tun0", "fd00::1"),
    ("127.0.0.1", "lo", "127.0.0.1"),
    # RFC 6724 rule 1: a destination that is one of the host's addresses is its own source,
    # whatever device the route names (ipv6_dev_get_saddr)
    ("fd00::1", "lo", "fd00::1"),
    ("fd01::1", "tun0", "fd01::1"),
    ("fe80::1", "lo", "fe80::1"),
    ("::1", "tun0", "::1"),
], ids=str)
def test_source_address(routing, dst, device, source):
    routing = _with_link_local(routing)
    assert routing.source_address(a(dst), device) == a(source)


def test_output_device(routing):
    assert routing.output_device(a("10.0.0.1"), "tun0") == "lo"
    assert routing.output_device(a("10.0.0.9"), "lo") == "tun0"
    assert routing.output_device(a("192.0.2.1"), "tun0") == "tun0"


def test_noarp_device_joins_no_solicited_node_group(routing):
    """Observed on 6.18: an echo to ff02::1:ff00:1 on TUN (IFF_NOARP) gets no answer."""
    routing.set_noarp("tun0")
    assert routing.classify6(a("fd00::2"), a("ff02::1:ff00:1"), "tun0")[:2] == (None, R.NOT_SPECIFIED)
    assert routing.classify6(a("fd00::2"), a("ff02::1"), "tun0")[0] is T.MULTICAST
