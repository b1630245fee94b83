"""The TCP side seen through the socket API and the trace: accepted children
and TIME_WAIT entries hold their port and 4-tuple (spec §7.2, S45),
Kernel.accept, the offloaded-checksum rule, the explanation steps, and the
reply builder's checksums."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tcp_helpers import T0, make_kernel, segment, tcp_header

from pktdemux.errors import SocketError
from pktdemux.sockets import Proto, TcpState
from pktdemux.tcp_output import request_synack
from pktdemux.tcp_segment import ACK, FIN, SYN
from pktdemux.wire import (
    OFFLOADED_NOTE,
    PROTO_TCP,
    checksum,
    pseudo_header_sum,
    transport_checksum_ok,
)

PEER, LOCAL = "10.0.0.2", "10.0.0.1"


def server(kernel, port: int = 2200, *, reuseaddr: bool = False, inbox: bool = False):  # type: ignore[no-untyped-def]
    sock = kernel.socket(Proto.TCP, 4, reuseaddr=reuseaddr, name="srv")
    if inbox:
        sock.inbox = []
    kernel.bind(sock, LOCAL, port)
    kernel.listen(sock, 16)
    return sock


def handshake(kernel, port: int = 2200, sport: int = 40000, now: float = T0):  # type: ignore[no-untyped-def]
    """SYN and final ACK from the peer; returns (ISN, verdict of the ACK)."""
    synack = kernel.receive(segment(PEER, LOCAL, sport, port, "S", 100), now, "tun0").replies[0]
    isn = tcp_header(synack)[2]
    return isn, kernel.receive(segment(PEER, LOCAL, sport, port, "A", 101, isn + 1), now + 0.1, "tun0")


def server_timewait(kernel, port: int = 2200):  # type: ignore[no-untyped-def]
    """The server closes first: its FIN (a capture's out packet), the peer's ACK and FIN."""
    isn, verdict = handshake(kernel, port)
    child = verdict.sockets[0]
    fin = segment(LOCAL, PEER, port, 40000, "FA", isn + 1, 101)
    assert kernel.transmit(fin, T0 + 0.2).action == "close"
    kernel.receive(segment(PEER, LOCAL, 40000, port, "A", 101, isn + 2), T0 + 0.3, "tun0")
    kernel.receive(segment(PEER, LOCAL, 40000, port, "FA", 101, isn + 2), T0 + 0.4, "tun0")
    assert child.state is TcpState.TIME_WAIT
    return child


# -- children and TIME_WAIT entries in kernel.sockets (spec §7.2) --------------


def test_accepted_child_is_a_bound_socket_until_it_closes() -> None:
    kernel = make_kernel()
    listener = server(kernel)
    _isn, verdict = handshake(kernel)
    child = verdict.sockets[0]
    assert child in kernel.sockets and child.state is TcpState.ESTABLISHED
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "R", 101), T0 + 1, "tun0")
    assert child.state is TcpState.CLOSE and child not in kernel.sockets and listener in kernel.sockets


@pytest.mark.parametrize(("reuseaddr", "error"), [(True, None), (False, errno.EADDRINUSE)])
def test_s45_bind_over_a_server_side_timewait(reuseaddr: bool, error: int | None) -> None:
    """S45: listener with SO_REUSEADDR, server-side TIME_WAIT, listener closed."""
    kernel = make_kernel()
    listener = server(kernel, reuseaddr=True)
    child = server_timewait(kernel)
    kernel.close(listener)
    assert child in kernel.sockets
    new = kernel.socket(Proto.TCP, 4, reuseaddr=reuseaddr)
    if error is None:
        kernel.bind(new, LOCAL, 2200)
        kernel.listen(new, 8)
    else:
        with pytest.raises(SocketError) as caught:
            kernel.bind(new, LOCAL, 2200)
        assert caught.value.errno == error


def test_timewait_entry_leaves_the_bound_sockets_when_it_expires() -> None:
    kernel = make_kernel()
    listener = server(kernel)
    child = server_timewait(kernel)
    kernel.close(listener)
    kernel.receive(segment(PEER, LOCAL, 40001, 2200, "S", 5), T0 + 70, "tun0")
    assert child not in kernel.sockets and not kernel.tcp.established
    kernel.bind(kernel.socket(Proto.TCP, 4), LOCAL, 2200)  # the port is free again


def test_connect_sees_the_4_tuple_of_a_timewait_entry() -> None:
    kernel = make_kernel()
    listener = server(kernel, reuseaddr=True)
    server_timewait(kernel)
    kernel.close(listener)
    sock = kernel.socket(Proto.TCP, 4, reuseaddr=True)
    kernel.bind(sock, LOCAL, 2200)
    with pytest.raises(SocketError) as caught:
        kernel.connect(sock, PEER, 40000)  # the TIME_WAIT entry's 4-tuple (__inet_check_established)
    assert caught.value.errno == errno.EADDRNOTAVAIL


def test_refused_connect_from_a_capture_leaves_the_bound_sockets() -> None:
    kernel = make_kernel()
    syn = segment(LOCAL, PEER, 50000, 80, "S", 1000)
    (sock,) = kernel.transmit(syn, T0).sockets
    assert sock in kernel.sockets and sock.state is TcpState.SYN_SENT
    kernel.receive(segment(PEER, LOCAL, 80, 50000, "RA", 0, 1001), T0 + 0.1, "tun0")
    assert sock.state is TcpState.CLOSE and sock not in kernel.sockets


# -- Kernel.accept ---------------------------------------------------------------


def test_accept_pops_children_oldest_first_with_their_data() -> None:
    kernel = make_kernel()
    listener = server(kernel, inbox=True)
    assert kernel.accept(listener) is None
    isn1, first = handshake(kernel, sport=40000)
    _isn2, second = handshake(kernel, sport=40001, now=T0 + 1)
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "PA", 101, isn1 + 1, payload=b"hello"), T0 + 2, "tun0")
    child = kernel.accept(listener)
    assert child is first.sockets[0] and child.inbox == [b"hello"]
    assert kernel.accept(listener) is second.sockets[0]
    assert kernel.accept(listener) is None


def test_accept_on_a_socket_that_does_not_listen_is_einval() -> None:
    kernel = make_kernel()
    sock = kernel.socket(Proto.TCP, 4)
    kernel.bind(sock, LOCAL, 2300)
    with pytest.raises(SocketError) as caught:
        kernel.accept(sock)
    assert caught.value.errno == errno.EINVAL


# -- checksum left to offload -------------------------------------------------------


def offloaded(packet: bytes) -> bytes:
    """``packet`` (IPv4, no options) with its TCP checksum replaced by the pseudo-header sum."""
    partial = pseudo_header_sum(packet[12:16], packet[16:20], PROTO_TCP, len(packet) - 20)
    return packet[:36] + partial.to_bytes(2, "big") + packet[38:]


def test_offloaded_checksum_is_accepted_with_a_note() -> None:
    kernel = make_kernel()
    server(kernel)
    verdict = kernel.receive(offloaded(segment(PEER, LOCAL, 40000, 2200, "S", 100)), T0, "tun0")
    assert verdict.delivered and len(verdict.replies) == 1 and OFFLOADED_NOTE in verdict.note
    plain = make_kernel()
    server(plain)
    assert OFFLOADED_NOTE not in plain.receive(segment(PEER, LOCAL, 40000, 2200, "S", 100), T0, "tun0").note


def test_bad_checksum_is_dropped() -> None:
    kernel = make_kernel()
    server(kernel)
    packet = segment(PEER, LOCAL, 40000, 2200, "S", 100)
    broken = packet[:36] + bytes([packet[36] ^ 0x01, packet[37]]) + packet[38:]
    verdict = kernel.receive(broken, T0, "tun0")
    assert verdict.reason is not None and verdict.reason.name == "TCP_CSUM" and verdict.replies == ()


# -- kernel.trace --------------------------------------------------------------------


def traced(kernel, packet: bytes, now: float = T0):  # type: ignore[no-untyped-def]
    kernel.trace = []
    try:
        return kernel.receive(packet, now, "tun0")
    finally:
        kernel.trace = None


TRACE_CASES = [
    # (id, packet, phrases that must appear in order)
    ("no-socket-rst", segment(PEER, LOCAL, 40000, 81, "S"),
     ["no established 4-tuple", "listener bucket 10.0.0.1:81 empty", "listener bucket 0.0.0.0:81 empty",
      "no listener on port 81", "RST sent", "RFC 9293 §3.10.7.1"]),
    ("listener-synack", segment(PEER, LOCAL, 40000, 2200, "S"),
     ["no established 4-tuple", "'srv' score 2", "wins with score 2", "state LISTEN", "SYN-ACK sent"]),
    ("listener-ack-rst", segment(PEER, LOCAL, 40000, 2200, "A", 5, 6),
     ["state LISTEN", "RST sent", "(tcp_v4_send_reset; RFC 9293 §3.10.7.2)"]),
]


@pytest.mark.parametrize(("packet", "phrases"), [c[1:] for c in TRACE_CASES], ids=[c[0] for c in TRACE_CASES])
def test_traced_receive_records_the_tcp_steps(packet: bytes, phrases: list[str]) -> None:
    kernel = make_kernel()
    server(kernel)
    steps = traced(kernel, packet).steps
    text = "\n".join(steps)
    positions = [text.find(p) for p in phrases]
    assert -1 not in positions and positions == sorted(positions), (phrases, steps)
    assert all("(" in s and s.endswith(")") for s in steps), steps


def test_trace_names_the_established_hit_and_the_challenge_ack() -> None:
    kernel = make_kernel()
    server(kernel)
    _isn, _ = handshake(kernel)
    verdict = traced(kernel, segment(PEER, LOCAL, 40000, 2200, "S", 150), T0 + 1)
    assert any("established 4-tuple 10.0.0.1:2200 <- 10.0.0.2:40000 -> 'srv' ESTABLISHED" in s for s in verdict.steps)
    assert any(s.startswith("challenge ACK sent") and "RFC 5961 §4.2" in s for s in verdict.steps)


def test_trace_names_the_reuseport_member() -> None:
    kernel = make_kernel()
    members = []
    for name in ("a", "b"):
        sock = kernel.socket(Proto.TCP, 4, reuseport=True, name=name)
        kernel.bind(sock, "0.0.0.0", 2400)
        kernel.listen(sock, 8)
        members.append(sock)
    verdict = traced(kernel, segment(PEER, LOCAL, 40000, 2400, "S"))
    (step,) = [s for s in verdict.steps if "SO_REUSEPORT group of 2" in s]
    assert f"'{verdict.sockets[0].display_name}' picked" in step


def test_untraced_receive_records_no_steps_of_its_own() -> None:
    kernel = make_kernel()
    server(kernel)
    verdict = kernel.receive(segment(PEER, LOCAL, 40000, 81, "S"), T0, "tun0")
    assert kernel.trace is None
    assert not any("TCP lookup" in s for s in verdict.steps)


# -- reply builder -------------------------------------------------------------------


@given(sport=st.integers(1, 65535), dport=st.integers(1, 65535), seq=st.integers(0, 2**32 - 1),
       ack=st.integers(0, 2**32 - 1), flags=st.sampled_from(["S", "A", "PA", "FA", "R"]), v6=st.booleans(),
       payload=st.binary(max_size=9))
def test_every_reply_carries_valid_checksums(sport: int, dport: int, seq: int, ack: int, flags: str, v6: bool,
                                             payload: bytes) -> None:
    """Whatever the segment, the reply's IPv4 header and TCP checksums verify (RFC 1071)."""
    kernel = make_kernel()
    src, dst = ("fd00::2", "fd00::1") if v6 else (PEER, LOCAL)
    verdict = kernel.receive(segment(src, dst, sport, dport, flags, seq, ack, payload=payload), T0, "tun0")
    for reply in verdict.replies:
        l4 = 40 if v6 else 20
        if not v6:
            assert checksum(reply[:20]) == 0
        assert transport_checksum_ok(reply[8:24] if v6 else reply[12:16], reply[24:40] if v6 else reply[16:20],
                                     PROTO_TCP, reply[l4:])


def test_request_synack_repeats_the_synack() -> None:
    """The hook for the SYN-ACK timer: same bytes as the first SYN-ACK at the same clock."""
    kernel = make_kernel()
    server(kernel)
    first = kernel.receive(segment(PEER, LOCAL, 40000, 2200, "S", 100), T0, "tun0")
    (req,) = kernel.tcp.established.values()
    assert req.state is TcpState.SYN_RECV
    again = request_synack(kernel, req)
    assert again == first.replies[0]
    assert tcp_header(again)[4] == SYN | ACK and not tcp_header(again)[4] & FIN
