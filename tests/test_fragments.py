"""IP fragment reassembly (pktdemux.fragments): queueing, duplicates and
overlaps, the limits, the rebuilt datagram through the normal path, and the
reassembly timeout.  The builders here are shared with
tests/test_fragments_kernel.py."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ip_vectors import udp4, udp6
from kernel_support import host_toml
from tcp_helpers import segment

from pktdemux.dropreason import DropReason
from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.kernel import Kernel
from pktdemux.wire import checksum

T0 = 1_700_000_000.0
DEVICE = "tun0"
SOCKETS = [
    {"name": "echo4", "label": "udp://0.0.0.0:7"},
    {"name": "echo6", "label": "udp://[::]:7", "v6only": True},
    {"name": "web4", "label": "tcp://0.0.0.0:80", "listen": 8},
    {"name": "web6", "label": "tcp://[::]:80", "listen": 8, "v6only": True},
]


# --------------------------------------------------------------------------- builders

def fragment4(datagram: bytes, cuts: list[int], *, df: bool = False) -> list[bytes]:
    """``datagram`` (IPv4, no options needed) cut at the given payload
    offsets (multiples of 8), each fragment with its own header checksum."""
    ihl = (datagram[0] & 0x0F) * 4
    payload = datagram[ihl:]
    bounds = [0, *cuts, len(payload)]
    out = []
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        more = i < len(bounds) - 2
        header = bytearray(datagram[:ihl])
        flags = (0x2000 if more else 0) | (0x4000 if df else 0) | start >> 3
        struct.pack_into("!HHH", header, 2, ihl + end - start, header[4] << 8 | header[5], flags)
        header[10:12] = b"\0\0"
        header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
        out.append(bytes(header) + payload[start:end])
    return out


def raw_fragment4(template: bytes, offset: int, data: bytes, *, more: bool) -> bytes:
    """A fragment with ``template``'s header carrying ``data`` at ``offset``."""
    header = bytearray(template[:20])
    struct.pack_into("!HHH", header, 2, 20 + len(data), header[4] << 8 | header[5],
                     (0x2000 if more else 0) | offset >> 3)
    header[10:12] = b"\0\0"
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + data


def fragment6(datagram: bytes, ident: int, cuts: list[int]) -> list[bytes]:
    """An IPv6 ``datagram`` without extension headers cut at the given
    payload offsets, each fragment with a fragment header."""
    nexthdr, payload = datagram[6], datagram[40:]
    bounds = [0, *cuts, len(payload)]
    out = []
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        more = i < len(bounds) - 2
        body = struct.pack("!BBHI", nexthdr, 0, start | more, ident) + payload[start:end]
        header = bytearray(datagram[:40])
        header[4:6] = len(body).to_bytes(2, "big")
        header[6] = 44
        out.append(bytes(header) + body)
    return out


def host_kernel(sysctls: dict | None = None) -> Kernel:
    return build_kernel(parse_host(host_toml(SOCKETS, sysctls=sysctls), "<frag host>"), seed=0)


def feed(kernel: Kernel, packets: list[bytes], start: float = T0, gap: float = 0.01) -> list:
    return [kernel.receive(p, T0 + (start - T0) + i * gap, DEVICE) for i, p in enumerate(packets)]


def icmp_quote4(reply: bytes) -> bytes:
    return reply[(reply[0] & 0x0F) * 4 + 8:]


UDP4_CLOSED = udp4("10.0.0.2", "10.0.0.1", 4000, 9, b"A" * 40)
UDP4_OPEN = udp4("10.0.0.3", "10.0.0.1", 4000, 7, b"A" * 40)
UDP6_CLOSED = udp6("fd00::2", "fd00::1", 4000, 9, b"B" * 40)
UDP6_OPEN = udp6("fd00::3", "fd00::1", 4000, 7, b"B" * 40)


# --------------------------------------------------------------------------- sequences

ORDERS = {
    "in order": [0, 1, 2],
    "reversed": [2, 1, 0],
    "last first": [2, 0, 1],
    "middle first": [1, 2, 0],
}


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
@pytest.mark.parametrize("family", [4, 6])
def test_any_order_delivers_once_on_the_last_fragment(family: int, order: list[int]) -> None:
    kernel = host_kernel()
    datagram = UDP4_OPEN if family == 4 else UDP6_OPEN
    frags = fragment4(datagram, [16, 32]) if family == 4 else fragment6(datagram, 7, [16, 32])
    verdicts = feed(kernel, [frags[i] for i in order])
    assert [v.reason for v in verdicts[:-1]] == [DropReason.FRAG_PENDING] * 2
    last = verdicts[-1]
    assert last.delivered and [s.display_name for s in last.sockets] == [f"echo{family}"]
    assert "reassembled from 3 fragments" in last.note
    assert len(kernel.frags) == 0


@pytest.mark.parametrize("family", [4, 6])
def test_closed_port_quotes_the_reassembled_datagram(family: int) -> None:
    # Linux 6.18 quotes the rebuilt datagram: total length of the whole,
    # fragment field 0, header checksum recomputed; IPv6 without the
    # fragment header (tests/test_fragments_kernel.py).
    kernel = host_kernel()
    datagram = UDP4_CLOSED if family == 4 else UDP6_CLOSED
    frags = fragment4(datagram, [16, 32]) if family == 4 else fragment6(datagram, 9, [16, 32])
    verdicts = feed(kernel, frags)
    last = verdicts[-1]
    assert last.reason is DropReason.NO_SOCKET
    (reply,) = last.replies
    if family == 4:
        assert reply[20:22] == b"\x03\x03"
        assert icmp_quote4(reply) == datagram
    else:
        assert reply[40:42] == b"\x01\x04"
        assert reply[48:] == datagram


def test_duplicate_is_dropped_and_the_queue_kept() -> None:
    kernel = host_kernel()
    frags = fragment4(UDP4_OPEN, [16, 32])
    verdicts = feed(kernel, [frags[0], frags[0], frags[1], frags[2]])
    assert [v.reason for v in verdicts] == [DropReason.FRAG_PENDING, DropReason.DUP_FRAG,
                                            DropReason.FRAG_PENDING, None]
    assert verdicts[-1].delivered


def test_fragment_inside_a_run_is_a_duplicate_even_if_it_spans_two_fragments() -> None:
    # inet_frag_queue_insert compares with runs of contiguous fragments
    kernel = host_kernel()
    frags = fragment4(UDP4_OPEN, [16, 32])
    span = fragment4(UDP4_OPEN, [8, 24])[1]  # bytes 8..24, inside the run 0..32
    verdicts = feed(kernel, [frags[0], frags[1], span, frags[2]])
    assert [v.reason for v in verdicts[:3]] == [DropReason.FRAG_PENDING, DropReason.FRAG_PENDING,
                                                DropReason.DUP_FRAG]
    assert verdicts[3].delivered


@pytest.mark.parametrize("family", [4, 6])
def test_overlap_discards_the_whole_queue(family: int) -> None:
    kernel = host_kernel()
    datagram = UDP4_CLOSED if family == 4 else UDP6_CLOSED
    if family == 4:
        frags, other = fragment4(datagram, [16, 32]), fragment4(datagram, [8, 24])
    else:
        frags, other = fragment6(datagram, 5, [16, 32]), fragment6(datagram, 5, [8, 24])
    verdicts = feed(kernel, [frags[0], other[1], frags[1], frags[2]])
    assert verdicts[1].reason is DropReason.NOT_SPECIFIED and "overlaps" in verdicts[1].note
    # the rest starts a new queue that never gets its first fragment
    assert [v.reason for v in verdicts[2:]] == [DropReason.FRAG_PENDING] * 2
    assert all(not v.replies for v in verdicts)
    assert kernel.advance(T0 + 100) == []


@pytest.mark.parametrize("family", [4, 6])
def test_lone_non_first_fragment_never_produces_anything(family: int) -> None:
    kernel = host_kernel()
    frag = fragment4(UDP4_CLOSED, [16, 32])[2] if family == 4 else fragment6(UDP6_CLOSED, 3, [16, 32])[2]
    (verdict,) = feed(kernel, [frag])
    assert verdict.reason is DropReason.FRAG_PENDING and not verdict.replies
    assert kernel.advance(T0 + 3600) == []
    assert len(kernel.frags) == 0


@pytest.mark.parametrize(("family", "timeout"), [(4, 30), (6, 60)])
def test_timeout_with_the_first_fragment_sends_time_exceeded(family: int, timeout: int) -> None:
    kernel = host_kernel()
    if family == 4:
        first = fragment4(UDP4_CLOSED, [16, 32])[0]
    else:
        first = fragment6(UDP6_CLOSED, 3, [16, 32])[0]
    feed(kernel, [first])
    assert kernel.advance(T0 + timeout - 0.001) == []
    (reply,) = kernel.advance(T0 + timeout)
    if family == 4:
        assert reply[20:22] == b"\x0b\x01" and icmp_quote4(reply) == first
    else:
        assert reply[40:42] == b"\x03\x01" and reply[48:] == first
    (fired,) = kernel.drain_timer_output()
    assert fired.time == T0 + timeout and fired.packets == (reply,)
    assert kernel.stats["FRAG_REASM_TIMEOUT"] == 1


def test_sysctl_sets_the_timeout_and_later_fragments_do_not_extend_it() -> None:
    kernel = host_kernel({"net.ipv4.ipfrag_time": 1})
    frags = fragment4(UDP4_CLOSED, [16, 32])
    feed(kernel, [frags[0], frags[2]], gap=0.9)
    (reply,) = kernel.advance(T0 + 1.0)
    assert reply[20:22] == b"\x0b\x01"


def test_duplicate_after_completion_starts_a_new_queue() -> None:
    # the completed queue left the hash table: the copy opens a new one,
    # which times out with 11/1 (seen on Linux 6.18)
    kernel = host_kernel({"net.ipv4.ipfrag_time": 1})
    frags = fragment4(UDP4_CLOSED, [16, 32])
    verdicts = feed(kernel, [*frags, frags[0]])
    assert verdicts[2].reason is DropReason.NO_SOCKET
    assert verdicts[3].reason is DropReason.FRAG_PENDING
    (reply,) = kernel.advance(T0 + 2)
    assert icmp_quote4(reply) == frags[0]


def test_queue_key_includes_protocol_and_id() -> None:
    kernel = host_kernel()
    a = fragment4(UDP4_OPEN, [16, 32])
    other_id = bytearray(UDP4_OPEN)
    other_id[4:6] = b"\x00\x02"
    b = fragment4(bytes(other_id), [16, 32])
    verdicts = feed(kernel, [a[0], b[1], a[1], b[0], a[2], b[2]])
    assert [v.delivered for v in verdicts] == [False, False, False, False, True, True]


def test_last_fragment_disagreeing_with_known_length_discards() -> None:
    kernel = host_kernel()
    frags = fragment4(UDP4_OPEN, [16, 32])
    shorter = fragment4(UDP4_OPEN[:-8], [16, 24])[2]  # a last fragment ending at 40, not 48
    verdicts = feed(kernel, [frags[2], shorter])
    assert verdicts[1].reason is DropReason.NOT_SPECIFIED and "last fragment" in verdicts[1].note


def test_ipv4_non_last_fragment_is_cut_to_a_multiple_of_8() -> None:
    kernel = host_kernel()
    frags = fragment4(UDP4_OPEN, [16, 32])
    padded = bytearray(frags[0] + b"zzzz")  # 20 bytes with MF: only 16 count
    padded[2:4] = (len(padded)).to_bytes(2, "big")
    padded[10:12] = b"\0\0"
    padded[10:12] = checksum(bytes(padded[:20])).to_bytes(2, "big")
    verdicts = feed(kernel, [bytes(padded), frags[1], frags[2]])
    assert verdicts[-1].delivered


def test_ipv4_oversized_datagram_is_discarded() -> None:
    # 20 + 65620 bytes once rebuilt: ip_frag_reasm refuses it (ReasmFails)
    kernel = host_kernel()
    head = fragment4(UDP4_OPEN, [16])[0]
    middle = raw_fragment4(UDP4_OPEN, 16, b"x" * (65520 - 16), more=True)
    tail = raw_fragment4(UDP4_OPEN, 65520, b"x" * 100, more=False)
    verdicts = feed(kernel, [head, tail, middle])
    assert [v.reason for v in verdicts] == [DropReason.FRAG_PENDING, DropReason.FRAG_PENDING,
                                            DropReason.NOT_SPECIFIED]
    assert "oversized" in verdicts[2].note
    assert len(kernel.frags) == 0


def test_ipv6_non_last_fragment_not_multiple_of_8_gets_parameter_problem() -> None:
    kernel = host_kernel()
    frag = fragment6(UDP6_CLOSED, 18, [12, 32])[0]
    (verdict,) = feed(kernel, [frag])
    (reply,) = verdict.replies
    assert reply[40:42] == b"\x04\x00" and reply[44:48] == (4).to_bytes(4, "big") and reply[48:] == frag
    assert len(kernel.frags) == 0


def test_ipv6_first_fragment_without_the_tcp_header_gets_4_3() -> None:
    kernel = host_kernel()
    syn = segment("fd00::5", "fd00::1", 4000, 80, "S", options=b"\x02\x04\x05\xa0")
    first, rest = fragment6(syn, 14, [16])
    v1, v2 = feed(kernel, [first, rest])
    (reply,) = v1.replies
    assert reply[40:42] == b"\x04\x03" and reply[44:48] == bytes(4)
    assert v2.reason is DropReason.FRAG_PENDING and not v2.replies


def test_ipv6_fragment_past_65535_gets_parameter_problem_at_the_offset() -> None:
    kernel = host_kernel()
    frag = bytearray(fragment6(UDP6_CLOSED, 4, [16, 32])[1])
    frag[40 + 2:40 + 4] = (65528 | 1).to_bytes(2, "big")
    (verdict,) = feed(kernel, [bytes(frag)])
    (reply,) = verdict.replies
    assert reply[40:42] == b"\x04\x00" and reply[44:48] == (42).to_bytes(4, "big")


def test_tcp_syn_in_fragments_gets_a_synack() -> None:
    kernel = host_kernel()
    syn = segment("10.0.0.8", "10.0.0.1", 4000, 80, "S", options=b"\x02\x04\x05\xb4")
    verdicts = feed(kernel, fragment4(syn, [16]))
    (reply,) = verdicts[-1].replies
    assert reply[33] == 0x12  # SYN+ACK


def test_ecn_mix_discards_and_ce_is_carried() -> None:
    kernel = host_kernel()

    def marked(frag: bytes, ecn: int) -> bytes:
        b = bytearray(frag)
        b[1] = ecn
        b[10:12] = b"\0\0"
        b[10:12] = checksum(bytes(b[:20])).to_bytes(2, "big")
        return bytes(b)

    frags = fragment4(UDP4_CLOSED, [16, 32])
    mixed = feed(kernel, [marked(frags[0], 0), marked(frags[1], 2), frags[2]])
    assert mixed[-1].reason is DropReason.NOT_SPECIFIED and "ECN" in mixed[-1].note
    ce = feed(kernel, [marked(frags[0], 2), marked(frags[1], 3), marked(frags[2], 2)], start=T0 + 1)
    (reply,) = ce[-1].replies
    assert icmp_quote4(reply)[1] & 3 == 3


def test_ipfrag_max_dist_restarts_a_queue_left_behind() -> None:
    kernel = host_kernel({"net.ipv4.ipfrag_max_dist": 2})
    slow = fragment4(UDP4_OPEN, [16, 32])
    others = []
    for ident in (10, 11, 12):
        d = bytearray(UDP4_OPEN)
        d[4:6] = ident.to_bytes(2, "big")
        d[10:12] = b"\0\0"
        d[10:12] = checksum(bytes(d[:20])).to_bytes(2, "big")
        others.append(fragment4(bytes(d), [16, 32])[1])
    verdicts = feed(kernel, [slow[0], *others, slow[1], slow[2]])
    assert "FRAG_TOO_FAR" in verdicts[4].note
    assert verdicts[-1].reason is DropReason.FRAG_PENDING  # the first fragment was thrown away
    assert kernel.stats["FRAG_TOO_FAR"] == 1


def test_memory_threshold_refuses_fragments() -> None:
    kernel = host_kernel({"net.ipv4.ipfrag_high_thresh": 2000})
    frags = fragment4(UDP4_OPEN, [16, 32])
    firsts = []
    for ident in (20, 21, 22):
        d = bytearray(UDP4_OPEN)
        d[4:6] = ident.to_bytes(2, "big")
        d[10:12] = b"\0\0"
        d[10:12] = checksum(bytes(d[:20])).to_bytes(2, "big")
        firsts.append(fragment4(bytes(d), [16, 32])[0])
    verdicts = feed(kernel, [*firsts, *frags])
    assert verdicts[0].reason is DropReason.FRAG_PENDING
    assert verdicts[-1].reason is DropReason.NOT_SPECIFIED and "ipfrag_high_thresh" in verdicts[-1].note


# --------------------------------------------------------------------------- invariants

@st.composite
def cut_points(draw: st.DrawFn, length: int) -> list[int]:
    points = draw(st.sets(st.integers(1, (length - 1) // 8), min_size=1, max_size=6))
    return sorted(p * 8 for p in points)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), family=st.sampled_from([4, 6]), size=st.integers(9, 300))
def test_any_order_of_non_overlapping_fragments_rebuilds_the_datagram(data: st.DataObject, family: int,
                                                                       size: int) -> None:
    payload = bytes(range(256)) * 2
    if family == 4:
        datagram = udp4("10.0.0.2", "10.0.0.1", 4000, 9, payload[:size])
    else:
        datagram = udp6("fd00::2", "fd00::1", 4000, 9, payload[:size])
    header = 20 if family == 4 else 40
    cuts = data.draw(cut_points(len(datagram) - header))
    frags = fragment4(datagram, cuts) if family == 4 else fragment6(datagram, 77, cuts)
    order = data.draw(st.permutations(range(len(frags))))
    kernel = host_kernel()
    verdicts = feed(kernel, [frags[i] for i in order])
    assert all(v.reason is DropReason.FRAG_PENDING for v in verdicts[:-1])
    (reply,) = verdicts[-1].replies
    quote = icmp_quote4(reply) if family == 4 else reply[48:]
    assert quote == datagram[:len(quote)] and len(quote) >= min(len(datagram), 500)
    assert len(kernel.frags) == 0 and kernel.frags.mem == {4: 0, 6: 0}


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 7), st.integers(1, 4), st.booleans()), min_size=1, max_size=12))
def test_queue_memory_is_returned_whatever_arrives(ops: list[tuple[int, int, bool]]) -> None:
    kernel = host_kernel()
    body = UDP4_OPEN[20:] + bytes(16)
    for i, (start, count, more) in enumerate(ops):
        header = bytearray(UDP4_OPEN[:20])
        data = body[start * 8:(start + count) * 8]
        struct.pack_into("!HH", header, 2, 20 + len(data), 0)
        struct.pack_into("!H", header, 6, (0x2000 if more else 0) | start)
        header[10:12] = b"\0\0"
        header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
        kernel.receive(bytes(header) + data, T0 + i * 0.01, DEVICE)
    kernel.advance(T0 + 31)
    assert len(kernel.frags) == 0 and kernel.frags.mem == {4: 0, 6: 0}
