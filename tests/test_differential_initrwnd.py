"""The route's initial receive window (``ip route ... initrwnd N``, the
RTAX_INITRWND metric; ``[host] initrwnd`` of a host file), compared with
Linux (pktdemux.oracle): tcp_select_initial_window caps a new connection's
window at N × MSS (the MSS less 12 with timestamps for a request; a
connect()'s full MSS), for the SYN-ACK (tcp_openreq_init_rwin) and for
connect()'s SYN (tcp_connect_init).  The socket then starts with
rcv_ssthresh at that window, which grows as data arrives
(:mod:`pktdemux.tcp_rcvbuf`), so every ACK that follows is compared too.

Each case is a namespace whose routes (the on-link prefixes and the
default routes, both families) carry one initrwnd, with an MTU and
tcp_rmem[1]: three connections a dual-stack listener accepts (IPv4 with
window scaling, IPv4 with timestamps, IPv6 with neither) and one the host
opens (IPv4 or IPv6), each receiving data.  Only the host's connection is
read (the listener's are never accepted).  The timing follows
tests/test_differential_rcvwindow.py: the connections take turns, and
every segment of a flow is paired by content within :data:`SLACK`.

Two cases set tcp_rmem[1] = 262144: since Linux 6.10 the initial window
is no longer capped at 65535 (only the SYN-ACK's field is), which the
ACKs after the handshake show.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kernel_support import Case, assert_agree, host_toml
from lifecycle_support import Timeline, flow_differences, run_timeline
from tcp_helpers import segment, tcp_header

LOCAL4, LOCAL6, PEER4, PEER6 = "10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"
SLACK = 0.07
TURN = 0.02
PORT = 80
CLIENT_PORT = 40000  # the only even port of ip_local_port_range: connect() takes it
CLIENT_PEER_PORT = 7100


def _ts(tsval: int) -> bytes:
    return b"\x01\x01\x08\x0a" + tsval.to_bytes(4, "big") + bytes(4)


@dataclass(frozen=True)
class Server:
    """A connection the listener accepts: the peer's SYN options."""

    peer: str
    pport: int
    options: bytes
    ts: bool = False


#: connection id → the peer's SYN
SERVERS = {
    # MSS 1460, NOP, WS 7, SACK-permitted, NOP, NOP: scaled window, no timestamps
    "S4": Server(PEER4, 43001, b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02\x01\x01"),
    # MSS 1400, SACK-permitted, timestamps, NOP, WS 9: the cap is N x (MSS - 12)
    "S4TS": Server(PEER4, 43002, b"\x02\x04\x05\x78\x04\x02\x08\x0a" + (777).to_bytes(4, "big") + bytes(4)
                   + b"\x01\x03\x03\x09", ts=True),
    # MSS 1440 only: no window scaling, the window is rounded to rcv_mss
    "S6": Server(PEER6, 43003, b"\x02\x04\x05\xa0"),
}
#: the SYN-ACK the host's connection gets: (peer, options)
CLIENTS = {
    4: (PEER4, b"\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07"),  # MSS 1460, SACK, WS 7
    6: (PEER6, b"\x02\x04\x05\xa0"),  # MSS 1440 only: no window scaling
}


@dataclass(frozen=True)
class Route:
    """One namespace: the routes' initrwnd, the MTU, tcp_rmem[1], the family of the host's connection."""

    initrwnd: int
    mtu: int = 1500
    rmem1: int | None = None
    client: int = 4

    @property
    def name(self) -> str:
        rmem = f"-rmem{self.rmem1}" if self.rmem1 else ""
        return f"initrwnd{self.initrwnd}-mtu{self.mtu}{rmem}-client{self.client}"

    def mss(self, family: int) -> int:
        return self.mtu - (40 if family == 4 else 60)


ROUTES = [
    Route(4),
    Route(10, client=6),
    Route(20, mtu=1400),
    Route(2, mtu=9000, client=6),
    Route(1),
    Route(60, rmem1=262144),
    Route(0, rmem1=262144, client=6),
    Route(64, client=6),  # more than the buffer's space: no cap
]


def _turns(full: int, read_every: int = 0) -> list[tuple[bool, int]]:
    """A connection's turns: (the application reads first, the segment's size)."""
    sizes = [full, full, 700, full, 300, full, full, 1000, full, full]
    return [(bool(read_every) and n % read_every == 0, min(size, full)) for n, size in enumerate(sizes)]


def _case(route: Route) -> Case:
    sysctls: dict[str, Any] = {"net.ipv4.ip_local_port_range": [40000, 40001]}
    if route.rmem1:
        sysctls["net.ipv4.tcp_rmem"] = [4096, route.rmem1, 33554432]
    host = host_toml([{"name": "web", "label": f"tcp://[::]:{PORT}", "listen": 16}], mtu=route.mtu,
                     sysctls=sysctls, initrwnd=route.initrwnd)
    case = Case(route.name, host, settle=0.2)
    plans: dict[str, list[tuple[bool, int]]] = {}
    tsvals: dict[str, int] = {}
    for vid, srv in SERVERS.items():
        family = 4 if srv.peer == PEER4 else 6
        local = LOCAL4 if family == 4 else LOCAL6
        case.add(segment(srv.peer, local, srv.pport, PORT, "S", seq=5000, window=64240, options=srv.options),
                 gap=TURN, label=f"{vid} handshake", complete_handshake=True)
        peer_mss = int.from_bytes(srv.options[2:4], "big")
        plans[vid] = _turns(min(peer_mss, route.mss(family)) - (12 if srv.ts else 0))
        tsvals[vid] = 778
    peer, options = CLIENTS[route.client]
    case.call("C", "connect", peer=f"{peer if route.client == 4 else '[' + peer + ']'}:{CLIENT_PEER_PORT}",
              gap=TURN, label="C connect")
    local = LOCAL4 if route.client == 4 else LOCAL6
    case.add(segment(peer, local, CLIENT_PEER_PORT, CLIENT_PORT, "SA", seq=5000, ack=1, window=65535,
                     options=options), gap=TURN, label="C SYN-ACK", ack_from_isn=True)
    plans["C"] = _turns(min(int.from_bytes(options[2:4], "big"), route.mss(route.client)), read_every=3)
    sent = dict.fromkeys(plans, 0)
    for turn in itertools.zip_longest(*plans.values()):
        for vid, step in zip(plans, turn):
            if step is None:
                continue
            read, size = step
            if read:  # after the ACK of its last segment, before its next one
                case.call(vid, "recv", gap=TURN / 4, label=f"{vid} recv")
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            if vid == "C":
                src, dst, sport, dport, opts = peer, local, CLIENT_PEER_PORT, CLIENT_PORT, b""
            else:
                srv = SERVERS[vid]
                src, dst, sport, dport = srv.peer, LOCAL4 if srv.peer == PEER4 else LOCAL6, srv.pport, PORT
                opts = _ts(tsvals[vid]) if srv.ts else b""
                tsvals[vid] += 1
            case.add(segment(src, dst, sport, dport, "PA", seq=5001 + sent[vid], ack=1, window=65535,
                             options=opts, payload=payload), gap=TURN, label=f"{vid} {size} bytes at +{sent[vid]}",
                     ack_from_isn=True)
            sent[vid] += size
    return case


@pytest.fixture(scope="module", params=ROUTES, ids=lambda r: r.name)
def run(request: pytest.FixtureRequest, kernel_oracle: Callable[..., Any]) -> tuple[Route, Case, Timeline]:
    route: Route = request.param
    case = _case(route)
    return route, case, run_timeline(kernel_oracle, case)


def _flows(route: Route) -> dict[str, tuple[int, int]]:
    flows = {vid: (PORT, srv.pport) for vid, srv in SERVERS.items()}
    flows["C"] = (CLIENT_PORT, CLIENT_PEER_PORT)
    return flows


def _kernel_segments(run: Timeline, flow: tuple[int, int]) -> list[bytes]:
    """What Linux sent on ``flow``, in time order (after packets and calls)."""
    replies = run.all_kernel() + [t for j in range(len(run.calls)) for t in run.call_replies(j)[0]]
    return [p for _, p in sorted(replies) if tcp_header(p)[:2] == flow]


def _initial_window(route: Route, mss: int) -> int:
    """tcp_select_initial_window as this test reads it: half of tcp_rmem[1]
    rounded down to the MSS, at most initrwnd x MSS; the field shows at most 65535."""
    space = (route.rmem1 or 131072) // 2
    space -= space % mss
    window = min(space, route.initrwnd * mss) if route.initrwnd else space
    return min(window, 0xFFFF)


@pytest.mark.kernel
def test_linux_initial_windows_are_those_the_test_explains(run: tuple[Route, Case, Timeline]) -> None:
    """The SYN-ACKs' and the SYN's windows: N x the MSS (less 12 with
    timestamps for a SYN-ACK) where that is below the buffer's space."""
    route, _, timeline = run
    flows = _flows(route)
    for vid, srv in SERVERS.items():
        family = 4 if srv.peer == PEER4 else 6
        synack = next(p for p in _kernel_segments(timeline, flows[vid]) if tcp_header(p)[4] & 0x12 == 0x12)
        expected = _initial_window(route, route.mss(family) - (12 if srv.ts else 0))
        assert tcp_header(synack)[5] == expected, f"{vid}: SYN-ACK window"
    syn = next(p for p in _kernel_segments(timeline, flows["C"]) if tcp_header(p)[4] & 0x12 == 0x02)
    assert tcp_header(syn)[5] == _initial_window(route, route.mss(route.client)), "connect()'s SYN window"


@pytest.mark.kernel
@pytest.mark.parametrize("vid", [*SERVERS, "C"])
def test_handshake_and_acks_byte_for_byte(run: tuple[Route, Case, Timeline], vid: str) -> None:
    """The SYN-ACK (or SYN), and every ACK of the data after it, as Linux sends them."""
    route, case, timeline = run
    flow = _flows(route)[vid]
    acks = [p for p in _kernel_segments(timeline, flow) if tcp_header(p)[4] & 0x3F == 0x10]
    assert len(acks) >= 5, f"Linux sent {len(acks)} ACKs on {vid}"
    assert_agree(flow_differences(case, timeline, flow, SLACK))
