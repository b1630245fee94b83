"""The application's TCP calls on the emulated kernel, without a real
kernel (their kernel comparisons: test_differential_close.py and
test_differential_connect.py): close() and shutdown(SHUT_WR) of a
connection, connect() with its handshake and the SYN retransmission timer,
ICMP errors for a connecting socket, SO_ERROR."""

from __future__ import annotations

import errno
import itertools

import pytest
from ip_vectors import icmp4
from tcp_helpers import T0, make_kernel, segment, tcp_flags, tcp_header
from test_tcp_api import LOCAL, PEER, handshake, server

from pktdemux.sockets import Proto, TcpState

ACK, SYN, RST, FIN_ACK = 0x10, 0x02, 0x04, 0x11



def _connection():  # type: ignore[no-untyped-def]
    kernel = make_kernel()
    server(kernel)
    isn, verdict = handshake(kernel)
    return kernel, verdict.sockets[0], isn


# (peer segments before, the call, peer segments after: (flags, seq from 101, ack from the ISN)) →
# (flags of what the call sends, state after the call, flags of the replies after, state at the end)
CLOSE_CASES = {
    "close in ESTABLISHED, ACK, FIN": ((), "close", (("A", 0, 2), ("FA", 0, 2)),
                                      ([FIN_ACK], TcpState.FIN_WAIT1, [[], [ACK]], TcpState.TIME_WAIT)),
    "FIN, close in CLOSE_WAIT, ACK": ((("FA", 0, 1),), "close", (("A", 1, 2),),
                                     ([FIN_ACK], TcpState.LAST_ACK, [[]], TcpState.CLOSE)),
    "close, FIN not acking ours, ACK": ((), "close", (("FA", 0, 1), ("A", 1, 2)),
                                        ([FIN_ACK], TcpState.FIN_WAIT1, [[ACK], []], TcpState.TIME_WAIT)),
    "close, ACK, data": ((), "close", (("A", 0, 2), ("PA", 0, 2)),
                         ([FIN_ACK], TcpState.FIN_WAIT1, [[], [RST]], TcpState.CLOSE)),
    "shutdown, ACK, data": ((), "shutdown", (("A", 0, 2), ("PA", 0, 2)),
                            ([FIN_ACK], TcpState.FIN_WAIT1, [[], [ACK]], TcpState.FIN_WAIT2)),
}


@pytest.mark.parametrize("name", list(CLOSE_CASES))
def test_close_and_shutdown(name: str) -> None:
    before, call, after, (sent_flags, state, replies, final) = *CLOSE_CASES[name][:3], CLOSE_CASES[name][3]
    kernel, conn, isn = _connection()
    now = T0 + 1

    def peer(flags: str, seq: int, ack: int) -> list[int]:
        nonlocal now
        now += 0.01
        payload = b"data" if "P" in flags else b""
        packet = segment(PEER, LOCAL, 40000, 2200, flags, 101 + seq, isn + ack, payload=payload)
        return [tcp_flags(p) for p in kernel.receive(packet, now, "tun0").replies]

    for step in before:
        peer(*step)
    sent = kernel.close(conn, now=now) if call == "close" else kernel.shutdown_write(conn, now=now)
    assert [tcp_flags(p) for p in sent] == sent_flags and conn.state is state
    assert tcp_header(sent[0])[2:4] == ((isn + 1) & 0xFFFFFFFF, 102 if before else 101)
    assert [peer(*step) for step in after] == replies
    assert conn.state is final


def test_closed_connection_leaves_the_bound_sockets_when_it_ends() -> None:
    kernel, conn, isn = _connection()
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "FA", 101, isn + 1), T0 + 1, "tun0")
    kernel.close(conn, now=T0 + 2)
    assert conn in kernel.sockets  # LAST_ACK: an orphan still holding its port
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 102, isn + 2), T0 + 3, "tun0")
    assert conn not in kernel.sockets and conn.state is TcpState.CLOSE


def _client(peer: str = PEER, port: int = 7000):  # type: ignore[no-untyped-def]
    kernel = make_kernel(sysctls={"net.ipv4.ip_local_port_range": (40000, 40001)})
    sock = kernel.socket(Proto.TCP, 4 if "." in peer else 6)
    (syn,) = kernel.connect(sock, peer, port, handshake=True, now=T0)
    return kernel, sock, syn


def test_connect_sends_the_syn_and_waits_in_syn_sent() -> None:
    kernel, sock, syn = _client()
    sport, dport, _, ack, flags, window = tcp_header(syn)
    assert (sport, dport, ack, flags, window) == (40000, 7000, 0, SYN, 64240)
    assert sock.state is TcpState.SYN_SENT and sock in kernel.sockets


def test_syn_retransmissions_are_linear_then_double_until_etimedout() -> None:
    """tcp_syn_linear_timeouts=4: 5 one-second gaps, then 2, 4, 8, 16, 32 s;
    the expiry after the 10th retransmission (tcp_syn_retries 6 + 4) ends
    the connect() with ETIMEDOUT."""
    kernel, sock, syn = _client()
    kernel.advance(T0 + 200)
    fired = [f for f in kernel.drain_timer_output() if f.packets]
    times = [T0] + [f.time for f in fired]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert gaps == [1, 1, 1, 1, 1, 2, 4, 8, 16, 32]
    assert all(tcp_header(f.packets[0])[2] == tcp_header(syn)[2] for f in fired)
    assert sock.state is TcpState.CLOSE and sock not in kernel.sockets
    assert kernel.so_error(sock) == errno.ETIMEDOUT and kernel.so_error(sock) == 0


# peer's answer: (flags, ack from the ISN) → (reply flags, state, SO_ERROR, SYN again within 10 ms)
SYN_SENT_CASES = {
    "SYN-ACK": (("SA", 1), [ACK], TcpState.ESTABLISHED, 0, False),
    "RST+ACK": (("RA", 1), [], TcpState.CLOSE, errno.ECONNREFUSED, False),
    "RST+ACK, wrong ACK": (("RA", 1001), [], TcpState.SYN_SENT, 0, True),
    "RST": (("R", 0), [], TcpState.SYN_SENT, 0, False),
    "ACK, wrong ACK": (("A", 1001), [RST], TcpState.SYN_SENT, 0, True),
}


@pytest.mark.parametrize("name", list(SYN_SENT_CASES))
def test_syn_sent(name: str) -> None:
    (flags, ack), replies, state, error, again = SYN_SENT_CASES[name]
    kernel, sock, syn = _client()
    isn = tcp_header(syn)[2]
    answer = segment(PEER, LOCAL, 7000, 40000, flags, 5000, (isn + ack) & 0xFFFFFFFF if "A" in flags else 0)
    assert [tcp_flags(p) for p in kernel.receive(answer, T0 + 0.1, "tun0").replies] == replies
    assert sock.state is state and kernel.so_error(sock) == error
    kernel.advance(T0 + 0.11)
    assert bool([f for f in kernel.drain_timer_output() if f.packets]) is again


@pytest.mark.parametrize(("code", "error"), [(3, errno.ECONNREFUSED), (1, errno.EHOSTUNREACH),
                                             (0, errno.ENETUNREACH), (13, errno.EHOSTUNREACH)])
def test_icmp_unreachable_for_the_syn_fails_the_connect(code: int, error: int) -> None:
    kernel, sock, syn = _client()
    quote = segment(LOCAL, PEER, 40000, 7000, "S", tcp_header(syn)[2])
    verdict = kernel.receive(icmp4(PEER, LOCAL, 3, code, rest=bytes(4), data=quote), T0 + 0.1, "tun0")
    assert verdict.sockets == (sock,) and sock.state is TcpState.CLOSE and sock not in kernel.sockets
    assert kernel.so_error(sock) == error


def test_icmp_quoting_another_sequence_number_is_ignored() -> None:
    kernel, sock, syn = _client()
    quote = segment(LOCAL, PEER, 40000, 7000, "S", tcp_header(syn)[2] + 5)
    kernel.receive(icmp4(PEER, LOCAL, 3, 3, rest=bytes(4), data=quote), T0 + 0.1, "tun0")
    assert sock.state is TcpState.SYN_SENT and kernel.so_error(sock) == 0


def test_close_in_syn_sent_sends_nothing_and_stops_the_timer() -> None:
    kernel, sock, _ = _client()
    assert kernel.close(sock, now=T0 + 0.5) == ()
    kernel.advance(T0 + 10)
    assert not [f for f in kernel.drain_timer_output() if f.packets]
    assert sock not in kernel.sockets
