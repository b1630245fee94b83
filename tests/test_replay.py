"""The replay driver: directions, what is fed to the kernel, the totals, and
real captures of every link type."""

from __future__ import annotations

import ipaddress
import itertools
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pktdemux.capture import Record, read_capture
from pktdemux.direction import IN, LOOP, OTHER, OUT, Directions
from pktdemux.dropreason import DropReason
from pktdemux.kernel import Interface, Kernel
from pktdemux.replay import Replay, Totals
from pktdemux.sockets import Proto, Socket
from pktdemux.verdict import Transmission, deliver, drop
from pktdemux.wire import build_ipv4, build_ipv6, parse_addr

PCAPS = pathlib.Path(__file__).resolve().parent.parent / "pcaps"
HOST4, HOST6 = "10.0.0.1", "fd00::1"
ETH_V4 = bytes(12) + b"\x08\x00"


def v4(src: str, dst: str, payload: bytes = bytes(8)) -> bytes:
    return build_ipv4(src=parse_addr(src), dst=parse_addr(dst), proto=17, payload=payload)


def v6(src: str, dst: str) -> bytes:
    return build_ipv6(src=parse_addr(src), dst=parse_addr(dst), next_header=17, payload=bytes(8))


def rec(n: int, frame: bytes, linktype: int = 101, wirelen: int | None = None, time: float = 0.0) -> Record:
    return Record(n, int(time * 10**9), time, linktype, frame, len(frame) if wirelen is None else wirelen, 0)


def interfaces() -> list[Interface]:
    return [Interface("eth0", [ipaddress.ip_interface(f"{HOST4}/24"), ipaddress.ip_interface(f"{HOST6}/64")])]


DIRECTIONS = [
    ("to-host", v4("10.0.0.2", HOST4), IN),
    ("to-host-v6", v6("fd00::2", HOST6), IN),
    ("subnet-broadcast", v4("10.0.0.2", "10.0.0.255"), IN),
    ("limited-broadcast", v4("0.0.0.0", "255.255.255.255"), IN),
    ("multicast-v4", v4("10.0.0.2", "224.0.0.251"), IN),
    ("multicast-v6", v6("fe80::2", "ff02::1"), IN),
    ("from-host", v4(HOST4, "10.0.0.2"), OUT),
    ("from-host-v6", v6(HOST6, "2001:db8::1"), OUT),
    ("host-to-itself", v4(HOST4, HOST4), LOOP),
    ("loopback-net", v4("127.0.0.1", "127.0.0.53"), LOOP),
    ("loopback-v6", v6("::1", "::1"), LOOP),
    ("between-others", v4("10.0.0.7", "10.0.0.9"), OTHER),
    ("between-others-v6", v6("fd00::7", "fd00::9"), OTHER),
    ("header-too-short", v4("10.0.0.2", HOST4)[:12], IN),
    ("unknown-version", b"\x50" + bytes(30), IN),
]


@pytest.mark.parametrize(("ip", "direction"), [d[1:] for d in DIRECTIONS], ids=[d[0] for d in DIRECTIONS])
def test_directions(ip: bytes, direction: str) -> None:
    assert Directions.of_kernel(Kernel(interfaces())).classify(ip) == direction


class FakeKernel:
    """Records what the driver feeds it; answers with canned verdicts."""

    def __init__(self, with_transmit: bool = True) -> None:
        self.interfaces = interfaces()
        self.calls: list[tuple[str, bytes, float, str | None]] = []
        self.sock = Socket(Proto.UDP, 4, bytes(4), 53, name="dns")
        if with_transmit:
            self.transmit = self._transmit

    def receive(self, packet: bytes, now: float, device: str | None = None):  # type: ignore[no-untyped-def]
        self.calls.append(("receive", packet, now, device))
        if packet[9:10] == b"\x11" and packet[-1] == 1:
            return deliver((self.sock,), "ok", replies=(b"\x45reply",))
        return drop(DropReason.NO_SOCKET, "nobody")

    def _transmit(self, packet: bytes, now: float) -> Transmission:
        self.calls.append(("transmit", packet, now, None))
        return Transmission(matched=packet[-1] == 7 if packet[-1] in (6, 7) else None)


def run(records: list[Record], kernel: FakeKernel | None = None) -> tuple[list, Totals, FakeKernel]:
    kernel = kernel or FakeKernel()
    replay = Replay(kernel)  # type: ignore[arg-type]
    return list(replay.run(records)), replay.totals, kernel


def test_in_out_loop_other_reach_the_right_kernel_calls() -> None:
    pin = v4("10.0.0.2", HOST4, bytes(7) + b"\x01")
    pout = v4(HOST4, "10.0.0.2", bytes(7) + b"\x07")
    ploop = v4(HOST4, HOST4, bytes(7) + b"\x06")
    pother = v4("10.0.0.7", "10.0.0.9")
    results, totals, kernel = run([rec(1, pin, time=1.5), rec(2, pout, time=2.0),
                                   rec(3, ploop, time=3.0), rec(4, pother, time=4.0)])
    assert kernel.calls == [("receive", pin, 1.5, None), ("transmit", pout, 2.0, None),
                            ("transmit", ploop, 3.0, None), ("receive", ploop, 3.0, "lo")]
    assert [r.direction for r in results] == [IN, OUT, OUT, OTHER]
    assert [r.looped for r in results] == [False, False, True, False]
    assert [r.matched for r in results] == [None, True, False, None]
    assert results[0].socket_names == ["dns"] and results[0].replies == (b"\x45reply",)
    assert results[2].reason is DropReason.NO_SOCKET
    assert results[3].verdict is None and results[3].transmission is None
    assert totals.packets == 4 and totals.looped == 1
    assert dict(totals.directions) == {IN: 1, OUT: 2, OTHER: 1}
    assert (totals.delivered, totals.dropped, totals.replies) == (1, 1, 1)
    assert dict(totals.sockets) == {"dns": 1} and dict(totals.reasons) == {"NO_SOCKET": 1}
    assert (totals.own_generated, totals.own_matched) == (2, 1)


def test_kernel_without_transmit_leaves_matched_unknown() -> None:
    results, totals, kernel = run([rec(1, v4(HOST4, "10.0.0.2", bytes(7) + b"\x07"))], FakeKernel(False))
    assert results[0].direction == OUT and results[0].matched is None
    assert kernel.calls == [] and totals.own_generated == 0


def test_frames_without_ip() -> None:
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    results, totals, kernel = run([rec(1, arp, linktype=1), rec(2, bytes(8), linktype=1),
                                   rec(3, bytes(40), linktype=274)])
    assert kernel.calls == []
    assert [(r.direction, r.reason) for r in results] == [
        (OTHER, None), (IN, DropReason.CAPTURE_TRUNCATED), (IN, DropReason.UNSUPPORTED_LINK)]
    assert "ARP" in results[0].note
    assert dict(totals.reasons) == {"CAPTURE_TRUNCATED": 1, "UNSUPPORTED_LINK": 1}


def test_snaplen_cut_packets_do_not_run() -> None:
    full = v4("10.0.0.2", HOST4, bytes(100))
    cut_in = rec(1, ETH_V4 + full[:60], linktype=1, wirelen=14 + len(full))
    cut_out = rec(2, ETH_V4 + v4(HOST4, "10.0.0.2", bytes(100))[:60], linktype=1, wirelen=142)
    padded = rec(3, ETH_V4 + full, linktype=1, wirelen=14 + len(full) + 4)  # only the FCS was cut
    results, _, kernel = run([cut_in, cut_out, padded])
    assert results[0].reason is DropReason.CAPTURE_TRUNCATED
    assert "74 of 134" in results[0].verdict.note
    assert results[1].direction == OUT and results[1].transmission is None and "snap length" in results[1].note
    assert [c[0] for c in kernel.calls] == ["receive"] and kernel.calls[0][1] == full


def test_family_from_the_link_layer_wins() -> None:
    ip6 = v6("fd00::2", HOST6)
    results, _, kernel = run([rec(1, ip6, linktype=228)])
    assert results[0].reason is DropReason.IP_INHDR
    assert "announced IPv4" in results[0].verdict.note
    assert kernel.calls == []


def test_run_is_lazy_and_streams() -> None:
    endless = (rec(i, v4("10.0.0.7", "10.0.0.9")) for i in itertools.count(1))
    replay = Replay(FakeKernel())  # type: ignore[arg-type]
    first = list(itertools.islice(replay.run(endless), 5))
    assert [r.n for r in first] == [1, 2, 3, 4, 5]
    assert replay.totals.packets == 5


class ClockedKernel(FakeKernel):
    """A FakeKernel with a clock: records the times it is advanced to."""

    def __init__(self) -> None:
        super().__init__()
        self.advanced: list[float] = []

    def advance(self, now: float) -> list[bytes]:
        self.advanced.append(now)
        return []


@pytest.mark.parametrize("times, kernel_times", [
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),                   # in order: each record at its own time
    ([1.0, 1.5e9, 1.1, 1.2], [1.0, 1.1, 1.1, 1.2]),       # one stamp decades ahead: it runs at the next one's
    ([1.0, 5.0, 5.0, 6.0], [1.0, 5.0, 5.0, 6.0]),         # equal stamps are in order
    ([1.0, 2.0, 1.5e9], [1.0, 2.0, 1.5e9]),               # the last record keeps its stamp
])
def test_a_record_stamped_after_the_next_one_runs_at_the_next_ones_time(times: list[float],
                                                                       kernel_times: list[float]) -> None:
    """A clock glitch in the capture (pcapng_eth_sll_mysql.pcapng stamps a
    SYN-ACK 46 years after its SYN) must not move the kernel's clock there
    and expire every timer: the record runs at the next record's time."""
    kernel = ClockedKernel()
    records = [rec(i, v4("10.0.0.2", HOST4), time=t) for i, t in enumerate(times, 1)]
    results = list(Replay(kernel).run(records))  # type: ignore[arg-type]
    assert [c[2] for c in kernel.calls] == kernel_times
    assert [r.time for r in results] == times  # the rows keep the capture's stamps
    assert kernel.advanced == [*kernel_times, kernel_times[-1]]


def test_step_counts_one_record() -> None:
    replay = Replay(FakeKernel())  # type: ignore[arg-type]
    result = replay.step(rec(9, v4("10.0.0.2", HOST4)))
    assert result.n == 9 and replay.totals.packets == 1


# -- real captures through the real kernel --------------------------------------

REAL = [
    # (file, host addresses, expected {direction: count}, expected drop reasons from the link layer)
    ("tcp_syn_refused.pcap", ["10.1.1.6/24"], {IN: 1, OUT: 1}, {}),
    ("vlan_qinq_icmp.pcap", ["192.168.1.1/24"], None, {}),
    ("dot1ad_qinq_icmp.pcap", ["10.10.10.1/24"], None, {}),
    ("sll2_icmp_v4v6.pcap", ["10.0.0.1/24"], None, {}),
    ("tcp_handshake_nano_sll.pcap", ["131.155.215.69/16"], {OUT: 2, IN: 1}, {}),
    ("null_af30_ipv6_http.pcap", ["::1/128"], {OUT: 24}, {}),
    ("raw229_ipv6_dns.pcap", ["::1/128"], None, {}),
    # 37 empty records, and one 262144-byte BGP packet cut by the snap length.
    ("zero_caplen_fuzz.pcap", ["10.0.0.1/24"], None, {"CAPTURE_TRUNCATED": 38}),
    ("trunc_ether_hdr.pcap", ["10.0.0.1/24"], {IN: 1}, {"CAPTURE_TRUNCATED": 1}),
    ("eth_snaplen20_icmp.pcap", ["10.0.0.1/24"], {IN: 1}, {"CAPTURE_TRUNCATED": 1}),
    ("pcapng_eth_sll_mysql.pcapng", ["127.0.0.1/8"], None, {}),
]


@pytest.mark.parametrize(("name", "addresses", "directions", "link_drops"), REAL, ids=[r[0] for r in REAL])
def test_real_captures_replay(name: str, addresses: list[str], directions: dict[str, int] | None,
                              link_drops: dict[str, int]) -> None:
    kernel = Kernel([Interface("eth0", [ipaddress.ip_interface(a) for a in addresses])])
    replay = Replay(kernel)
    results = list(replay.run(read_capture(PCAPS / name)))
    totals = replay.totals
    assert totals.packets == len(results) == len(list(read_capture(PCAPS / name)))
    assert [r.n for r in results] == list(range(1, len(results) + 1))
    if directions is not None:
        assert {k: v for k, v in totals.directions.items() if v} == directions
    for reason, count in link_drops.items():
        assert totals.reasons[reason] == count
    # Every received packet has a verdict; nothing else has one unless looped.
    for r in results:
        assert (r.verdict is not None) == (r.direction == IN or r.looped)
        assert r.direction in (IN, OUT, OTHER)


def test_loopback_capture_is_transmitted_then_received() -> None:
    """null_redis_v6_refused.pcap (BSD loopback, AF 2 and 30) is all ::1 and
    127.0.0.1: each packet is the host's output and its input."""
    kernel = Kernel([Interface("eth0", [ipaddress.ip_interface("192.0.2.1/24")])])
    results = list(Replay(kernel).run(read_capture(PCAPS / "null_redis_v6_refused.pcap")))
    assert len(results) == 12
    assert all(r.looped and r.direction == OUT and r.verdict is not None for r in results)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.tuples(st.sampled_from([0, 1, 101, 113, 228, 229, 276, 274]),
                                 st.binary(max_size=70), st.integers(0, 30)), max_size=8))
def test_random_frames_never_crash_the_driver(frames: list[tuple[int, bytes, int]]) -> None:
    records = [rec(i, frame, linktype=lt, wirelen=len(frame) + extra, time=float(i))
               for i, (lt, frame, extra) in enumerate(frames, 1)]
    replay = Replay(Kernel(interfaces()))
    results = list(replay.run(records))
    assert [r.n for r in results] == list(range(1, len(frames) + 1))
    assert replay.totals.packets == len(frames)
    for r in results:
        assert r.direction in (IN, OUT, OTHER)
        if r.direction == IN:
            assert r.verdict is not None and r.verdict.delivered == (r.reason is None)


def test_jsonl_lines_equal_the_json_module_encoding(tmp_path: pathlib.Path) -> None:
    """The fast JSON Lines writer writes, byte for byte, json.dumps of to_json()."""
    import json

    from pktdemux.hostfile import build_kernel, load_host
    from pktdemux.jsonl import JsonlWriter, to_json

    pcaps = pathlib.Path(__file__).resolve().parent.parent / "pcaps"
    expected: list[str] = []
    with JsonlWriter(tmp_path / "out.jsonl") as writer:
        for name in ("pop3_refused_retries", "sll2_icmp_v4v6", "http_get_dns", "v6_traceroute_unreach"):
            replay = Replay(build_kernel(load_host(str(pcaps / f"{name}.toml")), seed=0))
            for result in replay.run(read_capture(next(pcaps.glob(f"{name}.pcap*")))):
                writer.write(result)
                expected.append(json.dumps(to_json(result), ensure_ascii=False, separators=(",", ":")))
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines == expected
    assert {json.loads(line)["direction"] for line in lines} >= {"in", "out"}


@given(note=st.text(max_size=30), name=st.text(max_size=10), time=st.floats(0, 4e9))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_jsonl_escapes_any_text(tmp_path: pathlib.Path, note: str, name: str, time: float) -> None:
    import json

    from pktdemux.jsonl import JsonlWriter, to_json
    from pktdemux.replay import Result

    sock = Socket(Proto.UDP, 4, parse_addr("10.0.0.1"), 53, name=name or "x")
    record = rec(1, v4("10.0.0.2", "10.0.0.1"), time=time)
    for result in (Result(record, IN, None, deliver((sock,), note, handler=note)),
                   Result(record, OUT, None, None, Transmission(None, note, (), note), note=note, looped=True),
                   Result(record, OTHER, None, note=note)):
        writer = JsonlWriter(tmp_path / "x.jsonl")
        line = writer.line(result)
        writer.close()
        assert line == json.dumps(to_json(result), ensure_ascii=False, separators=(",", ":")) + "\n"
