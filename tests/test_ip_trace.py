"""Kernel.trace on the IP side: a traced receive explains each step with its
source; an untraced one carries no steps and pays nothing."""

from __future__ import annotations

import pytest
from ip_vectors import a, icmp4, icmp6, make_kernel, udp4, udp6

from pktdemux.sockets import Proto, Socket
from pktdemux.wire import build_ipv4


def _kernel_with_dns():
    kernel = make_kernel()
    for addr, family in (("0.0.0.0", 4), ("::", 6)):
        sock = Socket(Proto.UDP, family, a(addr), 53, name=f"dns{family}", v6only=family == 6)
        kernel.udp.insert(sock)
        kernel.sockets.append(sock)
    return kernel


# id, packet, device, words each expected in some step, in order
CASES = [
    ("udp4-delivered", udp4("10.0.0.2", "10.0.0.1", 5000, 53), None,
     ["IPv4 header ok", "is a local destination", "protocol 17 (UDP)", "checksum ok",
      "bucket 10.0.0.1:53: 0 socket(s)", "bucket 0.0.0.0:53: 2 socket(s)", "candidate dns6: no match", "candidate dns4: score 2", "winner: dns4"]),
    ("udp6-delivered", udp6("fd00::2", "fd00::1", 5000, 53), None,
     ["IPv6 header ok", "is a local destination", "next header 17 (UDP)", "winner: dns6"]),
    ("udp4-port-unreachable", udp4("10.0.0.2", "10.0.0.1", 5000, 9), None,
     ["no socket matched", "ICMP 3/3 sent to 10.0.0.2"]),
    ("udp4-broadcast-no-icmp", udp4("10.0.0.2", "10.0.0.255", 5000, 9), None,
     ["is a broadcast destination", "broadcast fan-out on port 9: 0 socket(s)"]),
    ("udp-bad-checksum-on-lo", udp4("127.0.0.1", "127.0.0.1", 5000, 53, csum=0x1234), "lo",
     ["checksum not verified on lo", "winner: dns4"]),
    ("ip-checksum", bytes(udp4("10.0.0.2", "10.0.0.1", 5000, 53)[:10]) + b"\0\0"
     + udp4("10.0.0.2", "10.0.0.1", 5000, 53)[12:], None,
     ["IPv4 header check failed: bad IPv4 header checksum: drop IP_CSUM"]),
    ("not-local", udp4("10.0.0.2", "10.0.0.99", 5000, 53), None,
     ["input route: destination is not a local address", "drop IP_INADDRERRORS"]),
    ("echo", icmp4("10.0.0.2", "10.0.0.1", 8), None, ["protocol 1 (ICMP)", "ICMP type 8 code 0"]),
    ("echo6", icmp6("fd00::2", "fd00::1", 128), None, ["next header 58 (ICMPv6)", "ICMPv6 type 128 code 0"]),
    ("protocol-unreachable", build_ipv4(src=a("10.0.0.2"), dst=a("10.0.0.1"), proto=99, payload=bytes(8)), None,
     ["protocol 99 (no handler)", "ICMP 3/2 sent to 10.0.0.2"]),
]


@pytest.mark.parametrize("packet,device,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_traced_receive_explains_each_step(packet: bytes, device: str | None, words: list[str]) -> None:
    kernel = _kernel_with_dns()
    kernel.trace = []
    verdict = kernel.receive(packet, 1.0, device)
    assert verdict.steps, "a traced receive returns its steps"
    assert all(step.endswith(")") for step in verdict.steps), "every step names its source"
    position = 0
    for word in words:
        hits = [i for i, step in enumerate(verdict.steps) if word in step and i >= position]
        assert hits, f"{word!r} not in {verdict.steps}"
        position = hits[0]


@pytest.mark.parametrize("packet", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_untraced_receive_has_no_steps(packet: bytes) -> None:
    kernel = _kernel_with_dns()
    verdict = kernel.receive(packet, 1.0)
    assert verdict.steps == ()
    assert kernel.trace is None


def test_reuseport_pick_is_traced() -> None:
    kernel = make_kernel()
    for i in range(3):
        sock = Socket(Proto.UDP, 4, a("0.0.0.0"), 53, name=f"worker{i}", reuseport=True)
        kernel.udp.insert(sock)
        kernel.sockets.append(sock)
    kernel.trace = []
    verdict = kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 53), 1.0)
    (picked,) = verdict.sockets
    assert any(f"SO_REUSEPORT group of 3: the flow hash picks {picked.display_name}" in s for s in verdict.steps)


def test_rate_limited_icmp_error_says_why() -> None:
    kernel = make_kernel({"net.ipv4.icmp_ratelimit": 1000, "net.ipv4.icmp_ratemask": 0x1818})
    kernel.trace = []
    sent = [kernel.receive(udp4("10.0.0.2", "10.0.0.1", 5000, 9), 1.0 + i * 0.001) for i in range(8)]
    assert any(v.replies for v in sent) and not sent[-1].replies
    assert any("per-destination rate limit" in step for step in sent[-1].steps)
