"""What the kernel's timers send while a capture replays: timer rows of the
replay driver, in the terminal table, JSON Lines, the pcapng and the golden
transcript."""

from __future__ import annotations

import io
import json
import pathlib

from tcp_helpers import segment

from pktdemux.capture import Record, read_capture
from pktdemux.golden import replay_events
from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.jsonl import JsonlWriter, to_json
from pktdemux.pcapng_out import AnnotatedPcapNg
from pktdemux.replay import Replay
from pktdemux.report import PlainRows, summary_lines
from pktdemux.wire import build_ipv4, parse_addr

T0 = 1_700_000_000.0
HOST = """
[host]
addresses = ["10.0.0.1/24"]
interface = "eth0"

[[sockets]]
name = "web"
label = "tcp://0.0.0.0:80"
listen = 128
"""
SYN_OPTIONS = bytes.fromhex("020405b40402080a000003090000000001030307")


def rec(n: int, ip: bytes, time: float) -> Record:
    return Record(n, int(time * 10**9), time, 101, ip, len(ip), 0)


def capture() -> list[Record]:
    """A SYN that never gets its final ACK, then traffic between two other
    hosts every 2 s for 40 s: only capture time passes."""
    syn = segment("10.0.0.2", "10.0.0.1", 5000, 80, "S", seq=1000, options=SYN_OPTIONS)
    other = build_ipv4(src=parse_addr("10.0.0.7"), dst=parse_addr("10.0.0.9"), proto=17, payload=bytes(8))
    return [rec(1, syn, T0)] + [rec(n, other, T0 + 2 * (n - 1)) for n in range(2, 22)]


def replay():  # type: ignore[no-untyped-def]
    driver = Replay(build_kernel(parse_host(HOST, "host.toml"), seed=0))
    return driver, list(driver.run(capture()))


def test_synack_retransmissions_come_as_timer_rows_in_time_order() -> None:
    driver, results = replay()
    rows = [(r.n, r.direction, round(r.time - T0, 6)) for r in results]
    timers = [(t, len(r.sent), r.note) for r, (_, d, t) in zip(results, rows) if d == "timer"]
    assert timers == [(1.0, 1, "reqsk_timer"), (3.0, 1, "reqsk_timer"), (7.0, 1, "reqsk_timer"),
                      (15.0, 1, "reqsk_timer"), (31.0, 1, "reqsk_timer")]
    times = [t for _, _, t in rows]
    assert times == sorted(times)  # each before the record that let its time come
    assert [n for n, d, _ in rows if d != "timer"] == list(range(1, 22))
    first_synack = results[0].replies[0]
    assert all(r.replies[0][20:24] == first_synack[20:24] for r in results if r.direction == "timer")
    assert driver.totals.packets == 21 and driver.totals.timers == 5 and driver.totals.timer_packets == 5
    assert "timers: 5 fired, 5 packets sent" in summary_lines(driver.totals)


def test_the_end_of_the_capture_lets_the_last_due_timers_fire() -> None:
    driver = Replay(build_kernel(parse_host(HOST, "host.toml"), seed=0))
    records = capture()
    records = records[:1] + [rec(2, records[1].frame, T0 + 1.0)]  # the capture ends at the first firing
    results = list(driver.run(records))
    assert [(r.direction, r.time - T0) for r in results] == [("in", 0.0), ("timer", 1.0), ("other", 1.0)]


def test_timer_rows_in_jsonl_table_pcapng_and_transcript(tmp_path: pathlib.Path) -> None:
    _, results = replay()
    timer = next(r for r in results if r.direction == "timer")
    obj = to_json(timer)
    assert obj["n"] is None and obj["direction"] == "timer" and obj["note"] == "reqsk_timer"
    assert obj["replies"] == [timer.sent[0].hex()]
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as writer:
        for r in results:
            writer.write(r)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [to_json(r) for r in results]
    assert sum(1 for line in lines if line["direction"] == "timer" and line["n"] is None) == 5

    out = io.StringIO()
    table = PlainRows(out)
    for r in results:
        table.row(r)
    timer_lines = [line for line in out.getvalue().splitlines() if " timer " in line]
    assert len(timer_lines) == 5 and all("reqsk_timer" in line and "[SYN,ACK]" in line for line in timer_lines)
    assert timer_lines[0].split()[:2] == ["1.000000", "timer"]

    pcapng = tmp_path / "out.pcapng"
    with AnnotatedPcapNg(pcapng) as writer:
        for r in results:
            writer.write(r)
    frames = [r.frame for r in read_capture(pcapng)]
    assert frames.count(timer.sent[0]) == 1 and len(frames) == 21 + 1 + 5  # packets, first SYN-ACK, timers

    events = list(replay_events(results))
    sent = [e for e in events if not e.received and e.packet is not None and e.time > T0]
    assert [round(e.time - T0, 6) for e in sent] == [1.0, 3.0, 7.0, 15.0, 31.0]
