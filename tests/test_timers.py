"""Timers (pktdemux.timers, Kernel.advance) and what they send: the
reassembly timeout, SYN-ACK retransmission of a half-open request, request
and TIME_WAIT expiry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tcp_helpers import T0, listen, make_kernel, segment, tcp_header, tcp_socket, tsval
from test_fragments import UDP4_CLOSED, fragment4, host_kernel

from pktdemux.sockets import TcpState
from pktdemux.tcp_tcb import Tcb
from pktdemux.timers import TimerQueue

SYN_OPTIONS = b"\x02\x04\x05\xb4\x04\x02\x08\x0a\x00\x00\x03\x09\x00\x00\x00\x00\x01\x03\x03\x07"


# --------------------------------------------------------------------------- the queue

def test_timers_fire_in_time_order_then_arming_order() -> None:
    queue = TimerQueue()
    fired: list[str] = []
    for due, name in [(3.0, "c"), (1.0, "a"), (2.0, "b1"), (2.0, "b2")]:
        queue.arm(due, name, lambda now, name=name: fired.append(name) or [])
    while (timer := queue.pop_due(2.5)) is not None:
        assert timer.action is not None
        timer.action(timer.due)
    assert fired == ["a", "b1", "b2"]
    assert queue.next_due() == 3.0


def test_cancelled_timer_is_skipped() -> None:
    queue = TimerQueue()
    first = queue.arm(1.0, "x", lambda now: [])
    queue.arm(2.0, "y", lambda now: [])
    first.cancel()
    timer = queue.pop_due(5.0)
    assert timer is not None and timer.what == "y"
    assert queue.pop_due(5.0) is None and len(queue) == 0


@given(st.lists(st.floats(0, 1000, allow_nan=False), max_size=40), st.floats(0, 1000, allow_nan=False))
def test_pop_due_returns_exactly_the_due_timers_sorted(dues: list[float], now: float) -> None:
    queue = TimerQueue()
    for i, due in enumerate(dues):
        queue.arm(due, str(i), lambda t: [])
    popped = []
    while (timer := queue.pop_due(now)) is not None:
        popped.append(timer.due)
    assert popped == sorted(d for d in dues if d <= now)


# --------------------------------------------------------------------------- Kernel.advance

def test_receive_runs_due_timers_first_and_keeps_their_output() -> None:
    kernel = host_kernel({"net.ipv4.ipfrag_time": 1})
    first = fragment4(UDP4_CLOSED, [16, 32])[0]
    kernel.receive(first, T0, "tun0")
    kernel.receive(UDP4_CLOSED, T0 + 5, "tun0")  # any later packet lets time pass
    fired = kernel.drain_timer_output()
    assert [(f.time, f.what, len(f.packets)) for f in fired] == [(T0 + 1, "ip_expire", 1)]
    assert kernel.drain_timer_output() == []
    assert kernel.now == T0 + 5


def test_advance_backwards_does_nothing() -> None:
    kernel = host_kernel({"net.ipv4.ipfrag_time": 1})
    kernel.receive(fragment4(UDP4_CLOSED, [16, 32])[0], T0, "tun0")
    assert kernel.advance(T0 - 10) == []
    assert kernel.now == T0
    assert len(kernel.advance(T0 + 1)) == 1


# --------------------------------------------------------------------------- SYN-ACK retransmission

def syn_kernel(retries: int = 5):  # type: ignore[no-untyped-def]
    kernel = make_kernel(sysctls={"net.ipv4.tcp_synack_retries": retries})
    listen(kernel, "0.0.0.0", 80)
    syn = segment("10.0.0.2", "10.0.0.1", 5000, 80, "S", seq=1000, options=SYN_OPTIONS)
    verdict = kernel.receive(syn, T0, "tun0")
    (synack,) = verdict.replies
    return kernel, synack


def without_ts_and_checksums(packet: bytes) -> bytes:
    b = bytearray(packet)
    b[10:12] = b"\0\0"
    b[36:38] = b"\0\0"
    ts = b.find(b"\x08\x0a", 40)
    b[ts + 2:ts + 6] = bytes(4)
    return bytes(b)


def test_synack_is_retransmitted_after_1_3_7_15_31_seconds_then_the_request_dies() -> None:
    kernel, synack = syn_kernel()
    times = []
    for second in range(1, 64):
        for packet in kernel.advance(T0 + second):
            times.append(second)
            assert without_ts_and_checksums(packet) == without_ts_and_checksums(synack)
            assert tsval(packet) == (tsval(synack) + second * 1000) & 0xFFFFFFFF
    assert times == [1, 3, 7, 15, 31]
    assert not [s for s in kernel.tcp.established.values() if s.state is TcpState.SYN_RECV]


@pytest.mark.parametrize(("retries", "times"), [(0, []), (1, [1]), (2, [1, 3])])
def test_tcp_synack_retries(retries: int, times: list[int]) -> None:
    kernel, synack = syn_kernel(retries)
    seen = [second for second in range(1, 10) for _ in kernel.advance(T0 + second)]
    assert seen == times
    ack = segment("10.0.0.2", "10.0.0.1", 5000, 80, "A", seq=1001, ack=tcp_header(synack)[2] + 1)
    late = kernel.receive(ack, T0 + 10, "tun0")
    assert late.replies and tcp_header(late.replies[0])[4] & 0x04  # the request is gone: RST


def test_completed_handshake_stops_the_retransmissions() -> None:
    kernel, synack = syn_kernel()
    iss = tcp_header(synack)[2]
    ack = segment("10.0.0.2", "10.0.0.1", 5000, 80, "A", seq=1001, ack=iss + 1)
    assert kernel.receive(ack, T0 + 0.5, "tun0").delivered
    assert kernel.advance(T0 + 100) == []


def test_completed_handshake_stops_the_timer_itself() -> None:
    kernel, synack = syn_kernel()
    ack = segment("10.0.0.2", "10.0.0.1", 5000, 80, "A", seq=1001, ack=tcp_header(synack)[2] + 1)
    kernel.receive(ack, T0 + 0.5, "tun0")
    kernel.advance(T0 + 100)
    assert kernel.drain_timer_output() == []  # del_timer: no firing at all


def test_retransmitted_syn_moves_the_pending_timer() -> None:
    # tcp_check_req: after the SYN-ACK is sent again, the timer is due
    # 1 s << (firings so far) later, and the later firings follow from there
    kernel, synack = syn_kernel()
    syn = segment("10.0.0.2", "10.0.0.1", 5000, 80, "S", seq=1000, options=SYN_OPTIONS)
    (again,) = kernel.receive(syn, T0 + 0.5, "tun0").replies
    assert without_ts_and_checksums(again) == without_ts_and_checksums(synack)
    assert kernel.advance(T0 + 1.4) == []
    assert len(kernel.advance(T0 + 1.5)) == 1  # 0.5 + 1
    kernel.receive(syn, T0 + 2.5, "tun0")  # one firing so far: 2 s from now
    assert kernel.advance(T0 + 4.4) == []
    assert len(kernel.advance(T0 + 4.5)) == 1
    times = [t for t in (T0 + 4.5 + s for s in range(1, 80)) for _ in kernel.advance(t)]
    assert [t - T0 for t in times] == [8.5, 16.5, 32.5]  # then the request is dropped
    alive = [s for s in kernel.tcp.established.values() if s.state is TcpState.SYN_RECV]
    assert alive == []
    fired = kernel.drain_timer_output()
    assert [(f.time - T0, len(f.packets)) for f in fired] == [(1.5, 1), (4.5, 1), (8.5, 1), (16.5, 1),
                                                              (32.5, 1), (64.5, 0)]


def test_retransmission_is_recorded_for_matching_the_hosts_own_packets() -> None:
    kernel, _ = syn_kernel()
    (again,) = kernel.advance(T0 + 1)
    assert kernel.transmit(again, T0 + 1.01).matched is True


def test_ipv6_request_from_a_dual_stack_listener_retransmits_over_ipv4() -> None:
    kernel = make_kernel()
    listen(kernel, "::", 80, family=6)
    syn = segment("10.0.0.2", "10.0.0.1", 5000, 80, "S", options=b"\x02\x04\x05\xb4")
    (synack,) = kernel.receive(syn, T0, "tun0").replies
    (again,) = kernel.advance(T0 + 1)
    assert again == synack  # no timestamps: byte for byte the same


# --------------------------------------------------------------------------- TIME_WAIT

def test_time_wait_entry_expires_after_60_seconds() -> None:
    kernel = make_kernel()
    sock = tcp_socket("10.0.0.1", 80, peer=("10.0.0.2", 5000), state=TcpState.TIME_WAIT,
                      tcb=Tcb(deadline=T0 + 60))
    kernel.tcp.insert_established(sock)
    kernel.advance(T0 + 59.999)
    assert sock in kernel.tcp.established.values()
    kernel.advance(T0 + 60)
    assert sock not in kernel.tcp.established.values()
