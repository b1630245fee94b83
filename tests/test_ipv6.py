"""IPv6 receive path: ip6_rcv_core checks, extension headers, routing drops
(spec §1.2), byte-exact against replies observed on Linux 6.18."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ip_vectors import a, icmp6, make_kernel, mask_random, udp6

from pktdemux.dropreason import DropReason as R
from pktdemux.wire import build_ipv6

PROBE = json.loads((Path(__file__).with_name("data") / "ip_probe_options.json").read_text())


def with_header(packet: bytes, offset: int, value: bytes) -> bytes:
    b = bytearray(packet)
    b[offset:offset + len(value)] = value
    return bytes(b)


GOOD = udp6("fd00::2", "fd00::1", 5000, 999)

HEADER_CASES = [
    ("short", GOOD[:39], "tun0", R.IP_INHDR),
    ("loopback-src-off-lo", udp6("::1", "fd00::1", 1, 999), "tun0", R.IP_INHDR),
    ("loopback-dst-off-lo", udp6("fd00::2", "::1", 1, 999), "tun0", R.IP_INHDR),
    ("multicast-src", udp6("ff02::5", "fd00::1", 1, 999), "tun0", R.IP_INHDR),
    ("mc-scope-0", udp6("fd00::2", "ff00::1", 1, 999), "tun0", R.IP_INHDR),
    ("interface-local-from-outside", udp6("fd00::2", "ff01::1", 1, 999), "tun0", R.IP_INHDR),
    ("payload-length-beyond-packet", with_header(GOOD, 4, b"\x01\x00"), "tun0", R.PKT_TOO_SMALL),
    ("on-link-not-local", udp6("fd00::2", "fd00::99", 1, 999), "tun0", R.IP_INADDRERRORS),
    ("unjoined-group", udp6("fd00::2", "ff02::2", 1, 999), "tun0", R.NOT_SPECIFIED),
]


@pytest.mark.parametrize("packet,device,reason", [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES])
def test_silent_drops(packet, device, reason):
    v = make_kernel().receive(packet, 1.0, device=device)
    assert (v.delivered, v.reason, v.replies) == (False, reason, ())


def test_extra_bytes_trimmed():
    v = make_kernel().receive(GOOD + b"trailer", 1.0)
    assert v.reason is R.NO_SOCKET and len(v.replies[0]) == 40 + 8 + 49


# observed replies (tests/data/ip_probe_options.json); the UDP inside those
# with extension headers carries a zero checksum, so no port unreachable follows
OBSERVED = [
    ("v6_noroute", R.IP_INNOROUTES),            # ICMPv6 1/0 from fd00::1
    ("v6_onlink_nonlocal", R.IP_INADDRERRORS),  # nothing
    ("v6_hbh_after_dest", R.IP_NOPROTO),        # 4/1 pointer 40
    ("v6_destopt_unknown_80", R.UNHANDLED_PROTO),  # 4/2 pointer 42
    ("v6_destopt_unknown_40", R.UNHANDLED_PROTO),  # silently discarded
    ("v6_destopt_unknown_00", R.NO_SOCKET),     # skipped; zero UDP checksum
    ("v6_rh0_segleft1", R.IPV6_BAD_EXTHDR),     # 4/0 pointer 42
    ("v6_rh0_segleft0", R.NO_SOCKET),           # skipped
    ("v6_nonext", R.NOT_SPECIFIED),             # nothing
    ("v6_atomic_frag", R.NO_SOCKET),            # processed whole
    ("v6_echo_ff02_2", R.NOT_SPECIFIED),        # not a router
]


@pytest.mark.parametrize("name,reason", OBSERVED, ids=[o[0] for o in OBSERVED])
def test_observed(name, reason):
    case = PROBE[name]
    v = make_kernel().receive(bytes.fromhex(case["in"]), 1.0)
    assert v.reason is reason
    assert [mask_random(r) for r in v.replies] == [mask_random(bytes.fromhex(h)) for h in case["out"]]


def test_echo_to_solicited_node_on_noarp_device_unanswered():
    kernel = make_kernel()
    kernel.routing.set_noarp("tun0")
    v = kernel.receive(bytes.fromhex(PROBE["v6_echo_solicited"]["in"]), 1.0)
    assert v.replies == ()


def test_fragment_held():
    frag = bytes([17, 0, 0, 8 | 1, 0, 0, 0, 7])  # offset 1, M set
    packet = build_ipv6(src=a("fd00::2"), dst=a("fd00::1"), next_header=44, payload=frag + bytes(16))
    v = make_kernel().receive(packet, 1.0)
    assert (v.reason, v.replies) == (R.FRAG_PENDING, ())


def test_unknown_next_header_pointer_names_the_field():
    """V07 with a destination options header first: the pointer is that header's
    Next Header byte (offset 40)."""
    dest = bytes([253, 0, 1, 4, 0, 0, 0, 0])
    packet = build_ipv6(src=a("fd00::2"), dst=a("fd00::1"), next_header=60, payload=dest + b"abcde")
    reply = make_kernel().receive(packet, 1.0).replies[0]
    assert (reply[40], reply[41], reply[44:48]) == (4, 1, (40).to_bytes(4, "big"))


def test_no_error_to_unspecified_source():
    v = make_kernel().receive(udp6("::", "fd00::1", 5000, 999), 1.0)
    assert (v.reason, v.replies) == (R.NO_SOCKET, ())


def test_no_error_about_icmpv6_error():
    v = make_kernel().receive(icmp6("fd00::2", "fd00::1", 1, 4, data=bytes(48)), 1.0)
    assert v.replies == ()
    # and an unknown next header after an ICMPv6 error type is not answered either
    from pktdemux import icmp
    assert icmp._ineligible6(icmp6("fd00::2", "fd00::1", 1, 4)) is True
    assert icmp._ineligible6(icmp6("fd00::2", "fd00::1", 128)) is False


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=64))
def test_arbitrary_extension_chains_never_raise(next_header, payload):
    packet = build_ipv6(src=a("fd00::2"), dst=a("fd00::1"), next_header=next_header, payload=payload)
    v = make_kernel().receive(packet, 1.0)
    assert v.delivered == (v.reason is None)
    for reply in v.replies:
        assert reply[0] >> 4 == 6 and len(reply) <= 1280
