"""ICMP rate limiting compared with Linux (spec §5.4): bursts of datagrams to
closed ports on the kernel's timeline, one source and many, IPv4 and IPv6,
and the sysctls that switch the limits off.

Every datagram is unique (its payload carries its index), so each ICMP
error is tied to the datagram it quotes (:func:`lifecycle_support.answered`)
and both sides are compared on *which* datagrams were answered, not only
how many; each reply is also compared byte for byte (random fields masked)
with the reply a fresh host gives that datagram.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from ip_vectors import icmp4, icmp6, udp4, udp6
from kernel_support import Case, host_toml, summary
from lifecycle_support import answered, reference_replies, run_timeline

from pktdemux.wire import build_ipv4, parse_addr

LOCAL4, LOCAL6 = "10.0.0.1", "fd00::1"
DEVICE = "tun0"
#: Seconds between the datagrams of a burst.
BURST_GAP = 0.0002


def closed4(src: str, tag: str) -> bytes:
    return udp4(src, LOCAL4, 4000, 9, tag.encode())


def closed6(src: str, tag: str) -> bytes:
    return udp6(src, LOCAL6, 4000, 9, tag.encode())


def unknown_protocol4(src: str, tag: str) -> bytes:
    return build_ipv4(src=parse_addr(src), dst=parse_addr(LOCAL4), proto=253, payload=tag.encode(), ident=1)


def echo4(src: str, seq: int) -> bytes:
    return icmp4(src, LOCAL4, 8, rest=b"\x00\x77" + seq.to_bytes(2, "big"), data=b"ping")


def echo6(src: str, seq: int) -> bytes:
    return icmp6(src, LOCAL6, 128, rest=b"\x00\x77" + seq.to_bytes(2, "big"), data=b"ping")


def burst(case: Case, packets: list[bytes], *, after: float, label: str) -> range:
    """Append ``packets`` :data:`BURST_GAP` apart, the first ``after``
    seconds after the previous packet; returns their indices."""
    start = len(case.packets)
    for j, packet in enumerate(packets):
        case.add(packet, gap=after if j == 0 else BURST_GAP, label=f"{label} #{j}")
    return range(start, len(case.packets))


def answered_by_both(case: Case, oracle: Callable[..., Any]) -> tuple[set[int], set[int], Any]:
    """Run ``case``; the indices of the packets Linux answered and those the
    emulation answered.  Fails when a reply of either side is not the reply
    a fresh host gives the packet it answers."""
    run = run_timeline(oracle, case)
    refs = reference_replies(case.host, [p.packet for p in run.oracle.packets], DEVICE)
    kernel, kernel_strays = answered([p for _, p in run.all_kernel()], refs)
    emulated, emulated_strays = answered([p for _, p in run.all_emulated()], refs)
    strays = [f"kernel: {summary(p)} {p.hex()}" for p in kernel_strays]
    strays += [f"emulation: {summary(p)} {p.hex()}" for p in emulated_strays]
    assert not strays, "replies that answer no packet as a fresh host would:\n" + "\n".join(strays)
    assert len(set(kernel)) == len(kernel) and len(set(emulated)) == len(emulated), "a packet answered twice"
    return set(kernel), set(emulated), run


def describe(case: Case, indices: set[int]) -> list[str]:
    return [case.labels[i] for i in sorted(indices)]


# --------------------------------------------------------------------------- one source

@pytest.mark.kernel
def test_one_source_bursts_on_the_kernel_timeline(kernel_oracle: Callable[..., Any]) -> None:
    """Per-destination buckets: 6 at once, then one token per icmp_ratelimit
    (IPv4 1000 ms, IPv6 100 ms, capped at 6); protocol unreachable shares
    the port-unreachable bucket; echo replies are never limited."""
    case = Case("one source", host_toml([]), settle=0.1)
    mixed = []
    for j in range(30):
        mixed.append(closed4("10.0.0.2", f"v4a-{j}"))
        if j % 3 == 0:
            mixed.append(echo4("10.0.0.2", j))
    v4a = burst(case, mixed, after=0.0, label="v4 burst + echo")
    shared = burst(case, [unknown_protocol4("10.0.0.3", f"p{j}") if j % 2 else closed4("10.0.0.3", f"u{j}")
                          for j in range(20)], after=0.01, label="udp/proto 253")
    v6a = burst(case, [closed6("fd00::2", f"v6a-{j}") for j in range(30)] + [echo6("fd00::2", j) for j in range(5)],
                after=0.04, label="v6 burst + echo")
    v6b = burst(case, [closed6("fd00::2", f"v6b-{j}") for j in range(20)], after=0.55, label="v6 +0.55 s")
    v4b = burst(case, [closed4("10.0.0.2", f"v4b-{j}") for j in range(20)], after=1.0, label="v4 +1.6 s")
    v6c = burst(case, [closed6("fd00::2", f"v6c-{j}") for j in range(20)], after=0.01, label="v6 +1.05 s")
    kernel, emulated, run = answered_by_both(case, kernel_oracle)

    udp_a = [i for i in v4a if run.oracle.packets[i].packet[9] == 17]
    echoes = [i for i in v4a if run.oracle.packets[i].packet[9] == 1] + [i for i in v6a if run.oracle.packets[i].packet[6] == 58]
    expected = (set(udp_a[:6]) | set(echoes) | set(shared[:6]) | set(v6a[:6]) | set(v6b[:5]) | set(v4b[:1])
                | set(v6c[:6]))
    assert kernel == expected, f"Linux did not behave as spec §5.4 says: {describe(case, kernel ^ expected)}"
    assert emulated == kernel, (f"only Linux answered {describe(case, kernel - emulated)}; "
                                f"only the emulation answered {describe(case, emulated - kernel)}")


# --------------------------------------------------------------------------- the global bucket

def many_sources(case: Case, v4: int, v6: int = 0, *, first: int = 0, after: float = 0.0) -> range:
    """One datagram from each of ``v4`` + ``v6`` new sources (numbered from
    ``first``), written back to back ``after`` seconds after the previous
    packet (about 2 ms in all, well within the global bucket's 20 ms)."""
    start = len(case.packets)
    packets = [closed4(str(ipaddress.ip_address("10.0.0.10") + first + j), f"g{first + j}") for j in range(v4)]
    packets += [closed6(f"fd00::{0x100 + first + j:x}", f"g6-{first + j}") for j in range(v6)]
    for j, packet in enumerate(packets):
        case.add(packet, gap=after if j == 0 else 0.0, label=f"source #{first + j}")
    return range(start, len(case.packets))


@pytest.mark.kernel
def test_many_sources_share_the_global_bucket(kernel_oracle: Callable[..., Any]) -> None:
    """120 sources within ~2 ms: the global bucket (burst 50, each message
    takes a random 0-2 credits) answers the first N datagrams and no later
    one, N around 50 on both sides (the draws differ, so N may too).  0.2 s
    later the bucket is full again (1000 credits a second, capped at 50):
    120 new sources, the same again."""
    case = Case("many sources", host_toml([]), settle=0.05)
    waves = [many_sources(case, 120), many_sources(case, 120, first=120, after=0.2)]
    kernel, emulated, _ = answered_by_both(case, kernel_oracle)
    for side, got in (("Linux", kernel), ("emulation", emulated)):
        for wave in waves:
            n = len(got & set(wave))
            assert got & set(wave) == set(wave[:n]), f"{side} answered a later datagram after refusing an earlier one"
            # N messages take about N of 50 credits: N < 25 or N > 100 would be 6 sigma away
            assert 25 <= n <= 100, f"{side} answered {n} of 120"


@pytest.mark.kernel
def test_many_sources_with_a_large_global_burst(kernel_oracle: Callable[..., Any]) -> None:
    """With icmp_msgs_burst and icmp_msgs_per_sec at 10000 the global
    bucket never runs dry: every source, IPv4 and IPv6, gets its error."""
    case = Case("large global burst",
                host_toml([], sysctls={"net.ipv4.icmp_msgs_burst": 10000, "net.ipv4.icmp_msgs_per_sec": 10000}),
                settle=0.05)
    sent = many_sources(case, 120, 60)
    kernel, emulated, _ = answered_by_both(case, kernel_oracle)
    assert kernel == set(sent)
    assert emulated == kernel, f"only Linux answered {describe(case, kernel - emulated)}"


# --------------------------------------------------------------------------- limits switched off

@pytest.mark.kernel
@pytest.mark.parametrize("sysctl, family", [
    ("net.ipv4.icmp_ratelimit", 4), ("net.ipv4.icmp_ratemask", 4), ("net.ipv6.icmp.ratelimit", 6),
], ids=["icmp_ratelimit=0", "icmp_ratemask=0", "ipv6 ratelimit=0"])
def test_limits_switched_off(kernel_oracle: Callable[..., Any], sysctl: str, family: int) -> None:
    """30 datagrams from one source, the per-destination limit off: 30
    errors (30 messages take at most 60 global credits of 50 and average
    30, so the global bucket does not decide either)."""
    case = Case(f"{sysctl}=0", host_toml([], sysctls={sysctl: 0}), settle=0.05)
    build = closed4 if family == 4 else closed6
    sent = burst(case, [build("10.0.0.2" if family == 4 else "fd00::2", f"off-{j}") for j in range(30)],
                 after=0.0, label=sysctl)
    kernel, emulated, _ = answered_by_both(case, kernel_oracle)
    assert kernel == set(sent)
    assert emulated == kernel, f"only Linux answered {describe(case, kernel - emulated)}"
