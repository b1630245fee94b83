"""Whatever comes in, the emulation answers with a verdict, never an exception.

* ``Kernel.receive`` on random bytes and on mutated valid packets (IPv4 and
  IPv6 carrying TCP, UDP, ICMP/ICMPv6, built with Scapy, then bytes flipped,
  cut off or appended) returns a :class:`Verdict`, and every reply in it is a
  well-formed IP packet: consistent lengths, valid header and transport
  checksums, addressed back to where packets come from.
* Replaying every capture in pcaps/ and in ../shared/pcaps (when present)
  raises nothing but :class:`CaptureError`, and raises it for exactly the
  damaged files.
"""

from __future__ import annotations

import itertools
import pathlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pktdemux.dropreason import DropReason
from pktdemux.errors import CaptureError
from pktdemux.verdict import Verdict
from pktdemux.wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    checksum,
    transport_checksum_ok,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"
SHARED_PCAPS = ROOT.parent / "shared" / "pcaps"

HOST4 = bytes((10, 0, 0, 1))
HOST6 = bytes.fromhex("fd000000000000000000000000000001")

#: Captures whose container is damaged or unsupported: reading them stops
#: with CaptureError (after the complete records, if any).
DAMAGED = {
    "cutoff_dns.pcap",                  # ends inside a record header
    "bad_caplen_null_ns.pcap",          # record runs past the end of the file
    "pcap_bad_version.pcap",            # pcap major version 1
    "pcapng_bad_version.pcapng",        # SHB major version 0
    "pcapng_shb_opt_too_long.pcapng",   # SHB option past the block
    "pcap_kuznetzov.pcap",              # modified-pcap magic a1b2cd34
    "pcapng_spb_bad_blocklen.pcapng",   # block length not a multiple of 4
}


# --------------------------------------------------------------------------
# the kernel under test


def bench_kernel():  # type: ignore[no-untyped-def]
    """A kernel with listeners and UDP sockets in both families (pcaps/bench.toml)."""
    from pktdemux.hostfile import build_kernel, load_host

    return build_kernel(load_host(PCAPS / "bench.toml"), seed=1)


_clock = itertools.count()


def receive(kernel, packet: bytes) -> Verdict:  # type: ignore[no-untyped-def]
    """Kernel.receive at a strictly later time than the call before (ms steps)."""
    return kernel.receive(packet, now=1_767_225_600 + next(_clock) / 1000)


def assert_well_formed(reply: bytes) -> None:
    """One IPv4/IPv6 packet with consistent lengths and valid checksums,
    sent from one of the host's addresses."""
    assert isinstance(reply, bytes) and len(reply) >= 20
    version = reply[0] >> 4
    if version == 4:
        ihl = (reply[0] & 0x0F) * 4
        assert 20 <= ihl <= len(reply)
        assert struct.unpack_from("!H", reply, 2)[0] == len(reply)
        assert checksum(reply[:ihl]) == 0, "IPv4 header checksum"
        assert reply[8] > 0, "TTL"
        proto, src, dst, l4 = reply[9], reply[12:16], reply[16:20], reply[ihl:]
        assert src != bytes(4) and src[0] != 0xFF and not 224 <= src[0] <= 239
    else:
        assert version == 6 and len(reply) >= 40
        assert struct.unpack_from("!H", reply, 4)[0] == len(reply) - 40
        assert reply[7] > 0, "hop limit"
        proto, src, dst, l4 = reply[6], reply[8:24], reply[24:40], reply[40:]
        assert src != bytes(16) and src[0] != 0xFF
    if proto == PROTO_TCP:
        assert len(l4) >= 20 and 20 <= (l4[12] >> 4) * 4 <= len(l4)
        assert transport_checksum_ok(src, dst, proto, l4), "TCP checksum"
    elif proto == PROTO_UDP:
        assert len(l4) >= 8 and struct.unpack_from("!H", l4, 4)[0] == len(l4)
        assert transport_checksum_ok(src, dst, proto, l4), "UDP checksum"
    elif proto == PROTO_ICMP:
        assert len(l4) >= 8 and checksum(l4) == 0, "ICMP checksum"
    elif proto == PROTO_ICMPV6:
        assert len(l4) >= 8 and transport_checksum_ok(src, dst, proto, l4), "ICMPv6 checksum"
        assert len(reply) <= 1280 or l4[0] >= 128, "ICMPv6 error over the minimum MTU"
    else:
        pytest.fail(f"reply with IP protocol {proto}")


def assert_verdict(verdict: object) -> None:
    assert isinstance(verdict, Verdict)
    assert verdict.delivered == (verdict.reason is None)
    if not verdict.delivered:
        assert isinstance(verdict.reason, DropReason)
    else:
        assert verdict.sockets or verdict.handler, "a delivery names who took the packet"
    for reply in verdict.replies:
        assert_well_formed(reply)


# --------------------------------------------------------------------------
# valid packets to mutate


def _base_packets() -> list[bytes]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

    opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    v4 = dict(src="10.0.0.2", dst="10.0.0.1", id=1, ttl=64)
    v6 = dict(src="fd00::2", dst="fd00::1", hlim=64)
    pkts = []
    for l3 in (IP(**v4), IPv6(**v6)):
        pkts += [
            l3 / TCP(sport=40000, dport=80, flags="S", seq=100, options=opts),       # to a listener
            l3 / TCP(sport=40000, dport=81, flags="S", seq=100),                     # to a closed port
            l3 / TCP(sport=40000, dport=80, flags="A", seq=101, ack=5) / b"data",
            l3 / TCP(sport=40000, dport=443, flags="FPA", seq=1, ack=1) / b"x",
            l3 / UDP(sport=5000, dport=53) / (b"\x12\x34" + bytes(10)),                # open UDP
            l3 / UDP(sport=5000, dport=9999) / b"probe",                             # closed UDP
        ]
    pkts += [
        IP(**v4) / ICMP(type=8, id=7, seq=1) / b"ping",
        IP(**v4, options=b"\x07\x07\x04" + bytes(4) + b"\x00") / ICMP(type=8) / b"rr",
        IP(src="10.0.0.2", dst="10.0.0.255") / UDP(sport=68, dport=67) / b"bcast",
        IP(**v4, flags="MF", frag=0) / UDP(sport=1, dport=9999) / bytes(32),
        IPv6(**v6) / ICMPv6EchoRequest(id=7, seq=1, data=b"ping6"),
        IPv6(src="fd00::2", dst="ff02::1") / ICMPv6EchoRequest(id=8),
        IPv6(**v6, nh=253) / b"unknown next header",
    ]
    return [bytes(p) for p in pkts]


BASE = _base_packets()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid packet, then some byte flips, a cut or an extension."""
    data = bytearray(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= draw(st.integers(1, 255))
    action = draw(st.sampled_from(["keep", "cut", "extend", "set"]))
    if action == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif action == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    elif action == "set" and len(data) > 4:
        i = draw(st.integers(0, len(data) - 2))
        data[i:i + 2] = draw(st.sampled_from([b"\0\0", b"\xff\xff", b"\x00\x05", b"\x60\x00"]))
    return bytes(data)


@pytest.fixture(scope="module")
def kernel():  # type: ignore[no-untyped-def]
    return bench_kernel()


def test_base_packets_are_valid_and_answered(kernel) -> None:  # type: ignore[no-untyped-def]
    """The unmutated packets themselves: the SYNs and the closed UDP get a reply."""
    replies = [len(receive(kernel, p).replies) for p in BASE]
    assert replies[0] == 1 and replies[1] == 1 and replies[5] == 1  # SYN-ACK, RST, port unreachable (v4)
    assert replies[6] == 1 and replies[7] == 1 and replies[11] == 1  # the same over IPv6


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=120))
def test_random_bytes_never_raise(kernel, data: bytes) -> None:  # type: ignore[no-untyped-def]
    assert_verdict(receive(kernel, data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=80), st.sampled_from([0x45, 0x46, 0x4F, 0x60, 0x6F]))
def test_random_bytes_behind_a_plausible_first_byte(kernel, rest: bytes, first: int) -> None:  # type: ignore[no-untyped-def]
    """Random data that passes the version check gets further into the stack."""
    assert_verdict(receive(kernel, bytes([first]) + rest))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_mutated_packets_never_raise(kernel, data: bytes) -> None:  # type: ignore[no-untyped-def]
    assert_verdict(receive(kernel, data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_replies_go_back_to_the_sender(kernel, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """Every reply is addressed to the source of the packet that caused it,
    from one of the host's addresses."""
    verdict = receive(kernel, data)
    # a packet to 127.0.0.1 or ::1 arrives on lo, unverified, and is answered from there
    for reply in verdict.replies:
        if reply[0] >> 4 == 4:
            assert reply[16:20] == data[12:16] and reply[12:16] in (HOST4, bytes((127, 0, 0, 1)))
        else:
            assert reply[24:40] == data[8:24] and reply[8:24] in (HOST6, bytes(15) + b"\x01")


# --------------------------------------------------------------------------
# every capture


def _captures() -> list[pathlib.Path]:
    found = sorted(p for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng"))
    if SHARED_PCAPS.is_dir():
        found += sorted(p for p in SHARED_PCAPS.iterdir()
                        if p.suffix in (".pcap", ".pcapng") and not (PCAPS / p.name).exists())
    return found


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_replaying_every_capture(path: pathlib.Path) -> None:
    """Replaying the capture (with its host file when it has one, else the
    bench host) yields one well-formed result per record, plus timer rows
    in time order, and raises nothing but CaptureError, which only the
    damaged files raise."""
    from pktdemux.capture import read_capture
    from pktdemux.hostfile import build_kernel, load_host
    from pktdemux.replay import Replay

    host = PCAPS / f"{path.stem}.toml"
    kernel = build_kernel(load_host(host if host.exists() else PCAPS / "bench.toml"))
    replay = Replay(kernel)
    count = 0
    try:
        for result in replay.run(read_capture(path)):
            if result.direction == "timer":
                assert result.n is None and result.verdict is None and result.note
                continue
            count += 1
            assert result.n == count
            assert result.direction in ("in", "out", "other")
            if result.verdict is not None:
                assert_verdict(result.verdict)
            if result.direction == "in":
                assert result.verdict is not None
    except CaptureError as exc:
        assert path.name in DAMAGED, f"{path.name}: {exc}"
        assert exc.path and exc.reason
    else:
        assert path.name not in DAMAGED, f"{path.name} was read without complaint"
    assert replay.totals.packets == count
