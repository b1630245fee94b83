"""The receive window over a longer exchange, compared with Linux
(pktdemux.oracle): 36 data segments per connection, of sizes that do and
do not grow the window, with and without the application reading
(``recv`` calls), so that what the ACKs advertise follows the receive
buffer as :mod:`pktdemux.tcp_rcvbuf` models it: unread data held at its
skb truesize (the TUN device's kmalloc'ed heads: 832, 1280 or 2304
bytes, small segments coalesced into the tail's room), rcv_ssthresh
growing (tcp_grow_window) from segments of 128 bytes or more, the scaling
ratio and window clamp following the first segments of each new size of
at least rcv_mss bytes (tcp_measure_rcv_mss), the offered window never
taken back, the window rounded to rcv_mss without window scaling and up
to the scale unit with it, and a window update when a read frees half
the clamp (tcp_cleanup_rbuf).

The connections take turns, each sending every 0.12 s: Linux ACKs at once
for the first 16 segments and while a segment grows rcv_ssthresh
(tcp_grow_window's quick |= 1), then ~40 ms late from the delayed-ACK
timer (pktdemux.tcp_delack models both), so every ACK is paired with the
emulation's by content within :data:`SLACK`, per connection over the whole
timeline.  A connection reads just before its next segment, after its ACK
has gone.
"""

from __future__ import annotations

import itertools
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
from tcp_helpers import segment, tcp_header

LOCAL4, LOCAL6, PEER4, PEER6 = "10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"
#: Linux's delayed-ACK timer fires on a 4 ms jiffy (HZ=250), the emulation's
#: exactly ato (40 ms) after the segment; the oracle stamps what it reads late.
SLACK = 0.015
#: Between two steps; six connections take turns, so each sends every 0.12 s.
TURN = 0.02
SEGMENTS = 36
R = "recv"

#: connection id → (local address, port, peer address, peer port)
CONNECTIONS = {
    "TINY": (LOCAL4, 81, PEER4, 42001), "GROW": (LOCAL4, 82, PEER4, 42002), "BULK": (LOCAL4, 83, PEER4, 42003),
    "FILL": (LOCAL4, 84, PEER4, 42004), "V6": (LOCAL6, 85, PEER6, 42005),
}
#: The host's own connection, to a peer that offers window scaling (and
#: SACK, no timestamps): the host's window scale is 10 (tcp_rmem[2] 32 MiB).
CLIENT, CLIENT_PEER, CLIENT_PORT = "SCALED", (PEER4, 7100), 40000
SYNACK_OPTIONS = b"\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07"  # MSS 1460, NOP, NOP, SACK-permitted, NOP, WS 7


def _sizes(cycle: list[int], read_every: int = 0) -> list[int | str]:
    """SEGMENTS payload sizes from ``cycle``, a read after every ``read_every``."""
    steps: list[int | str] = []
    for n, size in enumerate(itertools.islice(itertools.cycle(cycle), SEGMENTS), 1):
        steps.append(size)
        if read_every and n % read_every == 0:
            steps.append(R)
    return steps


#: connection id → its steps: payload sizes, and reads
PLANS: dict[str, list[int | str]] = {
    # below 128 bytes: no growth, the window's right edge stays; coalesced into the tail's room
    "TINY": _sizes([1, 5, 40, 100, 127, 60]),
    # growth; each new size of at least rcv_mss bytes sets the scaling ratio and the clamp
    "GROW": _sizes([128, 200, 300, 536, 601, 700, 1000, 1200, 1460], 3),
    "BULK": _sizes([1460], 6),
    # never read: the free space falls below half the buffer; the read at the end opens the window
    "FILL": [*_sizes([1460]), R],
    "V6": _sizes([1440, 700, 100, 1000], 4),
    CLIENT: _sizes([100, 600, 1460, 50, 1000, 1460], 5),
}

HOST = host_toml(connection_sockets(CONNECTIONS), sysctls={"net.ipv4.ip_local_port_range": [40000, 40001]})


def _client_segment(flags: str, seq: int, *, payload: bytes = b"", options: bytes = b"") -> bytes:
    peer, port = CLIENT_PEER
    return segment(peer, LOCAL4, port, CLIENT_PORT, flags, seq=seq, ack=1, window=65535, options=options,
                   payload=payload)


def _case() -> Case:
    case = Case("receive window", HOST, settle=0.2)
    peer = Peer(case, CONNECTIONS)
    case.call(CLIENT, "connect", peer=f"{CLIENT_PEER[0]}:{CLIENT_PEER[1]}", gap=TURN, label=f"{CLIENT} connect")
    case.add(_client_segment("SA", 5000, options=SYNACK_OPTIONS), gap=TURN, label=f"{CLIENT} SYN-ACK",
             ack_from_isn=True)
    plans = {vid: list(steps) for vid, steps in PLANS.items()}
    sent = dict.fromkeys(plans, 0)
    while any(plans.values()):
        for vid, steps in plans.items():
            if not steps:
                continue
            if steps[0] == R:
                steps.pop(0)
                case.call(vid, "recv", gap=TURN / 4, label=f"{vid} recv")
                if not steps:
                    continue
            size = steps.pop(0)
            assert isinstance(size, int)
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            label = f"{vid} {size} bytes at +{sent[vid]}"
            if vid == CLIENT:
                case.add(_client_segment("PA", 5001 + sent[vid], payload=payload), gap=TURN, label=label,
                         ack_from_isn=True)
            else:
                peer.send(vid, label.removeprefix(vid + " "), "PA", sent[vid], payload=payload, gap=TURN)
            sent[vid] += size
    return case


@pytest.fixture(scope="module")
def windows(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = _case()
    return case, run_timeline(kernel_oracle, case)


def _flow(vid: str) -> tuple[int, int]:
    if vid == CLIENT:
        return CLIENT_PORT, CLIENT_PEER[1]
    _, port, _, pport = CONNECTIONS[vid]
    return port, pport


def _kernel_windows(run: Timeline, vid: str) -> list[int]:
    """The window field of each ACK Linux sent on the connection, in order."""
    flow = _flow(vid)
    replies = sorted([(r.at, r.packet) for p in run.oracle.packets for r in p.replies]
                     + [(r.at, r.packet) for c in run.oracle.calls for r in c.replies])
    return [tcp_header(p)[5] for _, p in replies if tcp_header(p)[:2] == flow and tcp_header(p)[4] & 0x3F == 0x10]


@pytest.mark.kernel
@pytest.mark.parametrize("vid", list(PLANS))
def test_the_acks_advertise_linux_windows(windows: tuple[Case, Timeline], vid: str) -> None:
    """Every ACK of the connection byte for byte (timer-free: paired by
    content within SLACK), read data included."""
    case, run = windows
    mine = _kernel_windows(run, vid)
    data = sum(1 for s in PLANS[vid] if s != R)
    assert len(mine) >= data, f"Linux sent {len(mine)} ACKs for {data} segments: a delayed ACK covered two"
    assert_agree(flow_differences(case, run, _flow(vid), SLACK))


@pytest.mark.kernel
def test_linux_windows_are_those_the_test_explains(windows: tuple[Case, Timeline]) -> None:
    """What the plans are for: tiny segments never open the window again
    (rcv_ssthresh stays at the clamp, 64076: the offer keeps its right edge
    while it is within one rcv_mss of that), growing segments take it past
    65535 (the field saturates without window scaling), the scaled
    connection's too (in units of 1024), and the read after 36 unread
    full segments sends a window update."""
    _, run = windows
    tiny = _kernel_windows(run, "TINY")
    received = list(itertools.accumulate(s for s in PLANS["TINY"] if s != R))
    edges = [n + w for n, w in zip(received, tiny)]
    assert max(tiny) < 64240 and edges == sorted(edges)
    assert max(_kernel_windows(run, "GROW")) == 0xFFFF
    assert max(_kernel_windows(run, CLIENT)) * 1024 > 65535
    fill = _kernel_windows(run, "FILL")
    assert len(fill) == SEGMENTS + 1 and fill[-1] > 2 * fill[-2], "no window update after the last read"
