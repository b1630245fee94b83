"""Connection lifecycles compared with Linux (pktdemux.oracle) on the
kernel's timeline: established connections (spec §3.6, §12.2 S16–S22) and
the listener's requests and queues (§3.4, §3.5, S11–S15, S23–S24), timer
output included (SYN-ACK retransmission ~1 s after a request was made).

Each namespace is run once per module; each test checks the packets of one
vector (labels starting with its id) and the sockets it names, so that one
disagreement does not hide the others.

TIME_WAIT (S25, S26) and the other states after the application's close()
are in test_differential_close.py; the host as a client in
test_differential_connect.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kernel_support import Case, assert_agree, host_toml
from lifecycle_support import Peer, Timeline, connection_sockets, differences, emulate
from tcp_helpers import segment, tcp_header, tcp_options

from pktdemux.oracle.host_sockets import PEER_ISN
from pktdemux.sockets import TcpState

LOCAL4, LOCAL6, PEER4, PEER6 = "10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"
#: RCV.NXT of every connection the oracle sets up (its SYN's seq + 1).
RCV_NXT = PEER_ISN + 1
MSS_ONLY = b"\x02\x04\x05\xb4"
#: Seconds between the listener cases' packets: the oracle sends a
#: handshake's final ACK up to ~3 ms after the SYN-ACK.
GAP = 0.01
RST, SYN_ACK, ACK, RST_ACK = 0x04, 0x12, 0x10, 0x14
#: No timer is involved in an established connection's replies: they must
#: come at the same time to within the kernel's next tick (HZ=250 here: a
#: delayed ACK with ato 0 leaves up to ~8 ms later).
IMMEDIATE_SLACK = 0.02


def flags(packet: bytes) -> int:
    return tcp_header(packet)[4] & 0x3F


def kernel_flags(run: Timeline, case: Case, prefix: str) -> list[list[int]]:
    """Per packet of the vector: the TCP flags of Linux's replies."""
    return [[flags(r.packet) for r in run.oracle.packets[i].replies]
            for i, label in enumerate(case.labels) if label.startswith(prefix)]


# =========================================================================== established connections

#: vector id → (local address, port, peer address, peer port); one connection each
CONNECTIONS = {
    "S16": (LOCAL4, 81, PEER4, 41001), "S17": (LOCAL4, 82, PEER4, 41002), "S18": (LOCAL4, 83, PEER4, 41003),
    "S19": (LOCAL4, 84, PEER4, 41004), "S20": (LOCAL4, 85, PEER4, 41005), "S21": (LOCAL4, 86, PEER4, 41006),
    "S22": (LOCAL4, 87, PEER4, 41007), "FIN": (LOCAL4, 88, PEER4, 41008), "ACKFAR": (LOCAL4, 89, PEER4, 41009),
    "V6": (LOCAL6, 90, PEER6, 41010),
}


ESTABLISHED_HOST = host_toml(connection_sockets(CONNECTIONS))


def _established_case() -> Case:
    case = Case("established", ESTABLISHED_HOST, settle=0.1)
    send = Peer(case, CONNECTIONS).send

    send("S16", "data at RCV.NXT", "PA", 0, payload=b"hello")
    send("S16", "more data", "PA", 5, payload=b"world")
    for j in range(3):
        send("S17", f"data 10^8 ahead #{j}", "PA", 10**8, payload=b"x" * 10)
    send("S18", "SYN", "S", 0, ack=None, seq=12345)
    send("S19", "RST at RCV.NXT+100", "R", 100, ack=None)
    send("S20", "RST far out of window", "R", 10**8, ack=None)
    send("S20", "data after it", "PA", 0, payload=b"still")
    send("S21", "RST at RCV.NXT", "R", 0, ack=None)
    send("S21", "data after it", "PA", 0, payload=b"gone")
    for j in range(5):
        send("S22", f"SYN #{j}", "S", 0, ack=None, seq=20000 + j, gap=0.001)
    send("FIN", "FIN", "FA", 0)
    send("FIN", "FIN again", "FA", 0, gap=0.2)
    send("ACKFAR", "ACK of unsent data", "A", 0, ack=1001)
    send("V6", "data at RCV.NXT", "PA", 0, payload=b"hello6")
    send("V6", "SYN", "S", 0, ack=None, seq=777)
    # tcp_invalid_ratelimit (500 ms) has passed for S22: one more challenge
    # ACK, and the out-of-window ACK right after it shares the limit
    send("S22", "SYN after 0.6 s", "S", 0, ack=None, seq=30000, gap=0.6)
    send("S22", "ACK out of window right after", "A", 10**8, gap=0.01)
    return case


@pytest.fixture(scope="module")
def established(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = _established_case()
    return case, emulate(case, kernel_oracle(case.scenario()))


#: vector id → (what Linux sends per packet, as TCP flag lists; what the
#: socket holds at the end: kernel recv() result, emulated state)
EXPECTED = {
    "S16": ([[ACK], [ACK]], (None, TcpState.ESTABLISHED)),
    "S17": ([[ACK], [ACK], [ACK]], (None, TcpState.ESTABLISHED)),
    "S18": ([[ACK]], (None, TcpState.ESTABLISHED)),
    "S19": ([[ACK]], (None, TcpState.ESTABLISHED)),
    "S20": ([[], [ACK]], (None, TcpState.ESTABLISHED)),
    "S21": ([[], [RST]], ("ECONNRESET", TcpState.CLOSE)),
    "S22": ([[ACK], [], [], [], [], [ACK], []], (None, TcpState.ESTABLISHED)),
    "FIN": ([[ACK], [ACK]], ("EOF", TcpState.CLOSE_WAIT)),
    "ACKFAR": ([[ACK]], (None, TcpState.ESTABLISHED)),
    "V6": ([[ACK], [ACK]], (None, TcpState.ESTABLISHED)),
}

#: vector id → why the emulation is known to disagree (a strict xfail)
_ESTABLISHED_XFAIL: dict[str, str] = {}


def _established_params() -> list[Any]:
    return [pytest.param(vid, marks=pytest.mark.xfail(strict=True, reason=_ESTABLISHED_XFAIL[vid]))
            if vid in _ESTABLISHED_XFAIL else vid for vid in EXPECTED]


@pytest.mark.kernel
@pytest.mark.parametrize("vid", _established_params())
def test_established_connection(established: tuple[Case, Timeline], vid: str) -> None:
    """S16 data → ACK; S17 out-of-window data → duplicate ACK each time;
    S18 SYN → challenge ACK; S19 in-window RST not at RCV.NXT → challenge
    ACK; S20 RST out of window → nothing; S21 RST at RCV.NXT → nothing and
    the connection is gone (the next segment gets a RST); S22 5 SYNs within
    5 ms → 1 challenge ACK, another 0.6 s later; FIN → ACK, CLOSE_WAIT;
    an ACK of unsent data; IPv6.  Replies byte for byte, and the socket's
    bytes and state at the end."""
    case, run = established
    replies, (recv_error, state) = EXPECTED[vid]
    assert kernel_flags(run, case, vid + " ") == replies, "Linux did not behave as spec §3.6 says"
    notes = differences(case, run, IMMEDIATE_SLACK, labels=vid + " ", sockets=[vid])
    report, sock = run.report(vid), run.socket(vid)
    assert report.recv_error == recv_error, "Linux's socket is not in the state spec §3.6 says"
    if sock.state is not state:
        notes.append(f"[{case.name}] socket {vid}: Linux's recv() gives {recv_error}, the emulated socket is "
                     f"{sock.state.value} (expected {state.value})")
    if sock.rx_bytes != len(report.data):
        notes.append(f"[{case.name}] socket {vid}: Linux holds {len(report.data)} bytes, the emulation "
                     f"delivered {sock.rx_bytes}")
    assert_agree(notes)


# =========================================================================== listeners

def _syn(sport: int, dport: int, seq: int, options: bytes = MSS_ONLY, flags_: str = "S", ack: int = 0) -> bytes:
    return segment(PEER4, LOCAL4, sport, dport, flags_, seq=seq, ack=ack, window=64240, options=options)


#: SYN options without timestamps: MSS 1460, NOP, WS 7, SACK-permitted, NOP, NOP
NO_TS = b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02\x01\x01"
#: MSS 1400, SACK-permitted, TS 777, NOP, WS 7 (spec S13)
WITH_TS = b"\x02\x04\x05\x78\x04\x02\x08\x0a" + (777).to_bytes(4, "big") + bytes(4) + b"\x01\x03\x03\x07"


def _overflow_vectors(case: Case, vid: str) -> None:
    """S14/S15 on port 620, listen(1): two connections fill the accept
    queue (B+1 = 2) while a third request waits; that request's final ACK
    comes with its retransmitted SYN (which gets the same SYN-ACK)."""
    case.add(_syn(42201, 620, 1000), gap=GAP, label=f"{vid} handshake a", complete_handshake=True)
    case.add(_syn(42203, 620, 3000), gap=GAP, label=f"{vid} SYN c (pending)")
    case.add(_syn(42202, 620, 2000), gap=GAP, label=f"{vid} handshake b (queue now full)", complete_handshake=True)
    case.add(_syn(42203, 620, 3000), gap=GAP, label=f"{vid} SYN c again + final ACK", complete_handshake=True)
    case.add(_syn(42204, 620, 4000), gap=GAP, label=f"{vid} SYN d", complete_handshake=True)


def _listener_case() -> Case:
    host = host_toml([
        {"name": "S11 listen(1)", "label": "tcp://10.0.0.1:90", "listen": 1},
        {"name": "S12 listen(2)", "label": "tcp://10.0.0.1:91", "listen": 2},
        {"name": "S14 listen(1)", "label": "tcp://10.0.0.1:620", "listen": 1},
        {"name": "requests", "label": "tcp://10.0.0.1:93", "listen": 128},
    ])
    # every packet is sent within 0.3 s; settle covers the first SYN-ACK
    # retransmission of each request (1 s after it, a few tens of ms late on Linux)
    case = Case("listeners", host, settle=1.3)
    for j in range(4):
        case.add(_syn(42001 + j, 90, 100 * j), gap=GAP, label=f"S11 handshake {j + 1}", complete_handshake=True)
    for j in range(5):
        case.add(_syn(42101 + j, 91, 500 * j + 1, NO_TS), gap=GAP, label=f"S12 SYN {j + 1}")
    case.add(_syn(42106, 91, 7000, WITH_TS), gap=GAP, label="S13 SYN with TS + final ACK", complete_handshake=True)
    _overflow_vectors(case, "S14")
    # pending requests on port 93 (listen 128)
    case.add(_syn(42301, 93, 500), gap=GAP, label="S23 SYN")
    case.add(_syn(42301, 93, 500), gap=GAP, label="S23 same SYN again")
    case.add(_syn(42301, 93, 9000), gap=GAP, label="S24 SYN seq 9000")
    case.add(_syn(42301, 93, 500), gap=GAP, label="S24 first SYN again (new request)")
    case.add(_syn(42302, 93, 700), gap=GAP, label="REQ-ACK SYN")
    case.add(_syn(42302, 93, 701, b"", "A", ack=12345), gap=GAP, label="REQ-ACK ACK with a wrong ack")
    case.add(_syn(42303, 93, 900), gap=GAP, label="REQ-RST SYN")
    case.add(_syn(42303, 93, 901, b"", "R"), gap=GAP, label="REQ-RST RST at RCV.NXT")
    case.add(_syn(42304, 93, 1100), gap=GAP, label="REQ-RSTWIN SYN")
    case.add(_syn(42304, 93, 1201, b"", "R"), gap=GAP, label="REQ-RSTWIN RST at RCV.NXT+100")
    case.add(_syn(42305, 93, 1300), gap=GAP, label="REQ-OOW SYN")
    case.add(_syn(42305, 93, 1301 + 10**8), gap=GAP, label="REQ-OOW SYN out of window")
    return case


@pytest.fixture(scope="module")
def listeners(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = _listener_case()
    return case, emulate(case, kernel_oracle(case.scenario()))


@pytest.fixture(scope="module")
def abort_on_overflow(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    host = host_toml([{"name": "S15 listen(1)", "label": "tcp://10.0.0.1:620", "listen": 1}],
                     sysctls={"net.ipv4.tcp_abort_on_overflow": 1})
    case = Case("abort on overflow", host, settle=0.1)
    _overflow_vectors(case, "S15")
    return case, emulate(case, kernel_oracle(case.scenario()))


#: Every packet of the listener cases is sent within this many seconds;
#: what Linux sends later is the SYN-ACK timer's.
LATE = 0.5


def _immediate(run: Timeline, case: Case, prefix: str) -> list[list[int]]:
    """Per packet of the vector: flags of Linux's replies before :data:`LATE`."""
    return [[flags(r.packet) for r in run.oracle.packets[i].replies if r.at < LATE]
            for i, label in enumerate(case.labels) if label.startswith(prefix)]


def _flows(case: Case, prefix: str) -> list[tuple[int, int]]:
    """(local port, peer port) of the vector's packets."""
    return sorted({(dport, sport) for sport, dport, *_ in
                   (tcp_header(p.packet) for p, label in zip(case.packets, case.labels) if label.startswith(prefix))})


def _retransmitted(run: Timeline, case: Case, prefix: str) -> int:
    """SYN-ACKs Linux sent on the vector's flows after :data:`LATE` (the
    timer's retransmissions, whichever packet they came after)."""
    flows = set(_flows(case, prefix))
    return sum(1 for p in run.oracle.packets for r in p.replies
               if r.at >= LATE and flags(r.packet) == SYN_ACK and tcp_header(r.packet)[:2] in flows)


def _disagreements(case: Case, run: Timeline, prefix: str, sockets: list[str]) -> list[str]:
    return differences(case, run, flows=_flows(case, prefix), sockets=sockets)


@pytest.mark.kernel
def test_accept_queue_overflow(listeners: tuple[Case, Timeline]) -> None:
    """S11: listen(1) holds B+1 = 2 connections; the SYNs after them get nothing."""
    case, run = listeners
    assert _immediate(run, case, "S11") == [[SYN_ACK], [SYN_ACK], [], []]
    assert len(run.report("S11 listen(1)").accepted) == 2
    assert_agree(_disagreements(case, run, "S11", ["S11 listen(1)"]))


@pytest.mark.kernel
def test_syn_cookies_when_requests_exceed_the_backlog(listeners: tuple[Case, Timeline]) -> None:
    """S12: listen(2) makes three requests, then answers with cookies (MSS
    option only without timestamps); only the three requests' SYN-ACKs are
    retransmitted.  S13: a cookie for a SYN with timestamps keeps the
    option set; its final ACK makes a connection."""
    case, run = listeners
    assert _immediate(run, case, "S12") == [[SYN_ACK]] * 5
    assert _retransmitted(run, case, "S12") == 3
    options = [tcp_options(run.oracle.packets[i].replies[0].packet) for i, label in enumerate(case.labels)
               if label.startswith(("S12", "S13"))]
    # MSS, SACK-permitted, WS for a request; MSS alone for a cookie without
    # timestamps; with timestamps MSS, SACK, TS (echoing 777), WS
    assert [o.hex()[:8] for o in options] == ["020405b4"] * 6
    assert [len(o) for o in options] == [12, 12, 12, 4, 4, 20]
    assert options[5][4:8] == b"\x04\x02\x08\x0a" and options[5][12:16] == (777).to_bytes(4, "big")
    assert len(run.report("S12 listen(2)").accepted) == 1
    assert_agree(_disagreements(case, run, "S12", []) + _disagreements(case, run, "S13", ["S12 listen(2)"]))


@pytest.mark.kernel
def test_final_ack_on_a_full_accept_queue_is_dropped(listeners: tuple[Case, Timeline]) -> None:
    """S14 (tcp_abort_on_overflow=0): the retransmitted SYN of the waiting
    request gets its SYN-ACK again, the final ACK is dropped, the request
    stays and its SYN-ACK is retransmitted by the timer; a new SYN gets nothing."""
    case, run = listeners
    assert _immediate(run, case, "S14") == [[SYN_ACK], [SYN_ACK], [SYN_ACK], [SYN_ACK], []]
    assert _retransmitted(run, case, "S14") == 1
    assert len(run.report("S14 listen(1)").accepted) == 2
    assert_agree(_disagreements(case, run, "S14", ["S14 listen(1)"]))


@pytest.mark.kernel
def test_final_ack_on_a_full_accept_queue_with_abort_on_overflow(
        abort_on_overflow: tuple[Case, Timeline]) -> None:
    """S15 (tcp_abort_on_overflow=1): the final ACK gets a RST, seq = SEG.ACK."""
    case, run = abort_on_overflow
    assert _immediate(run, case, "S15") == [[SYN_ACK], [SYN_ACK], [SYN_ACK], [SYN_ACK, RST], []]
    (_, final), (_, rst) = [(r.at, r.packet) for r in run.oracle.packets[3].replies]
    assert tcp_header(rst)[2] == (tcp_header(final)[2] + 1) & 0xFFFFFFFF
    assert_agree(_disagreements(case, run, "S15", ["S15 listen(1)"]))


#: vector → Linux's immediate replies per packet (spec §3.4), and how many
#: SYN-ACK retransmissions its request(s) get before the end
REQUESTS = {
    "S23": ([[SYN_ACK], [SYN_ACK]], None),
    "S24": ([[RST_ACK], [SYN_ACK]], 1),       # S23's request dropped; the new one retransmits
    "REQ-ACK": ([[SYN_ACK], [RST]], 1),       # the request stays
    "REQ-RST": ([[SYN_ACK], []], 0),          # the request is gone
    "REQ-RSTWIN": ([[SYN_ACK], None], None),  # in-window RST not at RCV.NXT: Linux decides
    "REQ-OOW": ([[SYN_ACK], [ACK]], 1),       # out of window: ACK, request kept
}

_REQUEST_XFAIL: dict[str, str] = {}


@pytest.mark.kernel
@pytest.mark.parametrize("vid", [
    pytest.param(v, marks=pytest.mark.xfail(strict=True, reason=_REQUEST_XFAIL[v])) if v in _REQUEST_XFAIL else v
    for v in REQUESTS])
def test_segments_for_a_pending_request(listeners: tuple[Case, Timeline], vid: str) -> None:
    """S23 retransmitted SYN → the same SYN-ACK; S24 in-window SYN with
    another seq → RST+ACK (seq 0, ack SEG.SEQ+1) and the request dropped;
    an ACK with a wrong ack → RST seq = SEG.ACK; RST at RCV.NXT → the
    request silently removed (no retransmission); an in-window RST not at
    RCV.NXT; an out-of-window SYN → ACK.  Compared byte for byte, timer
    output included."""
    case, run = listeners
    immediate, retransmits = REQUESTS[vid]
    seen = _immediate(run, case, vid + " ")
    assert all(want is None or got == want for got, want in zip(seen, immediate, strict=True)), seen
    if retransmits is not None:
        assert _retransmitted(run, case, vid + " ") == retransmits
    if vid == "S23":
        first, again = (run.oracle.packets[i].replies[0].packet for i, label in enumerate(case.labels)
                        if label.startswith("S23 "))
        assert tcp_header(first)[2] == tcp_header(again)[2]  # the same ISN
    assert_agree(_disagreements(case, run, vid + " ", []))
