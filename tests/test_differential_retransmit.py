"""What follows close() over time, compared with Linux (pktdemux.oracle) on
the kernel's timeline: the FIN retransmitted while the peer stays silent
(FIN_WAIT1, LAST_ACK, CLOSING, after shutdown(SHUT_WR)), the tail loss probe
of a SACK connection, the connection's death when its retries run out
(net.ipv4.tcp_orphan_retries, tcp_retries2, and the orphan's 0 meaning 0
once the RTO reached net.ipv4.tcp_rto_max_ms), the orphan's FIN_WAIT2
ending after tcp_fin_time (net.ipv4.tcp_fin_timeout, at least 3.5 RTO), and
close() with unread data sending a RST instead of a FIN.

The connections are the oracle's (its handshake, then accept()), on port
80 where a listener takes what no connection takes; their RTT estimate
starts from the kernel's own handshake sample (TCP_INFO, see
kernel_support.give_connection_state), so that both sides start from the
same RTO (204-212 ms here: TCP_RTO_MIN plus the handshake's few ms, in
4 ms jiffies).  Each namespace sets the sysctls that make its deaths come
within seconds.

Times: Linux's timer wheel fires a timer late by up to its level's
granularity (1 jiffy below 252 ms, 8 jiffies below 2 s, 64 below 16 s), and
each retransmission timer starts when the previous one fired, so lateness
adds up along a train: :func:`allowance`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from kernel_support import Case, assert_agree, host_toml
from lifecycle_support import (
    Flow,
    Peer,
    Timed,
    Timeline,
    connection_sockets,
    differences,
    emulated_table,
    flow_of,
    kernel_table,
    run_timeline,
)
from tcp_helpers import segment, tcp_flags, tcp_header
from test_differential_close import (
    FIN_ACK,
    GAP,
    LISTENER,
    LOCAL4,
    LOCAL6,
    PEER4,
    PEER6,
    RST,
    RST_ACK,
    SLACK,
)

from pktdemux.matching import first_difference, mask_random_fields

JIFFY = 0.004


def allowance(intervals: list[float]) -> float:
    """How late Linux may send a packet that comes after timers of these
    lengths (seconds) in a row: per timer one jiffy for the tick it was
    armed in and its wheel level's granularity (calc_wheel_index: 1, 8, 64,
    512 jiffies below 63, 504, 4032, 32256 jiffies), then :data:`SLACK`."""
    late = SLACK
    for seconds in intervals:
        jiffies = seconds / JIFFY
        granularity = next((g for limit, g in ((63, 1), (504, 8), (4032, 64), (32256, 512)) if jiffies < limit), 4096)
        late += (granularity + 1) * JIFFY
    return late


def masked(packet: bytes) -> bytes:
    """:func:`mask_random_fields`, and the IPv4 ID (with the header
    checksum) of a RST too: one a full socket sends (tcp_send_active_reset,
    close() with unread data) carries the socket's counter, random like the
    ID of its other segments, where the control socket's RSTs have ID 0."""
    packet = mask_random_fields(packet)
    if packet[0] >> 4 == 4 and tcp_flags(packet) & RST:
        packet = packet[:4] + bytes(2) + packet[6:10] + bytes(2) + packet[12:]
    return packet


def _sent_on(run: Timeline, flow: tuple[int, int], kernel: bool) -> list[Timed]:
    """Every TCP packet either side sent on ``flow`` (local port, peer port),
    after any step, in time order."""
    calls = [run.call_replies(j)[0 if kernel else 1] for j in range(len(run.calls))]
    sent = (run.all_kernel() if kernel else run.all_emulated()) + [t for c in calls for t in c]
    return sorted((t, p) for t, p in sent if p[0] >> 4 in (4, 6) and flow_of(p) == flow)


def fins(run: Timeline, flow: tuple[int, int], *, kernel: bool = True) -> list[Timed]:
    """The FIN+ACKs sent on ``flow`` by Linux (or the emulation)."""
    return [(t, p) for t, p in _sent_on(run, flow, kernel) if tcp_flags(p) == FIN_ACK]


def train_differences(name: str, run: Timeline, flow: tuple[int, int]) -> list[str]:
    """The FIN and its retransmissions on ``flow``: the same number on both
    sides, byte for byte (random fields masked), Linux's each no earlier
    than :data:`SLACK` before the emulation's and no later than the wheel
    allows (:func:`allowance`) after the emulation's timers so far."""
    theirs, ours = fins(run, flow), fins(run, flow, kernel=False)
    notes = []
    if len(theirs) != len(ours):
        notes.append(f"[{name}] flow {flow}: Linux sent {len(theirs)} FINs at "
                     f"{[round(t, 3) for t, _ in theirs]}, the emulation {len(ours)} at {[round(t, 3) for t, _ in ours]}")
    for k, ((tk, pk), (te, pe)) in enumerate(zip(theirs, ours)):
        if masked(pk) != masked(pe):
            notes.append(f"[{name}] flow {flow}: FIN #{k}: {first_difference(pk, pe)}")
        intervals = [b - a for (a, _), (b, _) in itertools.pairwise(ours[:k + 1])]
        if not -SLACK <= tk - te <= allowance(intervals):
            notes.append(f"[{name}] flow {flow}: FIN #{k} at {tk:.3f} on Linux, {te:.3f} in the emulation "
                         f"(allowed: {-SLACK:+.3f} to {allowance(intervals):+.3f})")
    return notes


def flow_notes(name: str, run: Timeline, flow: tuple[int, int], slack: float = SLACK) -> list[str]:
    """Every disagreement on ``flow`` over the whole timeline: the FIN train
    (:func:`train_differences`), and the other packets paired by content
    within ``slack`` (whichever step they follow: a timer's output may
    fall on either side of a step)."""
    notes = train_differences(name, run, flow)
    theirs = [(t, p) for t, p in _sent_on(run, flow, True) if tcp_flags(p) != FIN_ACK]
    ours = [(t, p) for t, p in _sent_on(run, flow, False) if tcp_flags(p) != FIN_ACK]
    for tk, pk in theirs:
        want = masked(pk)
        match = next((i for i, (te, pe) in enumerate(ours) if abs(te - tk) <= slack and masked(pe) == want), None)
        if match is None:
            near = min(ours, key=lambda e: abs(e[0] - tk), default=None)
            why = f"; nearest from the emulation at {near[0]:.3f}: {first_difference(pk, near[1])}" if near else ""
            notes.append(f"[{name}] flow {flow}: only Linux at {tk:.3f}: flags {tcp_flags(pk):#x}{why}")
        else:
            del ours[match]
    notes += [f"[{name}] flow {flow}: only the emulation at {te:.3f}: flags {tcp_flags(pe):#x}" for te, pe in ours]
    return notes


def _status(case: Case, what: str, gap: float = GAP) -> None:
    case.call("web", "status", gap=gap, label=f"status {what}")


def _rows(run: Timeline, case: Case, flow: tuple[int, int], *, emulated: bool = False) -> list[str | None]:
    """The flow's state in each ``status`` table of the case (None: no line)."""
    tables = [run.calls[j].table if emulated else kernel_table(run.oracle.calls[j])
              for j, c in enumerate(case.calls) if c.call == "status" and c.socket == "web"]
    return [next((row[4] for row in table if (row[1], row[3]) == flow), None) for table in tables]


def state_notes(case: Case, run: Timeline, vid: str, flow: tuple[int, int]) -> list[str]:
    """The flow's states in the emulation's tables, where they are not Linux's."""
    theirs, mine = _rows(run, case, flow), _rows(run, case, flow, emulated=True)
    return [] if mine == theirs else [f"[{case.name}] {vid}: states in the tables: Linux {theirs}, the emulation {mine}"]


def _flow(connections: dict[str, Flow], vid: str) -> tuple[int, int]:
    _, lport, _, rport = connections[vid]
    return lport, rport


def _replies_to(run: Timeline, case: Case, label: str) -> list[int]:
    """Linux's replies (TCP flags) to the packet labelled ``label``."""
    return [tcp_flags(p) for p in run.oracle.packets[case.labels.index(label)].reply_bytes]


# =========================================================================== FIN retransmission and death

#: vector id → its connection
RTX: dict[str, Flow] = {
    "ORPHAN": (LOCAL4, 80, PEER4, 43001), "LASTACK": (LOCAL4, 80, PEER4, 43002),
    "CLOSING": (LOCAL4, 80, PEER4, 43003), "SHUTWR": (LOCAL4, 80, PEER4, 43004),
    "ACKLATE": (LOCAL4, 80, PEER4, 43005), "V6ORPHAN": (LOCAL6, 80, PEER6, 43006),
}
#: Retries: tcp_model_timeout(2, 200 ms) = 1.4 s after the first retransmission,
#: so the 4th timer (at 15 RTO ≈ 3.1 s) finds the time up: 3 retransmissions.
RTX_SYSCTLS = {"net.ipv4.tcp_orphan_retries": 2, "net.ipv4.tcp_retries2": 2}
#: when the tables are read: during the trains, and after the deaths
DURING, AFTER = 1.2, 4.2


def _rtx_case() -> Case:
    case = Case("fin retransmission", host_toml([*connection_sockets(RTX, reuseaddr=True), LISTENER],
                                                sysctls=RTX_SYSCTLS), settle=0.3)
    peer = Peer(case, RTX)
    case.call("ORPHAN", "close", gap=0.0, label="ORPHAN close")
    peer.send("LASTACK", "FIN", "FA", 0, gap=GAP)
    case.call("LASTACK", "close", gap=GAP, label="LASTACK close")
    case.call("CLOSING", "close", gap=GAP, label="CLOSING close")
    peer.send("CLOSING", "FIN not acking ours", "FA", 0, ack=1, gap=GAP)
    case.call("SHUTWR", "shutdown_wr", gap=GAP, label="SHUTWR shutdown")
    case.call("ACKLATE", "close", gap=GAP, label="ACKLATE close")
    acklate = case.last_offset or 0.0
    case.call("V6ORPHAN", "close", gap=GAP, label="V6ORPHAN close")
    # between the second retransmission (+0.64 s) and the third (+1.48 s)
    peer.send("ACKLATE", "ACK of our FIN", "A", 0, ack=2, gap=acklate + 0.9 - (case.last_offset or 0.0))
    _status(case, "during", DURING - (case.last_offset or 0.0))
    peer.send("ACKLATE", "FIN", "FA", 0, ack=2, gap=GAP)
    case.call("SHUTWR", "status", gap=AFTER - (case.last_offset or 0.0), label="SHUTWR status")
    _status(case, "after")
    peer.send("ORPHAN", "ACK after its death", "A", 0, ack=2, gap=GAP)
    peer.send("LASTACK", "ACK after its death", "A", 1, ack=2, gap=GAP)
    peer.send("V6ORPHAN", "ACK after its death", "A", 0, ack=2, gap=GAP)
    return case


@pytest.fixture(scope="module")
def retransmission(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = _rtx_case()
    return case, run_timeline(kernel_oracle, case)


#: vector id → (FINs Linux sends: the first and its retransmissions; the
#: states in the two tables)
RTX_EXPECTED: dict[str, tuple[int, list[str | None]]] = {
    "ORPHAN": (4, ["FIN_WAIT1", None]),
    "LASTACK": (4, ["LAST_ACK", None]),
    "CLOSING": (4, ["CLOSING", None]),
    "SHUTWR": (4, ["FIN_WAIT1", None]),
    "ACKLATE": (3, ["FIN_WAIT2", "TIME_WAIT"]),
    "V6ORPHAN": (4, ["FIN_WAIT1", None]),
}


@pytest.mark.kernel
@pytest.mark.parametrize("vid", list(RTX_EXPECTED))
def test_fin_is_retransmitted_until_the_retries_run_out(retransmission: tuple[Case, Timeline], vid: str) -> None:
    """Linux: the FIN again after 1, 3 and 7 RTOs (the RTO doubling from
    ~204 ms), then the connection dies silently at the next expiry; the
    ACK arriving between two retransmissions stops them.  The emulation:
    the same FINs byte for byte at the same times (to the timer wheel's
    lateness), the same states in the tables."""
    case, run = retransmission
    flow = _flow(RTX, vid)
    count, states = RTX_EXPECTED[vid]
    theirs = fins(run, flow)
    assert len(theirs) == count, f"Linux sent {len(theirs)} FINs: {[round(t, 3) for t, _ in theirs]}"
    assert len({tcp_header(p)[2] for _, p in theirs}) == 1, "a retransmitted FIN has the first one's sequence number"
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(theirs)]
    conn = next(c for c in run.oracle.connections if (c.lport, c.pport) == flow)
    rto = conn.rto_us / 1e6
    for k, gap in enumerate(gaps):
        assert rto * 2 ** k - JIFFY <= gap <= allowance([rto * 2 ** k]) + rto * 2 ** k, (k, gaps, rto)
    assert _rows(run, case, flow) == states, "Linux's tables"
    assert_agree(flow_notes(case.name, run, flow) + state_notes(case, run, vid, flow))


@pytest.mark.kernel
def test_a_dead_connection_is_gone(retransmission: tuple[Case, Timeline]) -> None:
    """After its death an orphan's 4-tuple has no socket: the peer's ACK gets
    the listener's RST (seq = SEG.ACK), on Linux and in the emulation."""
    case, run = retransmission
    for vid in ("ORPHAN", "LASTACK", "V6ORPHAN"):
        assert _replies_to(run, case, f"{vid} ACK after its death") == [RST]
    assert_agree([n for v in ("ORPHAN", "LASTACK", "V6ORPHAN") for n in flow_notes(case.name, run, _flow(RTX, v))])


@pytest.mark.kernel
def test_shutdown_socket_times_out_with_etimedout(retransmission: tuple[Case, Timeline]) -> None:
    """After shutdown(SHUT_WR) the socket is the application's: when
    tcp_retries2 runs out it is CLOSE with ETIMEDOUT in SO_ERROR
    (tcp_write_err), on Linux and in the emulation."""
    case, run = retransmission
    j = case.call_labels.index("SHUTWR status")
    assert (run.oracle.calls[j].state, run.oracle.calls[j].so_error) == ("CLOSE", "ETIMEDOUT")
    assert (run.calls[j].state, run.calls[j].so_error) == ("CLOSE", "ETIMEDOUT")


# =========================================================================== the RTO's ceiling

CAP: dict[str, Flow] = {"RTOMAX": (LOCAL4, 80, PEER4, 43101), "SHUTCAP": (LOCAL4, 80, PEER4, 43102)}
#: tcp_orphan_retries 0 means 8 only while the RTO is below tcp_rto_max_ms
CAP_SYSCTLS = {"net.ipv4.tcp_orphan_retries": 0, "net.ipv4.tcp_rto_max_ms": 1000}


@pytest.fixture(scope="module")
def ceiling(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = Case("rto ceiling", host_toml([*connection_sockets(CAP, reuseaddr=True), LISTENER], sysctls=CAP_SYSCTLS),
                settle=0.3)
    peer = Peer(case, CAP)
    case.call("RTOMAX", "close", gap=0.0, label="RTOMAX close")
    case.call("SHUTCAP", "shutdown_wr", gap=GAP, label="SHUTCAP shutdown")
    _status(case, "during", 2.0)
    _status(case, "after", 1.8)
    peer.send("RTOMAX", "ACK after its death", "A", 0, ack=2, gap=GAP)
    return case, run_timeline(kernel_oracle, case)


@pytest.mark.kernel
def test_rto_stops_doubling_at_tcp_rto_max_ms(ceiling: tuple[Case, Timeline]) -> None:
    """With tcp_rto_max_ms = 1000 the RTO doubles to 1 s and stays there;
    the orphan, whose tcp_orphan_retries 0 meant 8 while its RTO was below
    the maximum, dies at the first expiry with the RTO at the maximum
    (tcp_orphan_retries(sk, alive=false) is 0): 3 retransmissions.  The
    socket after shutdown(SHUT_WR) goes on every second (tcp_retries2 15)."""
    case, run = ceiling
    orphan, kept = fins(run, _flow(CAP, "RTOMAX")), fins(run, _flow(CAP, "SHUTCAP"))
    assert len(orphan) == 4, [round(t, 3) for t, _ in orphan]
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(kept)]
    assert len(kept) == 6 and all(1.0 - JIFFY <= g <= 1.0 + allowance([1.0]) for g in gaps[3:]), gaps
    assert _rows(run, case, _flow(CAP, "RTOMAX")) == ["FIN_WAIT1", None]
    assert _replies_to(run, case, "RTOMAX ACK after its death") == [RST]
    assert_agree([n for vid in CAP for n in flow_notes(case.name, run, _flow(CAP, vid))
                  + state_notes(case, run, vid, _flow(CAP, vid))])


# =========================================================================== the tail loss probe (SACK)

CLIENT_PEER, CLIENT_PORT = (PEER4, 7101), 40000
#: SYN-ACK options: MSS 1460, SACK-permitted, TS 5555/0, NOP, WS 7
FULL_OPTIONS = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + (5555).to_bytes(4, "big") + bytes(4) + b"\x01\x03\x03\x07"


@pytest.fixture(scope="module")
def probe(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    """connect(), the peer's SYN-ACK with SACK and timestamps 50 ms later
    (the RTT sample: RTO 252 ms), close() and silence."""
    sysctls = {"net.ipv4.ip_local_port_range": [CLIENT_PORT, CLIENT_PORT + 1], "net.ipv4.tcp_orphan_retries": 2}
    case = Case("tail loss probe", host_toml([], sysctls=sysctls), settle=0.3)
    peer = f"{CLIENT_PEER[0]}:{CLIENT_PEER[1]}"
    case.call("CLI", "connect", peer=peer, gap=0.0, label="CLI connect")
    case.add(segment(CLIENT_PEER[0], LOCAL4, CLIENT_PEER[1], CLIENT_PORT, "SA", seq=5000, ack=1, window=65535,
                     options=FULL_OPTIONS), gap=0.05, label="CLI SYN-ACK", ack_from_isn=True)
    case.call("CLI", "close", gap=0.05, label="CLI close")
    case.add(segment(CLIENT_PEER[0], LOCAL4, CLIENT_PEER[1], CLIENT_PORT, "A", seq=5001, ack=2, window=65535),
             gap=3.0, label="CLI ACK after its death", ack_from_isn=True)
    return case, run_timeline(kernel_oracle, case)


@pytest.mark.kernel
def test_sack_connection_probes_before_the_rto(probe: tuple[Case, Timeline]) -> None:
    """With SACK the first FIN again is the tail loss probe, one RTO after
    the FIN (min(2 SRTT + 200 ms, RTO)); the RTO timer restarts from it, so
    the retransmissions follow one and two RTOs later, until
    tcp_orphan_retries 2 ends it.  Timestamps on every FIN (TSval of the
    moment)."""
    case, run = probe
    flow = (CLIENT_PORT, CLIENT_PEER[1])
    theirs = fins(run, flow)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(theirs)]
    assert len(theirs) == 4, [round(t, 3) for t, _ in theirs]
    assert abs(gaps[1] - gaps[0]) <= allowance([gaps[0]]) and gaps[2] >= 1.8 * gaps[1], gaps
    assert _replies_to(run, case, "CLI ACK after its death") == [RST]
    assert_agree(flow_notes(case.name, run, flow))


# =========================================================================== FIN_WAIT2 of an orphan

FW2: dict[str, Flow] = {"FW2": (LOCAL4, 80, PEER4, 43201), "SHUTFW2": (LOCAL4, 80, PEER4, 43202),
                        "V6FW2": (LOCAL6, 80, PEER6, 43203)}


@pytest.fixture(scope="module")
def fin_wait2(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    """tcp_fin_timeout 2: the orphan's FIN_WAIT2 (after close(), or close()
    after shutdown(SHUT_WR) and the ACK) lives 2 s; segments during it are
    answered as the FIN_WAIT2 timewait socket answers them, after it by the
    listener."""
    case = Case("fin_wait2", host_toml([*connection_sockets(FW2, reuseaddr=True), LISTENER],
                                       sysctls={"net.ipv4.tcp_fin_timeout": 2}), settle=0.2)
    peer = Peer(case, FW2)
    case.call("FW2", "close", gap=0.0, label="FW2 close")
    peer.send("FW2", "ACK of our FIN", "A", 0, ack=2, gap=GAP)
    case.call("SHUTFW2", "shutdown_wr", gap=GAP, label="SHUTFW2 shutdown")
    peer.send("SHUTFW2", "ACK of our FIN", "A", 0, ack=2, gap=GAP)
    case.call("SHUTFW2", "close", gap=0.1, label="SHUTFW2 close")
    case.call("V6FW2", "close", gap=GAP, label="V6FW2 close")
    peer.send("V6FW2", "ACK of our FIN", "A", 0, ack=2, gap=GAP)
    peer.send("FW2", "ACK again", "A", 0, ack=2, gap=1.0)
    peer.send("V6FW2", "data", "PA", 0, ack=2, payload=b"late", gap=GAP)
    _status(case, "during")
    peer.send("FW2", "ACK after 2.5 s", "A", 0, ack=2, gap=1.5)
    peer.send("SHUTFW2", "ACK after 2.4 s", "A", 0, ack=2, gap=GAP)
    _status(case, "after")
    return case, run_timeline(kernel_oracle, case)


@pytest.mark.kernel
def test_orphan_fin_wait2_lives_tcp_fin_timeout(fin_wait2: tuple[Case, Timeline]) -> None:
    """During tcp_fin_timeout a duplicate ACK is ignored and data gets a RST
    (the FIN_WAIT2 substate); after it the 4-tuple is free and an ACK gets
    the listener's RST.  No FIN is retransmitted once ACKed."""
    case, run = fin_wait2
    assert _replies_to(run, case, "FW2 ACK again") == []
    assert _replies_to(run, case, "V6FW2 data") == [RST]
    assert _replies_to(run, case, "FW2 ACK after 2.5 s") == [RST]
    assert _replies_to(run, case, "SHUTFW2 ACK after 2.4 s") == [RST]
    for vid, states in (("FW2", ["FIN_WAIT2", None]), ("SHUTFW2", ["FIN_WAIT2", None]), ("V6FW2", [None, None])):
        assert _rows(run, case, _flow(FW2, vid)) == states, vid
    notes = []
    for vid in FW2:
        flow = _flow(FW2, vid)
        assert len(fins(run, flow)) == 1
        notes += state_notes(case, run, vid, flow)
        notes += differences(case, run, SLACK, labels=vid + " ", flows=[flow], sockets=[])
    assert_agree(notes)


@pytest.fixture(scope="module")
def fin_wait2_rto(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    """tcp_fin_timeout 0: tcp_fin_time is 3.5 RTO (~0.73 s), the RTO as the
    ACK of the FIN left it (its RTT sample: 20 ms)."""
    flows = {"FW2RTO": (LOCAL4, 80, PEER4, 43301)}
    case = Case("fin_wait2 3.5 rto", host_toml([*connection_sockets(flows, reuseaddr=True), LISTENER],
                                               sysctls={"net.ipv4.tcp_fin_timeout": 0}), settle=0.2)
    peer = Peer(case, flows)
    case.call("FW2RTO", "close", gap=0.0, label="FW2RTO close")
    peer.send("FW2RTO", "ACK of our FIN", "A", 0, ack=2, gap=GAP)
    _status(case, "during", 0.5)
    _status(case, "after", 0.5)
    peer.send("FW2RTO", "ACK after 1 s", "A", 0, ack=2, gap=GAP)
    return case, run_timeline(kernel_oracle, case)


@pytest.mark.kernel
def test_fin_timeout_is_at_least_three_and_a_half_rto(fin_wait2_rto: tuple[Case, Timeline]) -> None:
    case, run = fin_wait2_rto
    flow = (80, 43301)
    assert _rows(run, case, flow) == ["FIN_WAIT2", None]
    assert _replies_to(run, case, "FW2RTO ACK after 1 s") == [RST]
    assert_agree(differences(case, run, SLACK, flows=[flow], sockets=[]) + state_notes(case, run, "FW2RTO", flow))


# =========================================================================== close() with unread data

UNREAD: dict[str, Flow] = {
    "UNREAD": (LOCAL4, 80, PEER4, 43401), "UNREADCW": (LOCAL4, 80, PEER4, 43402),
    "READ": (LOCAL4, 80, PEER4, 43403), "FINONLY": (LOCAL4, 80, PEER4, 43404),
    "V6UNREAD": (LOCAL6, 80, PEER6, 43405),
}


@pytest.fixture(scope="module")
def unread(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = Case("unread", host_toml([*connection_sockets(UNREAD, reuseaddr=True), LISTENER]), settle=0.05)
    peer = Peer(case, UNREAD)
    peer.send("UNREAD", "data", "PA", 0, payload=b"hello", gap=0.0)
    case.call("UNREAD", "close", gap=GAP, label="UNREAD close")
    peer.send("UNREADCW", "data and FIN", "FPA", 0, payload=b"bye", gap=GAP)
    case.call("UNREADCW", "close", gap=0.06, label="UNREADCW close")
    peer.send("READ", "data", "PA", 0, payload=b"hello", gap=GAP)
    case.call("READ", "recv", gap=GAP, label="READ recv")
    case.call("READ", "close", gap=GAP, label="READ close")
    peer.send("FINONLY", "FIN", "FA", 0, gap=GAP)
    case.call("FINONLY", "close", gap=GAP, label="FINONLY close")
    peer.send("V6UNREAD", "data", "PA", 0, payload=b"hello", gap=GAP)
    case.call("V6UNREAD", "close", gap=GAP, label="V6UNREAD close")
    _status(case, "at the end")
    peer.send("UNREAD", "more data", "PA", 5, payload=b"again", gap=GAP)
    return case, run_timeline(kernel_oracle, case)


#: vector id → Linux's answer to close() (TCP flags) and the state left
UNREAD_EXPECTED = {
    "UNREAD": ([RST_ACK], None), "UNREADCW": ([RST_ACK], None), "READ": ([FIN_ACK], "FIN_WAIT1"),
    "FINONLY": ([FIN_ACK], "LAST_ACK"), "V6UNREAD": ([RST_ACK], None),
}


@pytest.mark.kernel
@pytest.mark.parametrize("vid", list(UNREAD_EXPECTED))
def test_close_with_unread_data_resets(unread: tuple[Case, Timeline], vid: str) -> None:
    """close() with received data unread: RST+ACK from the socket (seq =
    SND.NXT, ack = RCV.NXT, its window and IPv4 ID), the connection gone;
    read data, or only the peer's FIN, leave the FIN.  (Linux delays its ACK
    of data with a FIN by ~40 ms: the FIN puts the socket in pingpong mode,
    and delayed ACKs are not modelled; hence the slack.)"""
    case, run = unread
    replies, state = UNREAD_EXPECTED[vid]
    j = case.call_labels.index(f"{vid} close")
    assert [tcp_flags(p) for p in run.oracle.calls[j].reply_bytes] == replies
    flow = _flow(UNREAD, vid)
    assert _rows(run, case, flow) == [state]
    assert_agree(flow_notes(case.name, run, flow, slack=0.05) + state_notes(case, run, vid, flow))


@pytest.mark.kernel
def test_reset_connection_leaves_no_entry(unread: tuple[Case, Timeline]) -> None:
    """After the RST the 4-tuple is free: more data gets the listener's RST."""
    case, run = unread
    assert _replies_to(run, case, "UNREAD more data") == [RST]
    assert ("10.0.0.1", 80, "10.0.0.2", 43401, "ESTABLISHED") not in emulated_table(run.kernel)
    assert_agree(differences(case, run, SLACK, labels="UNREAD more", flows=[_flow(UNREAD, "UNREAD")], sockets=[]))
