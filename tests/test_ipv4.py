"""IPv4 receive path: ip_rcv_core checks, route, options, fragments,
protocol dispatch (spec §1.1), through Kernel.receive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ip_vectors import icmp4, make_kernel, mask_random, udp4

from pktdemux.dropreason import DropReason as R
from pktdemux.wire import checksum

GOOD = bytes.fromhex("4500001d00010000400166dd0a0000020a00000108007ffc0002000178")  # echo 10.0.0.2 -> 10.0.0.1
PROBE = json.loads((Path(__file__).with_name("data") / "ip_probe_options.json").read_text())


def fix_csum(b: bytearray) -> bytes:
    ihl = (b[0] & 15) * 4
    b[10:12] = b"\0\0"
    b[10:12] = checksum(bytes(b[:ihl])).to_bytes(2, "big")
    return bytes(b)


def mutate(offset: int, value: bytes, recsum: bool = True) -> bytes:
    b = bytearray(GOOD)
    b[offset:offset + len(value)] = value
    return fix_csum(b) if recsum else bytes(b)


HEADER_CASES = [
    ("short", GOOD[:19], R.IP_INHDR),
    ("ihl-4", mutate(0, b"\x44", recsum=False), R.IP_INHDR),
    ("bad-checksum", mutate(10, b"\x99\xdd", recsum=False), R.IP_CSUM),
    ("tot-len-beyond-frame", mutate(2, (len(GOOD) + 10).to_bytes(2, "big")), R.PKT_TOO_SMALL),
    ("tot-len-below-ihl", mutate(2, (19).to_bytes(2, "big")), R.IP_INHDR),
    ("ihl-beyond-frame", bytes([0x4F]) + GOOD[1:], R.IP_INHDR),
]


@pytest.mark.parametrize("packet,reason", [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES])
def test_header_checks_drop_silently(packet, reason):
    v = make_kernel().receive(packet, 1.0)
    assert (v.delivered, v.reason, v.replies) == (False, reason, ())


def test_trailing_padding_is_ignored():
    v = make_kernel().receive(GOOD + b"PADDING", 1.0)
    assert v.handler == "icmp echo" and len(v.replies) == 1
    assert len(v.replies[0]) == 29


@pytest.mark.parametrize("ttl", [0, 1], ids=["ttl0", "ttl1"])
def test_ttl_not_checked_for_local_delivery(ttl):
    v = make_kernel().receive(mutate(8, bytes([ttl])), 1.0)
    assert v.delivered and len(v.replies) == 1


def test_evil_bit_ignored():
    v = make_kernel().receive(mutate(6, b"\x80\x00"), 1.0)
    assert v.delivered and len(v.replies) == 1


ROUTE_CASES = [
    ("not-local", icmp4("10.0.0.2", "10.0.0.99", 8), R.IP_INADDRERRORS),
    ("own-source", icmp4("10.0.0.1", "10.0.0.1", 8), R.IP_LOCAL_SOURCE),
    ("src-zero", udp4("0.0.0.0", "10.0.0.1", 1, 999), R.IP_INVALID_SOURCE),
    ("loopback-dst", udp4("10.0.0.2", "127.0.0.1", 1, 999), R.IP_LOCALNET),
    ("unjoined-group", udp4("10.0.0.2", "239.9.9.9", 1, 999), R.NOT_SPECIFIED),
]


@pytest.mark.parametrize("packet,reason", [c[1:] for c in ROUTE_CASES], ids=[c[0] for c in ROUTE_CASES])
def test_route_drops_are_silent(packet, reason):
    v = make_kernel().receive(packet, 1.0, device="tun0")
    assert (v.delivered, v.reason, v.replies) == (False, reason, ())


def test_loopback_packet_on_lo_is_local():
    v = make_kernel().receive(icmp4("127.0.0.1", "127.0.0.1", 8), 1.0)
    assert v.handler == "icmp echo" and len(v.replies) == 1


FRAGMENTS = [
    ("first", 0x2000),
    ("middle", 0x2000 | 10),
    ("last", 10),
]


@pytest.mark.parametrize("frag", [f[1] for f in FRAGMENTS], ids=[f[0] for f in FRAGMENTS])
def test_fragments_are_held_without_reply(frag):
    packet = mutate(6, frag.to_bytes(2, "big"))
    v = make_kernel().receive(packet, 1.0)
    assert (v.reason, v.replies, v.handler) == (R.FRAG_PENDING, (), "ip defrag")


@pytest.mark.parametrize("proto", [4, 41, 47, 50, 51, 59, 132, 253], ids=str)
def test_unregistered_protocol_gets_protocol_unreachable(proto):
    """Observed on 6.18 (tests/data/ip_probe_options.json): these protocols get 3/2."""
    case = PROBE[f"proto_{proto}"]
    v = make_kernel().receive(bytes.fromhex(case["in"]), 1.0)
    assert v.reason is R.IP_NOPROTO
    assert [mask_random(r) for r in v.replies] == [mask_random(bytes.fromhex(h)) for h in case["out"]]


@pytest.mark.parametrize("proto", [2, 103, 136], ids=["igmp", "pim", "udplite"])
def test_kernel_protocols_get_no_reply(proto):
    v = make_kernel().receive(bytes.fromhex(PROBE[f"proto_{proto}"]["in"]), 1.0)
    assert v.replies == () and v.reason is not R.IP_NOPROTO


def test_protocol_unreachable_not_sent_for_broadcast():
    packet = bytearray(bytes.fromhex(PROBE["proto_253"]["in"]))
    packet[16:20] = bytes((10, 0, 0, 255))
    v = make_kernel().receive(fix_csum(packet), 1.0)
    assert (v.reason, v.replies) == (R.IP_NOPROTO, ())


def test_tcp_is_dispatched_to_tcp(monkeypatch):
    from pktdemux import ipv4, tcp
    seen = []
    monkeypatch.setattr(tcp, "receive", lambda kernel, pkt: seen.append(pkt) or "tcp-verdict")
    packet = bytes.fromhex("4500002800010000400666c40a00000b0a0000019c400051000003e80000000050022000db5d0000")
    kernel = make_kernel()
    v = ipv4.receive(kernel, packet, "tun0")
    assert v == "tcp-verdict"
    assert (seen[0].proto, seen[0].l4_offset, seen[0].src) == (6, 20, bytes((10, 0, 0, 11)))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_arbitrary_bytes_never_raise(data):
    v = make_kernel().receive(bytes([0x45]) + data, 1.0)
    assert v.delivered or v.reason is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 255), st.integers(0, 65535))
def test_arbitrary_options_never_raise(opts, proto, port):
    opts = (opts + bytes(-len(opts) % 4))[:40]
    packet = udp4("10.0.0.2", "10.0.0.1", 1, port, options=opts)
    v = make_kernel().receive(packet, 1.0)
    assert v.delivered or v.reason is not None
    for reply in v.replies:
        assert reply[0] >> 4 == 4 and checksum(reply[:(reply[0] & 15) * 4]) == 0


# --------------------------------------------------------------------------- found by the timeline random suite
# (tests/test_differential_random_timeline.py; net/ipv4/ip_options.c,
# net/ipv4/cipso_ipv4.c:cipso_v4_validate, net/ipv4/route.c and
# net/ipv4/icmp.c:__icmp_send of Linux 6.18)

TS_TWO_SLOTS = b"\x44\x0c\x05\x00" + bytes(8)  # timestamps only, room for two
RR_ONE_SLOT = b"\x07\x07\x04" + bytes(4)
STAMP = (1000).to_bytes(4, "big")  # 1.0 s after midnight, in ms


def pad4(options: bytes) -> bytes:
    return options + bytes(-len(options) % 4)


OPTION_ERROR_CASES = [
    # (options, destination, ICMP source, 12/0 pointer, options the 12/0 carries)
    ("CIPSO of 10 bytes: unknown DOI", pad4(b"\x86\x0a\0\0\0\x03" + bytes(4)), "10.0.0.1", "10.0.0.1", 22,
     pad4(b"\x86\x0a\0\0\0\x03" + bytes(4))),
    ("CIPSO of 6 bytes: too short", pad4(b"\x86\x06\0\0\0\x03"), "10.0.0.1", "10.0.0.1", 21,
     pad4(b"\x86\x06\0\0\0\x03")),
    ("timestamp, then a record route of 2 bytes", pad4(TS_TWO_SLOTS + b"\x07\x02"), "10.0.0.1", "10.0.0.1", 33,
     b"\x44\x0c\x0d\x00" + STAMP + STAMP),
    ("record route, then an option of length 0", pad4(RR_ONE_SLOT + b"\x99\x00"), "10.0.0.1", "10.0.0.1", 27,
     pad4(b"\x07\x07\x08" + bytes((10, 0, 0, 1)))),
    ("not local: router alert of 2 bytes", pad4(b"\x94\x02"), "10.0.0.99", "10.0.0.1", 21, b""),
    ("not local: record route, then a second one", pad4(RR_ONE_SLOT + RR_ONE_SLOT), "10.0.0.99", "10.0.0.1", 27,
     pad4(b"\x07\x07\x08" + bytes((10, 0, 0, 1)))),
]


@pytest.mark.parametrize("options,dst,icmp_src,pointer,echoed", [c[1:] for c in OPTION_ERROR_CASES],
                         ids=[c[0] for c in OPTION_ERROR_CASES])
def test_option_errors(options, dst, icmp_src, pointer, echoed):
    """A malformed option gets 12/0 with its pointer; the 12/0 echoes the
    Record Route / Timestamp / CIPSO state compiled before the bad option
    (the skb's IPCB(skb)->opt); a destination that is not local (forwarding
    off: an RTN_UNREACHABLE route) has its options compiled too, and the
    12/0 comes from the address of the route back."""
    packet = icmp4("10.0.0.2", dst, 8, options=options)
    v = make_kernel().receive(packet, 1.0)
    assert v.reason is R.IP_INHDR
    (reply,) = v.replies
    ihl = (reply[0] & 0x0F) * 4
    assert reply[12:16] == bytes(int(x) for x in icmp_src.split("."))
    assert (reply[ihl], reply[ihl + 1], reply[ihl + 4]) == (12, 0, pointer)
    assert reply[20:ihl] == echoed
    assert reply[ihl + 8 + 16:ihl + 8 + 20] == packet[16:20]  # the quote names the original destination


def test_valid_options_to_a_non_local_destination_are_dropped_silently():
    v = make_kernel().receive(icmp4("10.0.0.2", "10.0.0.99", 8, options=pad4(RR_ONE_SLOT)), 1.0)
    assert (v.reason, v.replies) == (R.IP_INADDRERRORS, ())


def test_cipso_in_a_non_first_fragment_gets_no_error():
    packet = bytearray(icmp4("10.0.0.2", "10.0.0.1", 8, options=pad4(b"\x86\x0a\0\0\0\x03" + bytes(4))))
    packet[6:8] = (0x2000 | 2).to_bytes(2, "big")
    v = make_kernel().receive(fix_csum(packet), 1.0)
    assert (v.reason, v.replies) == (R.IP_INHDR, ())
