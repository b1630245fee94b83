"""IPv6 receive path: ip6_rcv_core checks, extension headers, routing drops
(spec §1.2), byte-exact against replies observed on Linux 6.18."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ip_vectors import a, icmp6, make_kernel, mask_random, udp6
from test_fragments import fragment6

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


# --------------------------------------------------------------------------- found by the timeline random suite
# (tests/test_differential_random_timeline.py; net/ipv6/reassembly.c,
# net/ipv6/exthdrs.c and net/ipv6/icmp.c of Linux 6.18)

UDP_CLOSED = udp6("fd00::2", "fd00::1", 5000, 999, b"closed")[40:]
UDP_NO_CSUM = UDP_CLOSED[:6] + b"\0\0" + UDP_CLOSED[8:]  # no port unreachable (zero UDP checksum)


def chain(*headers: tuple[int, bytes], upper: tuple[int, bytes] = (17, UDP_CLOSED), dst: str = "fd00::1") -> bytes:
    """A packet whose extension headers are ``(type, bytes after the next
    header byte)`` in order, then the upper layer ``(protocol, bytes)``."""
    payload, next_header = upper[1], upper[0]
    for kind, body in reversed(headers):
        payload, next_header = bytes((next_header,)) + body + payload, kind
    return build_ipv6(src=a("fd00::2"), dst=a(dst), next_header=next_header, payload=payload)


def frag(offset: int = 0, more: bool = False, ident: int = 7) -> tuple[int, bytes]:
    return 44, bytes(1) + (offset | more).to_bytes(2, "big") + ident.to_bytes(4, "big")


def rthdr(rh_type: int, segments_left: int, addresses: int = 1) -> tuple[int, bytes]:
    return 43, bytes((2 * addresses, rh_type, segments_left, 0, 0, 0, 0)) + a("fd00::7") * addresses


def options(*tlvs: bytes, kind: int = 0) -> tuple[int, bytes]:
    """A hop-by-hop (or ``kind``) header holding ``tlvs``, padded with PadN."""
    area = b"".join(tlvs)
    need = -(len(area) + 2) % 8
    area += b"\0" if need == 1 else (bytes((1, need - 2)) + bytes(need - 2) if need else b"")
    return kind, bytes(((len(area) + 2) // 8 - 1,)) + area


def param_problem(reply: bytes) -> tuple[int, int, int]:
    return reply[40], reply[41], int.from_bytes(reply[44:48], "big")


EXTHDR_CASES = [
    # ipv6_frag_rcv fail_hdr: ICMPv6 4/0 pointing at the fragment header
    ("frag header cut short", build_ipv6(src=a("fd00::2"), dst=a("fd00::1"), next_header=44, payload=b"\x11\0\0"),
     R.IP_INHDR, (4, 0, 40)),
    ("frag header, payload length 0", build_ipv6(src=a("fd00::2"), dst=a("fd00::1"), next_header=44, payload=b""),
     R.IP_INHDR, (4, 0, 40)),
    ("frag header cut after dest options", chain(options(kind=60), upper=(44, b"\0\0\x01")),
     R.IP_INHDR, (4, 0, 48)),
    ("atomic fragment then a fragment", chain(frag(), frag(more=True)), R.IP_INHDR, (4, 0, 48)),
    ("atomic fragment twice", chain(frag(), frag()), R.IP_INHDR, (4, 0, 48)),
    ("atomic fragment alone", chain(frag()), R.NO_SOCKET, (1, 4, 0)),
    # ipv6frag_thdr_truncated walks the chain as ipv6_skip_exthdr does
    ("first fragment, TCP header cut", chain(frag(more=True), upper=(6, bytes(8))), R.NOT_SPECIFIED, (4, 3, 0)),
    ("empty first fragment of No Next Header", chain(frag(more=True), upper=(59, b"")), R.NOT_SPECIFIED, None),
    # ipv6_rthdr_rcv
    ("SRv6 header, segments left 0", chain(rthdr(4, 0)), R.NOT_SPECIFIED, None),
    ("SRv6 header, segments left 1", chain(rthdr(4, 1)), R.NOT_SPECIFIED, None),
    ("RPL header, segments left 0", chain(rthdr(3, 0)), R.NOT_SPECIFIED, None),
    ("type 2, segments left 0 (no MIP6)", chain(rthdr(2, 0)), R.NO_SOCKET, (1, 4, 0)),
    ("type 2, segments left 1 (no MIP6)", chain(rthdr(2, 1)), R.IPV6_BAD_EXTHDR, (4, 0, 42)),
    ("type 0 to a multicast group", chain(rthdr(0, 0), upper=(58, icmp6("fd00::2", "ff02::1", 128)[40:]),
                                          dst="ff02::1"), R.NOT_SPECIFIED, None),
    # hop-by-hop options the kernel knows (ipv6_hop_*)
    ("router alert", chain(options(b"\x05\x02\0\0")), R.NO_SOCKET, (1, 4, 0)),
    ("router alert of 4 bytes", chain(options(b"\x05\x04\0\0\0\0")), R.IP_INHDR, None),
    ("jumbo with a payload length", chain(options(b"\xc2\x04\0\x01\0\0")), R.IP_INHDR, (4, 0, 42)),
    ("jumbo length below 65536", chain(options(b"\xc2\x04\0\0\x03\xe8")), R.IP_INHDR, (4, 0, 44)),
    ("jumbo not at 4n+2", chain(options(b"\0\xc2\x04\0\x01\0\0")), R.IP_INHDR, None),
    ("jumbo of 2 bytes", chain(options(b"\xc2\x02\0\0")), R.IP_INHDR, None),
    ("IOAM at 4n (ioam6_enabled 0)", chain(options(b"\x01\0\x31\x02\0\0")), R.NO_SOCKET, (1, 4, 0)),
    ("IOAM not at 4n", chain(options(b"\x31\x02\0\0")), R.IP_INHDR, None),
    ("CALIPSO (no DOI)", chain(options(b"\x07\x08" + bytes(8))), R.IP_INHDR, None),
]


@pytest.mark.parametrize("packet,reason,error", [c[1:] for c in EXTHDR_CASES], ids=[c[0] for c in EXTHDR_CASES])
def test_extension_header_rules(packet, reason, error):
    """Fragment header errors (IP6SKB_FRAGMENTED, payload length 0, cut
    short), routing headers (multicast destination, SRv6/RPL disabled,
    type 2 without MIP6) and the known hop-by-hop options, as Linux 6.18
    answers them."""
    v = make_kernel().receive(packet, 1.0)
    assert v.reason is reason
    assert [param_problem(r) for r in v.replies] == ([error] if error else [])
    for reply in v.replies:  # each error quotes the packet whole
        assert reply[48:] == packet


def test_fragment_header_after_reassembly_is_an_error():
    """The reassembled datagram holds another fragment header: 4/0 pointing
    at it (IP6SKB_FRAGMENTED is set by ip6_frag_reasm)."""
    inner = bytes((17,)) + frag()[1] + UDP_CLOSED  # an atomic fragment header, then UDP
    whole = build_ipv6(src=a("fd00::2"), dst=a("fd00::1"), next_header=44, payload=inner)
    first, last = fragment6(whole, 9, [16])
    kernel = make_kernel()
    assert kernel.receive(first, 1.0).reason is R.FRAG_PENDING
    v = kernel.receive(last, 1.01)
    assert v.reason is R.IP_INHDR and [param_problem(r) for r in v.replies] == [(4, 0, 40)]


ELIGIBLE_CASES = [
    # (what, packet, ineligible): is_ineligible walks the chain as ipv6_skip_exthdr does
    ("echo", icmp6("fd00::2", "fd00::1", 128), False),
    ("ICMPv6 error", icmp6("fd00::2", "fd00::1", 1, 4), True),
    ("ICMPv6 type cut off", icmp6("fd00::2", "fd00::1", 128)[:40], True),
    ("first fragment without the ICMPv6 header (M set)", chain(frag(more=True), upper=(58, b"")), False),
    ("atomic fragment without the ICMPv6 header", chain(frag(), upper=(58, b"")), True),
    ("non-first fragment, data byte below 128", chain(frag(offset=8), upper=(58, b"\x01" * 8)), False),
    ("header longer than the packet: type unreadable", chain(upper=(60, b"\x3a\x05")), True),
    ("header cut inside its first 2 bytes", chain(upper=(60, b"\x3a")), False),
    ("No Next Header in the chain", chain(options(kind=60), upper=(59, b"")), False),
]


@pytest.mark.parametrize("packet,ineligible", [c[1:] for c in ELIGIBLE_CASES], ids=[c[0] for c in ELIGIBLE_CASES])
def test_icmpv6_error_eligibility(packet, ineligible):
    from pktdemux import icmp
    assert icmp._ineligible6(packet) is ineligible


def test_empty_first_fragment_of_an_echo_gets_header_incomplete():
    """An offset-0 fragment (M set) without its ICMPv6 header: 4/3 pointer
    0 (RFC 8200 §4.5); is_ineligible lets it through because of the M flag."""
    v = make_kernel().receive(chain(frag(more=True), upper=(58, b"")), 1.0)
    assert [param_problem(r) for r in v.replies] == [(4, 3, 0)]
