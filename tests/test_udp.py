"""UDP receive: validation, unicast lookup, fan-out, port unreachable
(spec §4), with sockets registered directly in the UdpTable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ip_vectors import a, load_vectors, make_kernel, mask_random, udp4, udp6

from pktdemux.dropreason import DropReason as R
from pktdemux.sockets import Proto, Socket, TcpState

VECTORS = load_vectors()

UDP_VECTORS = {
    "U01": R.NO_SOCKET, "U02": R.NO_SOCKET, "U03": R.NO_SOCKET, "U04": R.NO_SOCKET,
    "U05": R.UDP_CSUM, "U06": R.NOT_SPECIFIED, "U07": R.NOT_SPECIFIED, "U08": R.PKT_TOO_SMALL,
    "U09": R.PKT_TOO_SMALL, "U10": R.FRAG_PENDING,
    "V03": R.NO_SOCKET, "V04": R.NO_SOCKET, "V05": R.NO_SOCKET,
}


@pytest.mark.parametrize("vid", sorted(UDP_VECTORS))
def test_vector(vid):
    vector = VECTORS[vid]
    v = make_kernel().receive(bytes.fromhex(vector["incoming_hex"]), 1.0)
    assert (v.delivered, v.reason) == (False, UDP_VECTORS[vid])
    expected = [mask_random(bytes.fromhex(r["hex"])) for r in vector["replies"]]
    assert [mask_random(r) for r in v.replies] == expected


def udp_socket(kernel, addr: str, port: int, *, family: int | None = None, peer: tuple[str, int] | None = None,
               **options) -> Socket:
    family = family or (6 if ":" in addr else 4)
    sock = Socket(Proto.UDP, family, a(addr), port, inbox=[], **options)
    if peer is not None:
        sock.remote_addr, sock.remote_port = a(peer[0]), peer[1]
        sock.state = TcpState.ESTABLISHED
    kernel.udp.insert(sock)
    kernel.sockets.append(sock)
    return sock


def test_delivery_counts_and_inbox():
    kernel = make_kernel()
    sock = udp_socket(kernel, "0.0.0.0", 53)
    v = kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 53, b"hello"), 1.0)
    assert (v.delivered, v.sockets, v.replies) == (True, (sock,), ())
    assert (sock.rx_packets, sock.rx_bytes, sock.inbox) == (1, 5, [b"hello"])


def test_trimmed_to_udp_length():
    """UDP length < IP payload: the datagram is trimmed; the ICMP quote stops
    at the UDP length while the quoted IP header keeps its total length."""
    kernel = make_kernel()
    packet = bytearray(udp4("10.0.0.2", "10.0.0.1", 5000, 999, b"abcdefgh"))
    packet[24:26] = (10).to_bytes(2, "big")  # ulen 10: two payload bytes
    packet[26:28] = b"\0\0"  # checksum off
    reply = kernel.receive(bytes(packet), 1.0).replies[0]
    quote = reply[28:]
    assert len(quote) == 30 and quote[2:4] == packet[2:4]
    sock = udp_socket(kernel, "0.0.0.0", 999)
    kernel.receive(bytes(packet), 2.0)
    assert sock.inbox == [b"ab"]


# -- S27-S31: unicast lookup ---------------------------------------------------

def test_S27_connected_socket_wins_for_its_peer():
    kernel = make_kernel()
    wild = udp_socket(kernel, "0.0.0.0", 200)
    conn = udp_socket(kernel, "10.0.0.1", 200, peer=("10.0.0.2", 5000))
    for sport, expected in [(5000, conn), (5001, wild)]:
        v = kernel.receive(udp4("10.0.0.2", "10.0.0.1", sport, 200), 1.0)
        assert v.sockets == (expected,), sport


def two_address_kernel():
    import ipaddress

    from pktdemux import Interface, Kernel
    return Kernel([Interface("tun0", [ipaddress.IPv4Interface("10.0.0.1/24"),
                                      ipaddress.IPv4Interface("10.0.0.3/24")])])


def test_S27_connected_socket_pinned_to_its_address():
    kernel = two_address_kernel()
    wild = udp_socket(kernel, "0.0.0.0", 200)
    udp_socket(kernel, "10.0.0.1", 200, peer=("10.0.0.2", 5000))
    v = kernel.receive(udp4("10.0.0.2", "10.0.0.3", 5000, 200), 1.0)
    assert v.sockets == (wild,)


@pytest.mark.parametrize("dst,winner", [("10.0.0.1", "specific"), ("10.0.0.3", "wildcard")], ids=str)
def test_S28_exact_address_before_wildcard(dst, winner):
    kernel = two_address_kernel()
    socks = {"wildcard": udp_socket(kernel, "0.0.0.0", 201), "specific": udp_socket(kernel, "10.0.0.1", 201)}
    assert kernel.receive(udp4("10.0.0.2", dst, 5000, 201), 1.0).sockets == (socks[winner],)


def test_S29_last_bound_wins_a_tie():
    kernel = make_kernel()
    socks = [udp_socket(kernel, "0.0.0.0", 202, reuseaddr=True) for _ in range(3)]
    assert kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 202), 1.0).sockets == (socks[2],)


def test_S30_af_inet_beats_dual_stack():
    kernel = make_kernel()
    v4 = udp_socket(kernel, "0.0.0.0", 203)
    udp_socket(kernel, "::", 203)
    assert kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 203), 1.0).sockets == (v4,)


def test_dual_stack_receives_ipv4():
    kernel = make_kernel()
    v6 = udp_socket(kernel, "::", 204)
    assert kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 204), 1.0).sockets == (v6,)


def test_S31_v6only_does_not_receive_ipv4():
    kernel = make_kernel()
    udp_socket(kernel, "::", 205, v6only=True)
    v = kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 205), 1.0)
    assert v.reason is R.NO_SOCKET and v.replies[0][20:22] == b"\x03\x03"


def test_device_bound_elsewhere_does_not_receive():
    kernel = make_kernel()
    udp_socket(kernel, "0.0.0.0", 206, device="lo")
    v = kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 206), 1.0)
    assert v.reason is R.NO_SOCKET and len(v.replies) == 1


# compute_score (spec §4.2): the socket under test is bound first, then a plain
# AF_INET 0.0.0.0:300 socket (score 2).  Head insertion makes the later one win a
# tie, so the first socket wins only with a strictly higher score, or when it sits
# in the exact-address bucket that is searched first.
SCORE4 = [
    ("af-inet-tie-goes-to-last-bound", dict(addr="0.0.0.0"), "ref"),
    ("dual-stack-scores-1", dict(addr="::"), "ref"),
    ("connected-scores-10", dict(addr="0.0.0.0", peer=("10.0.0.2", 5000)), "sock"),
    ("device-scores-6", dict(addr="0.0.0.0", device="tun0"), "sock"),
    ("wrong-peer-port", dict(addr="0.0.0.0", peer=("10.0.0.2", 5001)), "ref"),
    ("wrong-peer-address", dict(addr="0.0.0.0", peer=("10.0.0.9", 5000)), "ref"),
    ("wrong-device", dict(addr="0.0.0.0", device="lo"), "ref"),
    ("v6only", dict(addr="::", v6only=True), "ref"),
    ("native-v6", dict(addr="fd00::1"), "ref"),
    ("v4-mapped-exact-bucket-first", dict(addr="::ffff:10.0.0.1"), "sock"),
    ("exact-address-bucket-first", dict(addr="10.0.0.1"), "sock"),
]


@pytest.mark.parametrize("spec,winner", [c[1:] for c in SCORE4], ids=[c[0] for c in SCORE4])
def test_unicast_score(spec, winner):
    kernel = make_kernel()
    spec = dict(spec)
    sock = udp_socket(kernel, spec.pop("addr"), 300, **spec)
    ref = udp_socket(kernel, "0.0.0.0", 300)
    got = kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 300), 1.0).sockets
    assert got == ({"sock": sock, "ref": ref}[winner],)


def test_S35_reuseport_group_is_sticky_and_spread():
    kernel = make_kernel()
    group = [udp_socket(kernel, "0.0.0.0", 212, reuseport=True) for _ in range(3)]
    first = [kernel.receive(udp4("10.0.0.2", "10.0.0.1", 20000 + i, 212), 1.0).sockets[0] for i in range(300)]
    again = [kernel.receive(udp4("10.0.0.2", "10.0.0.1", 20000 + i, 212), 2.0).sockets[0] for i in range(300)]
    assert first == again
    assert {id(s) for s in first} == {id(s) for s in group}
    assert min(first.count(s) for s in group) > 50


def test_reuseport_group_with_connected_member_falls_back_to_scoring():
    kernel = make_kernel()
    plain = udp_socket(kernel, "10.0.0.1", 213, reuseport=True)
    conn = udp_socket(kernel, "10.0.0.1", 213, reuseport=True, peer=("10.0.0.2", 5000))
    assert kernel.udp.group_of(conn) is kernel.udp.group_of(plain)
    assert kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 213), 1.0).sockets == (conn,)
    assert kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5001, 213), 1.0).sockets == (plain,)


def test_remove_and_rehash():
    kernel = make_kernel()
    old = udp_socket(kernel, "0.0.0.0", 214)
    new = udp_socket(kernel, "0.0.0.0", 214)
    kernel.udp.remove(new)
    assert kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 214), 1.0).sockets == (old,)
    old.local_addr = a("10.0.0.1")  # connect() pinned the address
    kernel.udp.rehash(old)
    assert kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 214), 1.0).sockets == (old,)
    assert len(kernel.udp) == 1 and old in kernel.udp


# -- S32-S35: broadcast and multicast fan-out ------------------------------------

@pytest.fixture
def fanout():
    kernel = make_kernel()
    s = {
        "wild1": udp_socket(kernel, "0.0.0.0", 210),
        "wild2": udp_socket(kernel, "0.0.0.0", 210),
        "addr": udp_socket(kernel, "10.0.0.1", 210),
        "bcast": udp_socket(kernel, "10.0.0.255", 210),
        "conn-5000": udp_socket(kernel, "10.0.0.1", 210, peer=("10.0.0.2", 5000)),
        "conn-5009": udp_socket(kernel, "10.0.0.1", 210, peer=("10.0.0.2", 5009)),
    }
    return kernel, s


@pytest.mark.parametrize("dst,receivers", [
    ("10.0.0.255", {"wild1", "wild2", "bcast"}),      # S32
    ("255.255.255.255", {"wild1", "wild2"}),         # S33
], ids=["S32-subnet", "S33-limited"])
def test_broadcast_fanout(fanout, dst, receivers):
    kernel, s = fanout
    v = kernel.receive(udp4("10.0.0.2", dst, 5000, 210), 1.0)
    assert v.delivered and v.replies == ()
    assert {n for n, sock in s.items() if sock in v.sockets} == receivers
    assert len(v.sockets) == len(receivers)


def test_fanout_delivery_order_gives_first_match_last(fanout):
    kernel, s = fanout
    v = kernel.receive(udp4("10.0.0.2", "255.255.255.255", 5000, 210), 1.0)
    assert v.sockets == (s["wild1"], s["wild2"])  # chain: wild2 (head) then wild1; head delivered last


def test_S34_multicast_all(monkeypatch):
    kernel = make_kernel()
    group = a("239.1.1.1")
    joined = udp_socket(kernel, "0.0.0.0", 211)
    joined.mc_groups.add(group)
    kernel.routing.join(group)
    unjoined = udp_socket(kernel, "0.0.0.0", 211)
    no_all = udp_socket(kernel, "0.0.0.0", 211, multicast_all=False)
    v = kernel.receive(udp4("10.0.0.2", "239.1.1.1", 5000, 211), 1.0)
    assert set(v.sockets) == {joined, unjoined} and no_all not in v.sockets
    v = kernel.receive(udp4("10.0.0.2", "239.9.9.9", 5000, 211), 1.0)
    assert (v.delivered, v.replies) == (False, ())


def test_S35_reuseport_group_gets_a_copy_each():
    kernel = make_kernel()
    group = [udp_socket(kernel, "0.0.0.0", 212, reuseport=True) for _ in range(3)]
    v = kernel.receive(udp4("10.0.0.2", "10.0.0.255", 5000, 212), 1.0)
    assert set(v.sockets) == set(group) and len(v.sockets) == 3


def test_broadcast_nobody_no_icmp():
    v = make_kernel().receive(udp4("10.0.0.2", "10.0.0.255", 5000, 999), 1.0)
    assert (v.delivered, v.reason, v.replies) == (False, R.NOT_SPECIFIED, ())


def test_ipv6_multicast_fanout():
    kernel = make_kernel()
    sock = udp_socket(kernel, "::", 521)
    v4only = udp_socket(kernel, "0.0.0.0", 521)
    v = kernel.receive(udp6("fd00::2", "ff02::1", 5000, 521), 1.0)
    assert v.sockets == (sock,) and v4only.rx_packets == 0


# -- S36, S37: checksums with a socket ------------------------------------------

def test_S36_bad_checksum_with_socket_is_discarded():
    kernel = make_kernel()
    sock = udp_socket(kernel, "0.0.0.0", 700)
    v = kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 700, csum=0x1111), 1.0)
    assert (v.delivered, v.reason, v.replies, sock.rx_packets) == (False, R.UDP_CSUM, (), 0)
    v = kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 700, csum=0), 1.0)
    assert v.sockets == (sock,) and sock.inbox == [b"x"]


def test_S37_ipv6_zero_checksum_with_socket_is_dropped():
    kernel = make_kernel()
    sock = udp_socket(kernel, "::", 998)
    v = kernel.receive(udp6("fd00::2", "fd00::1", 5000, 998, csum=0), 1.0)
    assert (v.delivered, v.reason, v.replies, sock.rx_packets) == (False, R.UDP_CSUM, (), 0)
    sock.no_check6_rx = True
    assert kernel.receive(udp6("fd00::2", "fd00::1", 5000, 998, csum=0), 1.0).sockets == (sock,)


def test_ipv6_unicast_lookup_exact_before_wildcard():
    kernel = make_kernel()
    wild = udp_socket(kernel, "::", 530)
    exact = udp_socket(kernel, "fd00::1", 530)
    udp_socket(kernel, "0.0.0.0", 530)
    assert kernel.receive(udp6("fd00::2", "fd00::1", 5000, 530), 1.0).sockets == (exact,)
    kernel.udp.remove(exact)
    assert kernel.receive(udp6("fd00::2", "fd00::1", 5000, 530), 1.0).sockets == (wild,)


# -- invariants -----------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.sampled_from([4, 6]))
def test_arbitrary_udp_payload_never_raises(segment, version):
    from pktdemux.wire import build_ipv4, build_ipv6
    kernel = make_kernel()
    udp_socket(kernel, "::", 53)
    if version == 4:
        packet = build_ipv4(src=a("10.0.0.2"), dst=a("10.0.0.1"), proto=17, payload=segment)
    else:
        packet = build_ipv6(src=a("fd00::2"), dst=a("fd00::1"), next_header=17, payload=segment)
    v = kernel.receive(packet, 1.0)
    assert v.delivered == (v.reason is None)
    assert len(v.replies) <= 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["0.0.0.0", "10.0.0.1", "::"]), st.booleans()), min_size=1, max_size=6),
       st.integers(1024, 65535))
def test_unicast_goes_to_exactly_one_bound_socket(binds, sport):
    kernel = make_kernel()
    socks = [udp_socket(kernel, addr, 600, reuseport=rp) for addr, rp in binds]
    v = kernel.receive(udp4("10.0.0.2", "10.0.0.1", sport, 600), 1.0)
    assert len(v.sockets) == 1 and v.sockets[0] in socks
    # the winner is bound to the destination if any socket is
    if any(addr == "10.0.0.1" for addr, _ in binds):
        assert v.sockets[0].local_addr == a("10.0.0.1")


def _pseudo_only(src: str, dst: str) -> int:
    """The checksum field of a one-byte datagram whose checksum was left to offload."""
    from pktdemux.wire import pseudo_header_sum

    return pseudo_header_sum(a(src), a(dst), 17, 9)


# id, packet, device, delivered, reason, note mentions offload
OFFLOAD_CASES = [
    ("v4-offloaded", lambda: udp4("10.0.0.2", "10.0.0.1", 5000, 53, csum=_pseudo_only("10.0.0.2", "10.0.0.1")),
     None, True, None, True),
    ("v6-offloaded", lambda: udp6("fd00::2", "fd00::1", 5000, 53, csum=_pseudo_only("fd00::2", "fd00::1")),
     None, True, None, True),
    ("v4-correct", lambda: udp4("10.0.0.2", "10.0.0.1", 5000, 53), None, True, None, False),
    ("v4-bad", lambda: udp4("10.0.0.2", "10.0.0.1", 5000, 53, csum=0x1234), None, False, R.UDP_CSUM, False),
    # on lo nothing is verified: the host's own datagram arrives CHECKSUM_PARTIAL
    ("v4-bad-on-lo", lambda: udp4("10.0.0.1", "10.0.0.1", 5000, 53, csum=0x1234), "lo", True, None, False),
    ("v6-bad-on-lo", lambda: udp6("::1", "::1", 5000, 53, csum=0x1234), "lo", True, None, False),
]


@pytest.mark.parametrize("make,device,delivered,reason,offload_note", [c[1:] for c in OFFLOAD_CASES],
                         ids=[c[0] for c in OFFLOAD_CASES])
def test_checksum_offload_and_loopback(make, device, delivered, reason, offload_note):
    kernel = make_kernel()
    udp_socket(kernel, "0.0.0.0", 53)
    udp_socket(kernel, "::", 53, v6only=True)
    v = kernel.receive(make(), 1.0, device)
    assert (v.delivered, v.reason) == (delivered, reason)
    assert ("checksum taken as offloaded" in v.note) == offload_note


def test_offloaded_checksum_to_a_closed_port_gets_port_unreachable():
    v = make_kernel().receive(udp4("10.0.0.2", "10.0.0.1", 5000, 9999, csum=_pseudo_only("10.0.0.2", "10.0.0.1")),
                              1.0)
    assert (v.reason, len(v.replies)) == (R.NO_SOCKET, 1)
    assert v.note.endswith("checksum taken as offloaded (the field holds the pseudo-header sum, CHECKSUM_PARTIAL)")
