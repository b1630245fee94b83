"""ICMP/ICMPv6 receive (spec §6) and error generation (spec §5), byte-exact
against the replies Linux 6.18 sent (spec §12.1, tests/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ip_vectors import (
    a,
    icmp4,
    icmp6,
    load_vectors,
    make_kernel,
    mask_random,
    udp4,
    udp6,
)

from pktdemux import icmp
from pktdemux.dropreason import DropReason as R
from pktdemux.ip_options import ms_since_midnight

VECTORS = load_vectors()
PROBE = json.loads((Path(__file__).with_name("data") / "ip_probe_options.json").read_text())

# id -> (delivered, reason, handler)
ICMP_VECTORS = {
    "I01": (True, None, "icmp echo"),
    "I02": (True, None, "icmp echo"),
    "I03": (False, R.INVALID_PROTO, "icmp"),
    "I04": (False, R.ICMP_CSUM, "icmp"),
    "I05": (False, R.IP_NOPROTO, "ip protocol"),
    "I07": (False, R.IP_CSUM, ""),
    "I08": (True, None, "icmp echo"),
    "I09": (False, R.IP_INHDR, "ip options"),
    "V06": (True, None, "icmpv6 echo"),
    "V07": (False, R.IP_NOPROTO, "ip6 protocol"),
    "V09": (True, None, "icmpv6 echo"),
}


@pytest.mark.parametrize("vid", sorted(ICMP_VECTORS))
def test_vector(vid):
    vector = VECTORS[vid]
    v = make_kernel().receive(bytes.fromhex(vector["incoming_hex"]), 1_700_000_000.0)
    assert (v.delivered, v.reason, v.handler) == ICMP_VECTORS[vid]
    expected = [mask_random(bytes.fromhex(r["hex"])) for r in vector["replies"]]
    assert [mask_random(r) for r in v.replies] == expected


def test_timestamp_reply_I06():
    """Receive and transmit times are ms since midnight UTC of the kernel clock."""
    vector = VECTORS["I06"]
    expected = bytes.fromhex(vector["replies"][0]["hex"])
    stamp = int.from_bytes(expected[32:36], "big")
    now = 19_000 * 86400 + stamp / 1000  # a day boundary plus the kernel's time of day
    v = make_kernel().receive(bytes.fromhex(vector["incoming_hex"]), now)
    assert ms_since_midnight(now) == stamp
    assert [mask_random(r) for r in v.replies] == [mask_random(expected)]


def test_echo_reply_copies_code_and_clears_df():
    packet = bytearray(icmp4("10.0.0.2", "10.0.0.1", 8, code=5))
    packet[6] = 0x40  # DF on the request
    from pktdemux.wire import checksum
    packet[10:12] = b"\0\0"
    packet[10:12] = checksum(bytes(packet[:20])).to_bytes(2, "big")
    reply = make_kernel().receive(bytes(packet), 1.0).replies[0]
    assert (reply[21], reply[6] & 0x40) == (5, 0)


@pytest.mark.parametrize("name,now_ms", [
    ("echo_rr", None), ("echo_rr_full", None), ("echo_ts", 0x00F9118E),
], ids=str)
def test_options_echoed_in_echo_reply(name, now_ms):
    """Record Route / Timestamp get a slot filled at receive and one at send (observed)."""
    case = PROBE[name]
    now = 20_000 * 86400 + (now_ms or 0) / 1000
    v = make_kernel().receive(bytes.fromhex(case["in"]), now)
    assert [mask_random(r) for r in v.replies] == [mask_random(bytes.fromhex(h)) for h in case["out"]]


@pytest.mark.parametrize("name", ["udp_rr", "udp_rr_room2"])
def test_error_quotes_header_as_modified_by_options(name):
    """The quote carries the Record Route slot the kernel filled in, with the
    original header checksum (observed on 6.18)."""
    case = PROBE[name]
    v = make_kernel().receive(bytes.fromhex(case["in"]), 1.0)
    assert [mask_random(r) for r in v.replies] == [mask_random(bytes.fromhex(h)) for h in case["out"]]


def test_source_route_dropped_without_reply():
    packet = icmp4("10.0.0.2", "10.0.0.1", 8, options=b"\x83\x07\x04\x0a\x00\x00\x05\x00")
    v = make_kernel().receive(packet, 1.0)
    assert (v.delivered, v.reason, v.replies) == (False, R.NOT_SPECIFIED, ())


def test_nop_eol_options_accepted():
    v = make_kernel().receive(icmp4("10.0.0.2", "10.0.0.1", 8, options=b"\x01\x01\x01\x00"), 1.0)
    assert v.delivered and len(v.replies[0]) == 29  # nothing echoed


def test_bad_option_on_icmp_error_gets_no_parameter_problem():
    packet = icmp4("10.0.0.2", "10.0.0.1", 3, 3, rest=bytes(4), data=bytes(28), options=b"\x07\x02\x04\x00")
    v = make_kernel().receive(packet, 1.0)
    assert (v.reason, v.replies) == (R.IP_INHDR, ())


RECEIVE4 = [
    # id, type, code, data, delivered, reason, handler
    ("echo-reply", 0, 0, b"x", True, None, "icmp echo reply"),
    ("port-unreachable", 3, 3, bytes(28), True, None, "icmp error"),
    ("time-exceeded", 11, 0, bytes(28), True, None, "icmp error"),
    ("error-too-short", 3, 3, bytes(4), False, R.PKT_TOO_SMALL, "icmp error"),
    ("timestamp-reply", 14, 0, bytes(12), True, None, "icmp discard"),
    ("info-request", 15, 0, b"", True, None, "icmp discard"),
    ("probe", 42, 0, bytes(8), True, None, "icmp probe"),
    ("type-200", 200, 0, b"x", False, R.UNHANDLED_PROTO, "icmp"),
]


@pytest.mark.parametrize("type_,code,data,delivered,reason,handler", [c[1:] for c in RECEIVE4],
                         ids=[c[0] for c in RECEIVE4])
def test_icmp4_consumed_without_reply(type_, code, data, delivered, reason, handler):
    v = make_kernel().receive(icmp4("10.0.0.2", "10.0.0.1", type_, code, data=data), 1.0)
    assert (v.delivered, v.reason, v.handler, v.replies, v.sockets) == (delivered, reason, handler, (), ())


@pytest.mark.parametrize("dst", ["10.0.0.255", "255.255.255.255", "224.0.0.1"], ids=str)
def test_broadcast_echo_ignored(dst):
    v = make_kernel().receive(icmp4("10.0.0.2", dst, 8), 1.0)
    assert (v.reason, v.replies) == (R.INVALID_PROTO, ())


def test_broadcast_echo_answered_when_allowed():
    kernel = make_kernel({"net.ipv4.icmp_echo_ignore_broadcasts": 0})
    reply = kernel.receive(icmp4("10.0.0.2", "10.0.0.255", 8), 1.0).replies[0]
    assert (reply[12:16], reply[16:20]) == (a("10.0.0.1"), a("10.0.0.2"))


def test_echo_ignore_all():
    v = make_kernel({"net.ipv4.icmp_echo_ignore_all": 1}).receive(icmp4("10.0.0.2", "10.0.0.1", 8), 1.0)
    assert v.delivered and v.replies == ()


RECEIVE6 = [
    ("echo-reply", 129, "icmpv6 echo reply"),
    ("neighbour-solicitation", 135, "icmpv6 ndisc"),
    ("router-advertisement", 134, "icmpv6 ndisc"),
    ("mld-report", 143, "icmpv6 mld"),
    ("dest-unreachable", 1, "icmpv6 error"),
    ("unknown-informational", 200, "icmpv6 discard"),
]


@pytest.mark.parametrize("type_,handler", [c[1:] for c in RECEIVE6], ids=[c[0] for c in RECEIVE6])
def test_icmp6_consumed_without_reply(type_, handler):
    v = make_kernel().receive(icmp6("fd00::2", "fd00::1", type_, data=bytes(40)), 1.0)
    assert (v.delivered, v.handler, v.replies) == (True, handler, ())


def test_icmp6_bad_checksum():
    packet = bytearray(icmp6("fd00::2", "fd00::1", 128))
    packet[-1] ^= 1
    v = make_kernel().receive(bytes(packet), 1.0)
    assert (v.reason, v.replies) == (R.ICMP_CSUM, ())


def test_icmp6_echo_copies_traffic_class_and_reflects_label_when_asked():
    kernel = make_kernel({"net.ipv6.flowlabel_reflect": 4})
    packet = bytearray(icmp6("fd00::2", "fd00::1", 128, tc=0x28))
    packet[1] |= 0x0A  # flow label 0xABCDE
    packet[2:4] = b"\xbc\xde"
    reply = kernel.receive(bytes(packet), 1.0).replies[0]
    first = int.from_bytes(reply[:4], "big")
    assert ((first >> 20) & 0xFF, first & 0xFFFFF) == (0x28, 0xABCDE)


def test_icmp6_echo_flow_label_is_stable_per_peer():
    kernel = make_kernel()
    one = kernel.receive(icmp6("fd00::2", "fd00::1", 128), 1.0).replies[0]
    two = kernel.receive(icmp6("fd00::2", "fd00::1", 128), 2.0).replies[0]
    assert one[1:4] == two[1:4]


# -- error builders: the never-answer rules ------------------------------------

def _pkt(kernel, packet):
    """The IpPacket the IP layer hands up, captured at the transport handler."""
    from pktdemux import ipv4, udp
    seen = []
    original = udp.receive
    udp.receive = lambda k, p: seen.append(p)  # type: ignore[assignment]
    try:
        ipv4.receive(kernel, packet, "tun0")
    finally:
        udp.receive = original
    return seen[0]


def test_error_quote_limit_follows_route_mtu():
    """S48: tun0 MTU 500, 1028-byte UDP: ICMP of 500 bytes, 472 quoted."""
    kernel = make_kernel(mtu=500)
    reply = kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 999, bytes(1000)), 1.0).replies[0]
    assert (len(reply), len(reply) - 28) == (500, 472)


def test_error_not_sent_when_no_room():
    kernel = make_kernel(mtu=48)  # room = 48 - 20 - 8 = 20: not more than an IP header
    assert kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 999, bytes(100)), 1.0).replies == ()


@pytest.mark.parametrize("tos,expected", [(0x00, 0xC0), (0xB8, 0xD8), (0xFF, 0xDE), (0x03, 0xC2)], ids=hex)
def test_error_tos(tos, expected):
    reply = make_kernel().receive(udp4("10.0.0.2", "10.0.0.1", 5000, 999, tos=tos), 1.0).replies[0]
    assert reply[1] == expected


def test_error_about_icmp_error_is_never_sent():
    kernel = make_kernel()
    pkt = _pkt(kernel, udp4("10.0.0.2", "10.0.0.1", 1, 2))
    pkt.proto = 1
    for inner_type, sent in [(3, False), (11, False), (19, False), (8, True), (0, True)]:
        datagram = pkt.raw[:20] + bytes((inner_type,)) + pkt.raw[21:]
        reply = icmp.send_error4(kernel, pkt, 3, 2, datagram=datagram)
        assert (reply is not None) == sent, inner_type


def test_error_not_sent_for_non_first_fragment():
    kernel = make_kernel()
    pkt = _pkt(kernel, udp4("10.0.0.2", "10.0.0.1", 1, 2))
    pkt.frag_offset = 8
    assert icmp.send_error4(kernel, pkt, 3, 3) is None


def test_error_to_subnet_broadcast_source_is_sent():
    """§5.1: a 10.0.0.255 source passes routing and gets the port unreachable."""
    reply = make_kernel().receive(udp4("10.0.0.255", "10.0.0.1", 5000, 999), 1.0).replies[0]
    assert reply[16:20] == a("10.0.0.255")


def test_error_from_secondary_address():
    import ipaddress

    from pktdemux import Interface, Kernel
    kernel = Kernel([Interface("tun0", [ipaddress.IPv4Interface("10.0.0.1/24"),
                                        ipaddress.IPv4Interface("10.0.0.3/24")])])
    reply = kernel.receive(udp4("10.0.0.2", "10.0.0.3", 5000, 999), 1.0).replies[0]
    assert reply[12:16] == a("10.0.0.3")


# -- rate limits (spec §5.4) -------------------------------------------------------

from pktdemux.entropy import Entropy
from pktdemux.icmp_ratelimit import IcmpRateLimiter, icmpv4_limited, icmpv6_limited


def _count(kernel, packets):
    return sum(len(kernel.receive(p, t).replies) for t, p in packets)


def test_S38_burst_of_six_per_source():
    kernel = make_kernel()
    packets = [(100.0 + i * 5e-6, udp4("10.0.0.2", "10.0.0.1", 5000, 999)) for i in range(200)]
    assert _count(kernel, packets) == 6


def test_S38_then_one_per_second():
    kernel = make_kernel()
    _count(kernel, [(100.0, udp4("10.0.0.2", "10.0.0.1", 5000, 999))] * 50)
    later = [(101.9 + i * 1e-5, udp4("10.0.0.2", "10.0.0.1", 5000, 999)) for i in range(200)]
    assert _count(kernel, later) == 1


def test_S40_loopback_is_exempt():
    kernel = make_kernel()
    packets = [(100.0, udp4("127.0.0.1", "127.0.0.1", 40000, 999))] * 200
    assert _count(kernel, packets) == 200


def test_local_address_over_lo_is_exempt():
    kernel = make_kernel()
    packets = [(100.0, udp4("10.0.0.1", "10.0.0.1", 40000, 999))] * 200
    assert sum(len(kernel.receive(p, t, device="lo").replies) for t, p in packets) == 200


def test_S41_ipv6_burst_then_ten_per_second():
    kernel = make_kernel()
    assert _count(kernel, [(100.0, udp6("fd00::2", "fd00::1", 5000, 999))] * 200) == 6
    assert _count(kernel, [(100.35, udp6("fd00::2", "fd00::1", 5000, 999))] * 200) == 3


def test_S39_global_burst_across_sources():
    """One datagram from each of 254 sources at once: the global bucket of 50
    credits, each message costing a random 0-2, lets about 50 through."""
    kernel = make_kernel()
    packets = [(100.0, udp4(f"10.0.{i // 250}.{i % 250 + 2}", "10.0.0.1", 5000, 999)) for i in range(254)]
    sent = _count(kernel, packets)
    assert 30 <= sent <= 100


@pytest.mark.parametrize("sysctl", ["net.ipv4.icmp_ratelimit", "net.ipv4.icmp_ratemask"])
def test_limit_disabled_by_sysctl(sysctl):
    kernel = make_kernel({sysctl: 0})
    assert _count(kernel, [(100.0, udp4("10.0.0.2", "10.0.0.1", 5000, 999))] * 40) == 40


def test_echo_replies_not_limited():
    kernel = make_kernel()
    assert _count(kernel, [(100.0, icmp4("10.0.0.2", "10.0.0.1", 8))] * 200) == 200


@pytest.mark.parametrize("type_,code,limited", [
    (3, 3, True), (3, 4, False), (11, 0, True), (12, 0, True), (0, 0, False), (8, 0, False), (42, 0, False),
], ids=str)
def test_icmpv4_ratemask(type_, code, limited):
    assert icmpv4_limited(type_, code, 0x1818) is limited


@pytest.mark.parametrize("type_,limited", [(1, True), (2, False), (4, True), (127, True), (128, False),
                                           (129, False)], ids=str)
def test_icmpv6_ratemask(type_, limited):
    from pktdemux.sysctl import DEFAULTS
    assert icmpv6_limited(type_, DEFAULTS["net.ipv6.icmp.ratemask"]) is limited


def test_peer_bucket_transcript():
    limiter = IcmpRateLimiter(Entropy(0))
    allowed = [limiter.peer_allow(b"peer", t, 1000) for t in [0] * 8 + [999, 1000, 1500, 2000, 9000]]
    # full bucket: 6, then one token per 1000 ms, capped at 6 tokens
    assert allowed == [True] * 6 + [False, False, False, True, False, True, True]


def test_global_bucket_refill_rules():
    limiter = IcmpRateLimiter(Entropy(0))
    assert limiter.global_allow(0, 1000, 50) and limiter.credit == 50
    limiter.credit = 0
    assert not limiter.global_allow(19, 1000, 50)   # less than HZ/50 since the refill
    assert limiter.global_allow(20, 1000, 50) and limiter.credit == 20
    limiter.credit = -3
    assert limiter.global_allow(5000, 1000, 50) and limiter.credit == 50  # elapsed capped at 1 s, burst cap
    before = limiter.credit
    for _ in range(30):
        limiter.global_consume()
    assert before - 60 <= limiter.credit <= before


def test_own_multicast_echo_over_lo_is_answered_from_the_own_address():
    """The host pings ff02::1 from fd00::1: Linux 6.18 answers from fd00::1 to
    fd00::1 (source selection rule 1), not from ::1, the address of lo."""
    request = icmp6("fd00::1", "ff02::1", 128)
    v = make_kernel().receive(request, 1_700_000_000.0, "lo")
    assert v.handler == "icmpv6 echo"
    (reply,) = v.replies
    assert (reply[8:24], reply[24:40], reply[40]) == (a("fd00::1"), a("fd00::1"), 129)


def test_own_link_local_echo_over_lo_is_answered():
    """A self-ping of a link-local address of eth0 over lo is delivered and
    answered from that address (pcaps/sll2_icmp_v4v6.pcap, packet 3)."""
    import ipaddress

    from pktdemux.kernel import Interface, Kernel

    kernel = Kernel([Interface("eth0", [ipaddress.IPv6Interface("fe80::8c36:6ff:fe44:acaf/64")])])
    request = icmp6("fe80::8c36:6ff:fe44:acaf", "fe80::8c36:6ff:fe44:acaf", 128)
    v = kernel.receive(request, 1_700_000_000.0, "lo")
    assert v.delivered and v.handler == "icmpv6 echo"
    (reply,) = v.replies
    assert reply[8:24] == reply[24:40] == a("fe80::8c36:6ff:fe44:acaf")


def _with_checksum(packet: bytes, value: int) -> bytes:
    """``packet`` (IPv4 or IPv6, no options) with its ICMP checksum field set to ``value``."""
    l4 = 20 if packet[0] >> 4 == 4 else 40
    return packet[:l4 + 2] + value.to_bytes(2, "big") + packet[l4 + 4:]


def test_icmpv6_checksum_left_to_offload_is_taken_with_a_note():
    from pktdemux.wire import pseudo_header_sum

    request = icmp6("fd00::2", "fd00::1", 128)
    offloaded = _with_checksum(request, pseudo_header_sum(a("fd00::2"), a("fd00::1"), 58, len(request) - 40))
    v = make_kernel().receive(offloaded, 1.0)
    assert (v.delivered, v.handler, len(v.replies)) == (True, "icmpv6 echo", 1)
    assert "checksum taken as offloaded" in v.note


@pytest.mark.parametrize("request_,device,reason", [
    (icmp4("10.0.0.2", "10.0.0.1", 8), "tun0", R.ICMP_CSUM),
    (icmp6("fd00::2", "fd00::1", 128), "tun0", R.ICMP_CSUM),
    (icmp4("127.0.0.1", "127.0.0.1", 8), "lo", None),
    (icmp6("::1", "::1", 128), "lo", None),
], ids=["v4-eth", "v6-eth", "v4-lo", "v6-lo"])
def test_bad_icmp_checksum_is_dropped_except_on_lo(request_, device, reason):
    l4 = 20 if request_[0] >> 4 == 4 else 40
    bad = _with_checksum(request_, int.from_bytes(request_[l4 + 2:l4 + 4], "big") ^ 0x0101)
    v = make_kernel().receive(bad, 1.0, device)
    assert v.reason is reason
    assert v.delivered is (reason is None)


def test_rate_limiter_exists_from_the_start_and_is_the_one_used():
    from pktdemux.icmp_ratelimit import IcmpRateLimiter

    kernel = make_kernel()
    limiter = kernel.icmp_ratelimit
    assert isinstance(limiter, IcmpRateLimiter) and limiter.credit == 0
    kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 9), 1.0)  # port unreachable: the global bucket refills
    assert kernel.icmp_ratelimit is limiter and icmp.rate_limiter(kernel) is limiter
    assert limiter.credit != 0 or limiter._stamp is not None
