"""When Linux ACKs received data, compared with Linux (pktdemux.oracle) on
the kernel's timeline (pktdemux.tcp_delack): quick ACKs for the first
segments, then the delayed-ACK timer; every second full-sized segment
ACKed at once; the peer's FIN switching the connection to delayed ACKs.

One case, one connection per phase (the phases follow each other):

* SPACED: 30 segments of 100 bytes, 0.1 s apart: 16 quick ACKs
  (min(rcv_wnd / (2 * rcv_mss), TCP_MAX_QUICKACKS)), then each ACK ~40 ms
  late (TCP_ATO_MIN at HZ=250), from the delayed-ACK timer.  Segments
  below 128 bytes never grow the window, so no quick ACK is added.
* REFILL: 20 such segments, then a pause longer than the RTO: the next
  segment gets quick ACKs again (tcp_event_data_recv's "too long gap").
* BULK: 36 full-sized segments back to back (1 ms apart), never read:
  quick ACKs while rcv_ssthresh grows, then an ACK for every second segment
  when the window does not shrink, else delayed.  The burst ends before
  the first delayed ACK's timer (36-40 ms on Linux's 4 ms jiffies, 40 ms in
  the emulation) so that no segment races it.
* BULKREAD: the same, read every 4 segments.
* DATAFIN: data, then data with FIN: the FIN enters pingpong mode, its
  ACK is delayed ~40 ms.  BAREFIN: a bare FIN after data, likewise.
  FINONLY: a bare FIN before any data (ato still 0): ACKed at the next tick.

Replies are paired by content within :data:`SLACK` per connection: the
kernel's timer wheel fires the 40 ms timer on a 4 ms jiffy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kernel_support import Case, assert_agree, host_toml
from lifecycle_support import (
    Peer,
    Timeline,
    connection_sockets,
    flow_differences,
    run_timeline,
)
from tcp_helpers import tcp_header

LOCAL4, PEER4 = "10.0.0.1", "10.0.0.2"
#: The kernel's timer wheel (HZ=250) fires a delayed ACK up to a jiffy late,
#: and the oracle stamps what it reads a little late.
SLACK = 0.012
R = "recv"

CONNECTIONS = {
    "SPACED": (LOCAL4, 81, PEER4, 43001), "REFILL": (LOCAL4, 82, PEER4, 43002),
    "BULK": (LOCAL4, 83, PEER4, 43003), "BULKREAD": (LOCAL4, 84, PEER4, 43004),
    "DATAFIN": (LOCAL4, 85, PEER4, 43005), "BAREFIN": (LOCAL4, 86, PEER4, 43006),
    "FINONLY": (LOCAL4, 87, PEER4, 43007),
}
HOST = host_toml(connection_sockets(CONNECTIONS))

#: connection id → steps: (payload size, gap before it), R for a read, or
#: ("F", size, gap) for a segment with FIN
PLANS: dict[str, list[Any]] = {
    "SPACED": [(100, 0.1)] * 30,
    "REFILL": [(100, 0.1)] * 20 + [(100, 0.5)] + [(100, 0.1)] * 4,
    "BULK": [(1460, 0.001)] * 36,
    "BULKREAD": [x for _ in range(10) for x in ([(1460, 0.002)] * 4 + [R])],
    "DATAFIN": [(200, 0.1)] * 3 + [("F", 200, 0.1)],
    "BAREFIN": [(200, 0.1)] * 2 + [("F", 0, 0.1)],
    "FINONLY": [("F", 0, 0.1)],
}


def _case() -> Case:
    case = Case("delayed ACKs", HOST, settle=0.3)
    peer = Peer(case, CONNECTIONS)
    for vid, steps in PLANS.items():
        sent = 0
        for n, step in enumerate(steps):
            if step == R:
                case.call(vid, "recv", gap=0.001, label=f"{vid} recv")
                continue
            fin = step[0] == "F"
            size, gap = step[1:] if fin else step
            if n == 0:
                gap = 0.3  # after the previous phase's last timer
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            peer.send(vid, f"{size} bytes{' + FIN' if fin else ''} at +{sent}", "FPA" if fin and size else
                      "FA" if fin else "PA", sent, payload=payload, gap=gap)
            sent += size
    return case


@pytest.fixture(scope="module")
def delack(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = _case()
    return case, run_timeline(kernel_oracle, case)


def _flow(vid: str) -> tuple[int, int]:
    _, port, _, pport = CONNECTIONS[vid]
    return port, pport


def _kernel_acks(run: Timeline, vid: str) -> list[tuple[float, int]]:
    """(time, SEG.ACK) of each ACK Linux sent on the connection, in order."""
    flow = _flow(vid)
    replies = sorted([(r.at, r.packet) for p in run.oracle.packets for r in p.replies]
                     + [(r.at, r.packet) for c in run.oracle.calls for r in c.replies])
    return [(t, tcp_header(p)[3]) for t, p in replies if tcp_header(p)[:2] == flow]


@pytest.mark.kernel
@pytest.mark.parametrize("vid", list(PLANS))
def test_acks_go_when_linux_sends_them(delack: tuple[Case, Timeline], vid: str) -> None:
    """Every ACK of the connection, byte for byte and within SLACK of Linux's."""
    case, run = delack
    assert_agree(flow_differences(case, run, _flow(vid), SLACK))


@pytest.mark.kernel
def test_linux_delays_as_the_test_explains(delack: tuple[Case, Timeline]) -> None:
    """What the plans are for: SPACED's ACKs after the 16th come ~40 ms
    after their segments; BULK ends up with fewer ACKs than segments."""
    case, run = delack
    sent = {case.labels[i]: p.sent_at for i, p in enumerate(run.oracle.packets)}
    spaced = [t for t, _ in _kernel_acks(run, "SPACED")]
    segs = [t for label, t in sent.items() if label.startswith("SPACED ")]
    delays = [round(a - s, 3) for a, s in zip(spaced, segs)]
    assert all(d < 0.01 for d in delays[:16]) and all(0.03 < d < 0.06 for d in delays[16:]), delays
    assert len(_kernel_acks(run, "BULK")) < 36
    datafin = _kernel_acks(run, "DATAFIN")
    fin_at = next(t for label, t in sent.items() if label.startswith("DATAFIN") and "+ FIN" in label)
    assert 0.03 < datafin[-1][0] - fin_at < 0.06
