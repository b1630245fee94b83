"""Fragment reassembly compared with Linux (pktdemux.oracle): the same
fragments at the same offsets, and every packet the kernel sends on the
same timeline, the reassembly timeout's ICMP included (ipfrag_time=1 and
ip6frag_time=1 keep the wall time short).

The timeline helpers here are shared with tests/test_timers_kernel.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from ip_vectors import udp4, udp6
from kernel_support import host_toml, summary
from tcp_helpers import segment
from test_fragments import SOCKETS, fragment4, fragment6

from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.matching import first_difference, mask_random_fields
from pktdemux.oracle import HostSetup, Injection, Scenario

T0 = 1_700_000_000.0
#: How far apart (seconds) the kernel's and the emulation's times of one
#: packet may be: the kernel's timer wheel fires a 1 s timer up to 64 ms
#: late, and the oracle stamps a packet when it reads it.
TIME_SLACK = 0.4

Event = tuple[float, bytes]


def emulate_timeline(host: str, packets: Sequence[tuple[float, bytes]], end: float) -> list[Event]:
    """Every packet the emulation sends, with its time after the first
    injection: replies at their packet's time, timer output at the timer's."""
    kernel = build_kernel(parse_host(host, "<timeline>"), seed=0)
    device = HostSetup.from_toml(host).interface
    events: list[Event] = []

    def drain() -> None:
        events.extend((f.time - T0, p) for f in kernel.drain_timer_output() for p in f.packets)

    for offset, packet in packets:
        verdict = kernel.receive(packet, T0 + offset, device)
        drain()
        events.extend((offset, r) for r in verdict.replies)
    kernel.advance(T0 + end)
    drain()
    return events


def kernel_timeline(oracle: Callable[..., Any], host: str, packets: Sequence[tuple[float, bytes]],
                    settle: float) -> tuple[list[Event], Any]:
    """Every packet Linux sent, with its time after the first injection."""
    scenario = Scenario(HostSetup.from_toml(host), tuple(Injection(o, p) for o, p in packets), settle=settle)
    result = oracle(scenario)
    return [(r.at, r.packet) for p in result.packets for r in p.replies], result


def timeline_differences(kernel: list[Event], emulated: list[Event]) -> list[str]:
    """Disagreements: each kernel packet is paired with an emulated packet
    equal to it (random fields masked) sent within :data:`TIME_SLACK`
    seconds; packets sent close together may come in either order."""
    left = list(emulated)
    notes = []
    for tk, k in kernel:
        masked = mask_random_fields(k)
        match = next((i for i, (te, e) in enumerate(left)
                      if abs(te - tk) <= TIME_SLACK and mask_random_fields(e) == masked), None)
        if match is not None:
            del left[match]
            continue
        near = min(left, key=lambda ev: abs(ev[0] - tk), default=None)
        why = f" (nearest: {near[0]:.3f} {summary(near[1])}: {first_difference(k, near[1])})" if near else ""
        notes.append(f"only the kernel at {tk:.3f}: {summary(k)}{why}")
    notes += [f"only the emulation at {te:.3f}: {summary(e)}" for te, e in left]
    return notes


def assert_same_timeline(oracle: Callable[..., Any], host: str, packets: list[tuple[float, bytes]],
                         settle: float) -> tuple[list[Event], list[Event], Any]:
    kernel, result = kernel_timeline(oracle, host, packets, settle)
    emulated = emulate_timeline(host, packets, packets[-1][0] + settle)
    notes = timeline_differences(kernel, emulated)
    if notes:
        pytest.fail(f"{len(notes)} disagreement(s) with Linux:\n" + "\n".join(notes), pytrace=False)
    return kernel, emulated, result


def spaced(groups: list[list[bytes]], gap: float = 0.01) -> list[tuple[float, bytes]]:
    flat = [p for g in groups for p in g]
    return [(i * gap, p) for i, p in enumerate(flat)]


def _with_id(datagram: bytes, ident: int) -> bytes:
    from pktdemux.wire import checksum

    b = bytearray(datagram)
    b[4:6] = ident.to_bytes(2, "big")
    b[10:12] = b"\0\0"
    b[10:12] = checksum(bytes(b[:20])).to_bytes(2, "big")
    return bytes(b)


def ipv4_groups() -> list[list[bytes]]:
    """One sub-case per peer address, so that ICMP rate limits stay apart."""
    def u(peer: int, port: int) -> bytes:
        return _with_id(udp4(f"10.0.0.{peer}", "10.0.0.1", 4000, port, b"A" * 40), peer)

    closed, opened = fragment4(u(2, 9), [16, 32]), fragment4(u(3, 7), [16, 32])
    overlap = fragment4(u(4, 9), [16, 32])
    dup, first_only = fragment4(u(5, 9), [16, 32]), fragment4(u(6, 9), [16, 32])
    again, middle = fragment4(u(7, 9), [16, 32]), fragment4(u(9, 9), [16, 32])
    syn = _with_id(segment("10.0.0.8", "10.0.0.1", 4000, 80, "S", options=b"\x02\x04\x05\xb4"), 8)
    return [
        closed,                                                     # in order, closed port: 3/3
        opened[::-1],                                               # reversed, open port: delivered
        [overlap[0], fragment4(u(4, 9), [8, 24])[1], *overlap[1:]],  # overlap: nothing, ever
        [dup[0], dup[0], dup[1], dup[2]],                           # duplicate ignored: 3/3
        first_only[:1],                                             # 11/1 after ipfrag_time
        [*again, again[0]],                                         # 3/3, then a new queue: 11/1
        fragment4(syn, [16]),                                       # SYN-ACK
        [middle[0], middle[2]],                                     # missing middle: 11/1
        fragment4(u(10, 9), [16, 32])[2:],                          # lone last fragment: nothing
    ]


def ipv6_groups() -> list[list[bytes]]:
    def u(peer: int, port: int) -> bytes:
        return udp6(f"fd00::{peer:x}", "fd00::1", 4000, port, b"B" * 40)

    closed, opened = fragment6(u(2, 9), 2, [16, 32]), fragment6(u(3, 7), 3, [16, 32])
    overlap = fragment6(u(4, 9), 4, [16, 32])
    dup, first_only = fragment6(u(5, 9), 5, [16, 32]), fragment6(u(6, 9), 6, [16, 32])
    middle = fragment6(u(9, 9), 9, [16, 32])
    syn = segment("fd00::8", "fd00::1", 4000, 80, "S", options=b"\x02\x04\x05\xa0")
    short_syn = segment("fd00::b", "fd00::1", 4000, 80, "S", options=b"\x02\x04\x05\xa0")
    return [
        closed,
        opened[::-1],
        [overlap[0], fragment6(u(4, 9), 4, [8, 24])[1], *overlap[1:]],
        [dup[0], dup[0], dup[1], dup[2]],
        first_only[:1],                                             # ICMPv6 3/1 after ip6frag_time
        fragment6(syn, 8, [24]),                                    # SYN-ACK
        [middle[0], middle[2]],
        fragment6(u(10, 9), 10, [16, 32])[2:],
        fragment6(u(12, 9), 12, [12, 32])[:1],                      # not a multiple of 8: 4/0 pointer 4
        fragment6(short_syn, 11, [16]),                             # TCP header cut: 4/3 pointer 0
    ]


HOST = host_toml(SOCKETS, sysctls={"net.ipv4.ipfrag_time": 1, "net.ipv6.ip6frag_time": 1})


@pytest.mark.kernel
@pytest.mark.parametrize("groups", [ipv4_groups, ipv6_groups], ids=["ipv4", "ipv6"])
def test_fragments_on_the_kernel_timeline(kernel_oracle: Callable[..., Any], groups: Callable[[], list]) -> None:
    packets = spaced(groups())
    kernel, _emulated, result = assert_same_timeline(kernel_oracle, HOST, packets, settle=1.6)
    # the errors, the SYN-ACK and the timeouts were all there
    assert len(kernel) >= 5
    delivered = [d for s in result.sockets for d in s.datagrams]
    assert len(delivered) == 1 and delivered[0].payload in (b"A" * 40, b"B" * 40)
