"""The application's close() and shutdown(SHUT_WR) and the states after
them, compared with Linux (pktdemux.oracle) on the kernel's timeline (spec
§3.6, §3.7): CLOSE_WAIT → LAST_ACK → closed; the server's active close
FIN_WAIT1 → FIN_WAIT2 → TIME_WAIT, CLOSING, FIN+ACK at once; data after
close(); shutdown(SHUT_WR); then what a TIME_WAIT entry does with a
retransmitted FIN, an out-of-window segment, a RST, a new SYN (accepted by
the listener with ISN = the entry's SND.NXT + 65537) and an old one; and,
in its own slow test, the entry gone after TCP_TIMEWAIT_LEN (60 s).

Every connection is made by the oracle (its handshake, then accept()) on
port 80, where a dual-stack listener created after them (SO_REUSEADDR)
takes what no connection takes.  ``status`` calls read the namespace's TCP
table at the points where a state is checked.  Each test checks the steps
of one vector (labels starting with its id) and its connection's table
lines, so that one disagreement does not hide the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kernel_support import Case, assert_agree, host_toml
from lifecycle_support import (
    Flow,
    Peer,
    Timeline,
    connection_sockets,
    differences,
    emulated_table,
    kernel_table,
    run_timeline,
)
from tcp_helpers import tcp_flags, tcp_header

LOCAL4, LOCAL6, PEER4, PEER6 = "10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"
RST, SYN_ACK, ACK, RST_ACK, FIN_ACK = 0x04, 0x12, 0x10, 0x14, 0x11
#: Replies to a packet or a call come at once: to within the kernel's next
#: tick (HZ=250 here), and the oracle's reading (a ``status`` call blocks it
#: for ~10 ms).
SLACK = 0.03
#: Seconds between the steps of one vector; a ``status`` call needs ~10 ms.
GAP = 0.02
#: tcp_timewait_state_process: a new connection in place of a TIME_WAIT entry
#: starts at the entry's SND.NXT + 65535 + 2.
TW_ISN_GAP = 65537

#: vector id → its connection (local address, port, peer address, peer port)
CONNECTIONS: dict[str, Flow] = {
    "LASTACK": (LOCAL4, 80, PEER4, 41001), "ACTIVE": (LOCAL4, 80, PEER4, 41002),
    "CLOSING": (LOCAL4, 80, PEER4, 41003), "FINACK": (LOCAL4, 80, PEER4, 41004),
    "FW1DATA": (LOCAL4, 80, PEER4, 41005), "FW2DATA": (LOCAL4, 80, PEER4, 41006),
    "SHUTWR": (LOCAL4, 80, PEER4, 41007), "TWFIN": (LOCAL4, 80, PEER4, 41008),
    "TWOOW": (LOCAL4, 80, PEER4, 41009), "TWRST": (LOCAL4, 80, PEER4, 41010),
    "TWRSTOOW": (LOCAL4, 80, PEER4, 41011), "TWSYN": (LOCAL4, 80, PEER4, 41012),
    "TWSYNOLD": (LOCAL4, 80, PEER4, 41013), "V6TWSYN": (LOCAL6, 80, PEER6, 41014),
}

LISTENER = {"name": "web", "label": "tcp://[::]:80", "listen": 8, "reuseaddr": True}
HOST = host_toml([*connection_sockets(CONNECTIONS, reuseaddr=True), LISTENER])


def _to_timewait(peer: Peer, vid: str) -> None:
    """The server's active close: close(), the peer's ACK of the FIN, the peer's FIN."""
    peer.case.call(vid, "close", gap=GAP, label=f"{vid} close")
    peer.send(vid, "ACK of our FIN", "A", 0, ack=2, gap=GAP)
    peer.send(vid, "FIN", "FA", 0, ack=2, gap=GAP)


def _status(case: Case, vid: str, what: str) -> None:
    """Read the TCP table (through the listener, which stays open)."""
    case.call("web", "status", gap=GAP, label=f"{vid} status {what}")


def _close_case() -> Case:
    case = Case("close", HOST, settle=0.1)
    peer = Peer(case, CONNECTIONS)
    send = peer.send
    # the peer closes first; then the application
    send("LASTACK", "FIN", "FA", 0, gap=0.0)
    _status(case, "LASTACK", "after the FIN")
    case.call("LASTACK", "close", gap=GAP, label="LASTACK close")
    _status(case, "LASTACK", "after close")
    send("LASTACK", "ACK of our FIN", "A", 1, ack=2, gap=GAP)
    send("LASTACK", "ACK again", "A", 1, ack=2, gap=GAP)
    _status(case, "LASTACK", "at the end")
    # the application closes first
    case.call("ACTIVE", "close", gap=GAP, label="ACTIVE close")
    _status(case, "ACTIVE", "after close")
    send("ACTIVE", "ACK of our FIN", "A", 0, ack=2, gap=GAP)
    _status(case, "ACTIVE", "after the ACK")
    send("ACTIVE", "FIN", "FA", 0, ack=2, gap=GAP)
    _status(case, "ACTIVE", "after the FIN")
    # both close at once: the peer's FIN does not ACK ours
    case.call("CLOSING", "close", gap=GAP, label="CLOSING close")
    send("CLOSING", "FIN not acking ours", "FA", 0, ack=1, gap=GAP)
    _status(case, "CLOSING", "after the FIN")
    send("CLOSING", "ACK of our FIN", "A", 1, ack=2, gap=GAP)
    _status(case, "CLOSING", "at the end")
    # the peer's FIN acks ours at once
    case.call("FINACK", "close", gap=GAP, label="FINACK close")
    send("FINACK", "FIN acking ours", "FA", 0, ack=2, gap=GAP)
    _status(case, "FINACK", "at the end")
    # data after close(): in FIN_WAIT1, and in FIN_WAIT2
    case.call("FW1DATA", "close", gap=GAP, label="FW1DATA close")
    send("FW1DATA", "data not acking our FIN", "PA", 0, ack=1, payload=b"late", gap=GAP)
    _status(case, "FW1DATA", "at the end")
    case.call("FW2DATA", "close", gap=GAP, label="FW2DATA close")
    send("FW2DATA", "ACK of our FIN", "A", 0, ack=2, gap=GAP)
    send("FW2DATA", "data", "PA", 0, ack=2, payload=b"late", gap=GAP)
    _status(case, "FW2DATA", "at the end")
    # shutdown(SHUT_WR): the socket still receives
    case.call("SHUTWR", "shutdown_wr", gap=GAP, label="SHUTWR shutdown")
    send("SHUTWR", "ACK of our FIN", "A", 0, ack=2, gap=GAP)
    _status(case, "SHUTWR", "after the ACK")
    send("SHUTWR", "data", "PA", 0, ack=2, payload=b"more", gap=GAP)
    case.call("SHUTWR", "recv", gap=GAP, label="SHUTWR recv")
    send("SHUTWR", "FIN", "FA", 4, ack=2, gap=GAP)
    _status(case, "SHUTWR", "at the end")
    # TIME_WAIT
    for vid in ("TWFIN", "TWOOW", "TWRST", "TWRSTOOW", "TWSYN", "TWSYNOLD", "V6TWSYN"):
        _to_timewait(peer, vid)
    send("TWFIN", "FIN again", "FA", 0, ack=2, gap=GAP)
    send("TWOOW", "data far out of window", "PA", 10**8, ack=2, payload=b"x", gap=GAP)
    send("TWRST", "RST at RCV.NXT", "R", 1, ack=None, gap=GAP)
    send("TWRST", "ACK after it", "A", 1, ack=2, gap=GAP)
    send("TWRSTOOW", "RST not at RCV.NXT", "R", 1000, ack=None, gap=GAP)
    send("TWRSTOOW", "FIN again", "FA", 0, ack=2, gap=GAP)
    send("TWSYN", "new SYN", "S", 100_000, ack=None, gap=GAP, complete_handshake=True)
    send("TWSYNOLD", "old SYN", "S", -100_000, ack=None, gap=GAP)
    send("V6TWSYN", "new SYN", "S", 100_000, ack=None, gap=GAP, complete_handshake=True)
    _status(case, "TW", "at the end")
    return case


@pytest.fixture(scope="module")
def closing(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = _close_case()
    return case, run_timeline(kernel_oracle, case)



#: vector id → Linux's replies per step of the vector (TCP flags, in step
#: order, calls included), and its connection's state in each ``status``
#: table of the vector and in the last one (None: no line)
EXPECTED: dict[str, tuple[list[list[int]], list[str | None]]] = {
    "LASTACK": ([[ACK], [], [FIN_ACK], [], [], [RST], []], ["CLOSE_WAIT", "LAST_ACK", None, None]),
    "ACTIVE": ([[FIN_ACK], [], [], [], [ACK], []], ["FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "TIME_WAIT"]),
    "CLOSING": ([[FIN_ACK], [ACK], [], [], []], ["CLOSING", "TIME_WAIT", "TIME_WAIT"]),
    "FINACK": ([[FIN_ACK], [ACK], []], ["TIME_WAIT", "TIME_WAIT"]),
    "FW1DATA": ([[FIN_ACK], [RST], []], [None, None]),
    "FW2DATA": ([[FIN_ACK], [], [RST], []], [None, None]),
    "SHUTWR": ([[FIN_ACK], [], [], [ACK], [], [ACK], []], ["FIN_WAIT2", "TIME_WAIT", "TIME_WAIT"]),
    "TWFIN": ([[FIN_ACK], [], [ACK], [ACK]], ["TIME_WAIT"]),
    "TWOOW": ([[FIN_ACK], [], [ACK], [ACK]], ["TIME_WAIT"]),
    "TWRST": ([[FIN_ACK], [], [ACK], [], [RST]], [None]),
    "TWRSTOOW": ([[FIN_ACK], [], [ACK], [], [ACK]], ["TIME_WAIT"]),
    "TWSYN": ([[FIN_ACK], [], [ACK], [SYN_ACK]], ["ESTABLISHED"]),
    "TWSYNOLD": ([[FIN_ACK], [], [ACK], [ACK]], ["TIME_WAIT"]),
    "V6TWSYN": ([[FIN_ACK], [], [ACK], [SYN_ACK]], ["ESTABLISHED"]),
}


def _steps(run: Timeline, case: Case, vid: str) -> list[tuple[float, list[bytes]]]:
    """(time, Linux's replies) of each step of vector ``vid``, in time order."""
    prefix = vid + " "
    steps = [(p.sent_at, list(p.reply_bytes)) for p, label in zip(run.oracle.packets, case.labels)
             if label.startswith(prefix)]
    steps += [(c.at, list(c.reply_bytes)) for c, label in zip(run.oracle.calls, case.call_labels)
              if label.startswith(prefix)]
    return sorted(steps, key=lambda step: step[0])


def _states(run: Timeline, case: Case, vid: str, *, emulated: bool = False) -> list[str | None]:
    """The connection's state in each ``status`` table of the vector, then
    in the last one of the case."""
    _, lport, _, rport = CONNECTIONS[vid]
    picked = [j for j, label in enumerate(case.call_labels) if label.startswith(f"{vid} status")]
    picked.append(len(case.call_labels) - 1)
    tables = [run.calls[j].table if emulated else kernel_table(run.oracle.calls[j]) for j in picked]
    return [next((row[4] for row in table if (row[1], row[3]) == (lport, rport)), None) for table in tables]


#: vector id → why the emulation is known to disagree (a strict xfail)
_XFAIL: dict[str, str] = {}


@pytest.mark.kernel
@pytest.mark.parametrize("vid", [pytest.param(v, marks=pytest.mark.xfail(strict=True, reason=_XFAIL[v]))
                                 if v in _XFAIL else v for v in EXPECTED])
def test_close_and_time_wait(closing: tuple[Case, Timeline], vid: str) -> None:
    """Linux's replies and states as spec §3.6/§3.7 say, then the emulation
    byte for byte (timer output included), its states in the same tables and
    the sockets' receipts."""
    case, run = closing
    replies, states = EXPECTED[vid]
    assert [[tcp_flags(p) for p in r] for _, r in _steps(run, case, vid)] == replies, \
        "Linux did not reply as spec §3.6/§3.7 say"
    assert _states(run, case, vid) == states, "Linux's TCP table does not hold the states spec §3.6/§3.7 say"
    _, lport, _, rport = CONNECTIONS[vid]
    notes = differences(case, run, SLACK, labels=vid + " ", flows=[(lport, rport)], sockets=[])
    mine = _states(run, case, vid, emulated=True)
    if mine != states:
        notes.append(f"[{case.name}] {vid}: states in the status tables: Linux {states}, the emulation {mine}")
    assert_agree(notes)


@pytest.mark.kernel
def test_shutdown_write_keeps_receiving(closing: tuple[Case, Timeline]) -> None:
    """After shutdown(SHUT_WR) the socket is no orphan: FIN_WAIT2 takes
    data (ACKed, read by the application) where a closed socket's FIN_WAIT2
    answers it with a RST (FW2DATA), then the FIN gives TIME_WAIT."""
    case, run = closing
    (data,) = [c.data for c, label in zip(run.oracle.calls, case.call_labels) if label == "SHUTWR recv"]
    assert data == b"more"
    assert run.socket("SHUTWR").rx_bytes == len(data)
    assert _states(run, case, "SHUTWR", emulated=True) == _states(run, case, "SHUTWR") == EXPECTED["SHUTWR"][1]
    (ack,) = run.emulated[case.labels.index("SHUTWR data")].replies
    assert tcp_flags(ack) == ACK


@pytest.mark.kernel
@pytest.mark.parametrize("vid", ["TWSYN", "V6TWSYN"])
def test_new_syn_into_time_wait_starts_at_snd_nxt_plus_65537(closing: tuple[Case, Timeline], vid: str) -> None:
    """The SYN-ACK's ISN is exactly the TIME_WAIT entry's SND.NXT (the
    connection's ISN + 2: SYN and FIN) + 65537, on Linux and in the
    emulation (compared unmasked); the listener accepts the connection."""
    case, run = closing
    i = case.labels.index(f"{vid} new SYN")
    conn = next(c for c in run.oracle.connections if (c.lport, c.pport) == CONNECTIONS[vid][1::2])
    want = (conn.local_isn + 2 + TW_ISN_GAP) & 0xFFFFFFFF
    (kernel_synack,) = [p for p in run.oracle.packets[i].reply_bytes if tcp_flags(p) == SYN_ACK]
    emulated = [p for p in run.emulated[i].replies if tcp_flags(p) == SYN_ACK]
    assert tcp_header(kernel_synack)[2] == want
    assert [tcp_header(p)[2] for p in emulated] == [want]
    accepted = [(a.pport, a.lport) for a in run.report("web").accepted]
    assert (CONNECTIONS[vid][3], 80) in accepted


@pytest.mark.kernel
def test_no_socket_is_left_to_the_application_after_close(closing: tuple[Case, Timeline]) -> None:
    """After close() the emulated connections are orphans: the ones that
    ended (RST, last ACK) left the bound sockets; TIME_WAIT entries hold
    their port until they expire."""
    _, run = closing
    bound = {s.display_name for s in run.kernel.sockets}
    assert {"LASTACK", "FW1DATA", "FW2DATA", "TWRST"}.isdisjoint(bound)
    assert {"ACTIVE", "TWFIN", "SHUTWR"} <= bound
    assert ("10.0.0.1", 80, "10.0.0.2", 41008, "TIME_WAIT") in emulated_table(run.kernel)


# =========================================================================== TIME_WAIT lifetime (slow)

#: TCP_TIMEWAIT_LEN; Linux's timer wheel (HZ=250) rounds a 60 s timer up by
#: as much as 2.048 s, so the entry is sure to be gone 2.5 s later.
TIMEWAIT_LEN, WHEEL_SLACK = 60.0, 2.5
LIFETIME: dict[str, Flow] = {"TWLIFE": (LOCAL4, 80, PEER4, 42001), "TWLIFE81": (LOCAL4, 81, PEER4, 42002)}


@pytest.mark.kernel
def test_time_wait_entry_is_gone_after_60_seconds(kernel_oracle: Callable[..., Any]) -> None:
    """Two TIME_WAIT entries, one on the listener's port, one on a port
    without a socket: during their lifetime a bare FIN (no ACK: the timer is
    not restarted) gets the TIME_WAIT ACK; 62.5 s after they began, the
    peer's ACK of the old connection gets a RST (seq = SEG.ACK, from the
    listener / no socket) and the table has no entry.  ~63 s of wall time."""
    case = Case("time-wait lifetime", host_toml([*connection_sockets(LIFETIME, reuseaddr=True), LISTENER]),
                settle=0.05)
    peer = Peer(case, LIFETIME)
    for vid in LIFETIME:
        _to_timewait(peer, vid)
    entered = case.last_offset or 0.0
    for vid in LIFETIME:
        peer.send(vid, "bare FIN", "F", 0, ack=None, gap=1.0)
    _status(case, "LIFE", "during")
    for i, vid in enumerate(LIFETIME):
        gap = entered + TIMEWAIT_LEN + WHEEL_SLACK - (case.last_offset or 0.0) if i == 0 else GAP
        peer.send(vid, "ACK after 62.5 s", "A", 1, ack=2, gap=gap)
    _status(case, "LIFE", "after")
    run = run_timeline(kernel_oracle, case)
    flows = [(lport, rport) for _, lport, _, rport in LIFETIME.values()]
    for vid, flow in zip(LIFETIME, flows):
        assert [[tcp_flags(p) for p in r] for _, r in _steps(run, case, vid)] == [[FIN_ACK], [], [ACK], [ACK], [RST]]
        rows = [[row[4] for row in kernel_table(c) if (row[1], row[3]) == flow] for c in run.oracle.calls
                if c.call == "status"]
        assert rows == [["TIME_WAIT"], []], "Linux's entry did not live as long as spec §3.7 says"
    assert_agree(differences(case, run, SLACK, flows=flows, sockets=[]))
