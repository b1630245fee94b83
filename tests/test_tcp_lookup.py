"""Listener selection (spec §2, vectors S01–S10): two-pass bucket search,
compute_score, dual stack, V6ONLY, SO_BINDTODEVICE and SO_REUSEPORT."""

from __future__ import annotations

import pytest
from tcp_helpers import T0, listen, make_kernel, segment, tcp_header

from pktdemux.sockets import TcpState
from pktdemux.tcp_segment import ACK, RST, SYN

PEER = "10.0.0.2"


def syn_to(kernel, dst: str, port: int, sport: int = 40000, device: str = "tun0"):  # type: ignore[no-untyped-def]
    return kernel.receive(segment(PEER, dst, sport, port, "S", 1000), T0, device)


# (id, listeners in listen() order as (address, options), destination, index of the expected listener or None)
LOOKUP_CASES = [
    ("S01", [("0.0.0.0", {"reuseport": True}), ("10.0.0.1", {"reuseport": True})], "10.0.0.1", 1),
    ("S01-reversed", [("10.0.0.1", {"reuseport": True}), ("0.0.0.0", {"reuseport": True})], "10.0.0.1", 0),
    ("S02", [("0.0.0.0", {"reuseport": True}), ("10.0.0.1", {"reuseport": True})], "10.0.0.3", 0),
    ("S03", [("::", {})], "10.0.0.1", 0),
    ("S04", [("::", {"v6only": True})], "10.0.0.1", None),
    ("S05", [("::", {"reuseport": True}), ("0.0.0.0", {"reuseport": True})], "10.0.0.1", 1),
    ("S05-reversed", [("0.0.0.0", {"reuseport": True}), ("::", {"reuseport": True})], "10.0.0.1", 0),
    ("S06", [("0.0.0.0", {"reuseport": True}), ("::ffff:10.0.0.1", {"reuseport": True})], "10.0.0.1", 1),
    ("S07", [("0.0.0.0", {"device": "tun0"}), ("0.0.0.0", {"device": "lo"})], "10.0.0.1", 0),
    ("S07-reversed", [("0.0.0.0", {"device": "lo"}), ("0.0.0.0", {"device": "tun0"})], "10.0.0.1", 1),
    ("S08", [("0.0.0.0", {"device": "lo"})], "10.0.0.1", None),
    ("S09", [("0.0.0.0", {"reuseport": True, "device": "tun0"}), ("0.0.0.0", {"reuseport": True})], "10.0.0.1", 1),
    ("S09-reversed", [("0.0.0.0", {"reuseport": True}), ("0.0.0.0", {"reuseport": True, "device": "tun0"})],
     "10.0.0.1", 1),
    ("exact-beats-wildcard-af-inet", [("10.0.0.1", {}), ("0.0.0.0", {})], "10.0.0.1", 0),
    ("af-inet-beats-dual-stack", [("0.0.0.0", {}), ("::", {})], "10.0.0.1", 0),
    ("equal-scores-first-in-bucket", [("0.0.0.0", {"reuseaddr": True}), ("0.0.0.0", {"reuseaddr": True})],
     "10.0.0.1", 1),
]


@pytest.mark.parametrize(("case", "listeners", "dst", "expected"), LOOKUP_CASES, ids=[c[0] for c in LOOKUP_CASES])
def test_listener_selection(case: str, listeners, dst: str, expected: int | None) -> None:  # type: ignore[no-untyped-def]
    kernel = make_kernel()
    socks = [listen(kernel, addr, 100, **opts) for addr, opts in listeners]
    verdict = syn_to(kernel, dst, 100)
    if expected is None:
        assert not verdict.delivered and verdict.reason is not None and verdict.reason.name == "NO_SOCKET"
        assert tcp_header(verdict.replies[0])[4] == RST | ACK
    else:
        assert verdict.sockets == (socks[expected],), verdict.note
        assert tcp_header(verdict.replies[0])[4] == SYN | ACK


def test_dual_stack_request_sees_v4_mapped_peer_and_answers_in_ipv4() -> None:
    """S03: the IPv6 listener's request has peer ::ffff:10.0.0.2; the SYN-ACK is IPv4 with MSS 1460 only."""
    kernel = make_kernel()
    listen(kernel, "::", 102)
    verdict = syn_to(kernel, "10.0.0.1", 102)
    reply = verdict.replies[0]
    assert reply[0] >> 4 == 4 and reply[40:44] == bytes.fromhex("020405b4")
    (req,) = kernel.tcp.established.values()
    assert req.state is TcpState.SYN_RECV and req.remote_addr == bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 2])


def test_syn_ack_source_is_the_address_the_syn_went_to() -> None:
    """S02: answered from 10.0.0.3, the secondary address."""
    kernel = make_kernel()
    listen(kernel, "0.0.0.0", 100)
    reply = syn_to(kernel, "10.0.0.3", 100).replies[0]
    assert reply[12:16] == bytes([10, 0, 0, 3])


def test_ipv6_packet_never_reaches_an_ipv4_listener() -> None:
    kernel = make_kernel()
    listen(kernel, "0.0.0.0", 100)
    verdict = kernel.receive(segment("fd00::2", "fd00::1", 40000, 100, "S"), T0, "tun0")
    assert verdict.reason is not None and verdict.reason.name == "NO_SOCKET"


def reuseport_owner(kernel, socks, sport: int) -> int:  # type: ignore[no-untyped-def]
    verdict = syn_to(kernel, "10.0.0.1", 130, sport=sport)
    return socks.index(verdict.sockets[0])


def test_reuseport_split_is_sticky_and_monotonic() -> None:
    """S10: the same flow always picks the same member; with 4 members the index
    halves to the 2-member index ((hash × n) >> 32 over an insertion-ordered array)."""
    two = make_kernel(seed=7)
    socks2 = [listen(two, "0.0.0.0", 130, reuseport=True) for _ in range(2)]
    four = make_kernel(seed=7)
    socks4 = [listen(four, "0.0.0.0", 130, reuseport=True) for _ in range(4)]
    flows = range(52000, 52200)
    idx2 = [reuseport_owner(two, socks2, sport) for sport in flows]
    idx4 = [reuseport_owner(four, socks4, sport) for sport in flows]
    assert all(i4 // 2 == i2 for i2, i4 in zip(idx2, idx4))
    assert 60 < idx2.count(0) < 140
    assert set(idx4) == {0, 1, 2, 3}


def test_unlisten_removes_the_listener_and_its_requests() -> None:
    kernel = make_kernel()
    sock = listen(kernel, "10.0.0.1", 80)
    syn_to(kernel, "10.0.0.1", 80)
    kernel.tcp.unlisten(sock)
    assert kernel.tcp.established == {}
    assert syn_to(kernel, "10.0.0.1", 80, sport=40001).reason.name == "NO_SOCKET"  # type: ignore[union-attr]
