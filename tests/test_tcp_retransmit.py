"""The RTO and the FIN's retransmission on the emulated kernel, without a
real kernel (their kernel comparisons: test_differential_retransmit.py):
the RTT estimator and its handshake sample, the retransmission schedule and
death (tcp_orphan_retries 0 meaning 8, tcp_retries2), the tail loss probe,
the orphan's FIN_WAIT2 lifetime, close() with unread data, and the replay's
close() and abort from the host's own FIN and RST."""

from __future__ import annotations

import errno

import pytest
from tcp_helpers import T0, make_kernel, segment, tcp_flags, tcp_header
from test_tcp_api import LOCAL, PEER, server

from pktdemux import tcp_rtx
from pktdemux.sockets import TcpState
from pktdemux.sysctl import DEFAULTS

ACK, RST, FIN_ACK, RST_ACK = 0x10, 0x04, 0x11, 0x14


def _connection(sysctls: dict | None = None, rtt: float = 0.1):  # type: ignore[no-untyped-def]
    """An accepted connection whose handshake took ``rtt`` seconds."""
    kernel = make_kernel(sysctls=sysctls)
    server(kernel)
    synack = kernel.receive(segment(PEER, LOCAL, 40000, 2200, "S", 100), T0, "tun0").replies[0]
    isn = tcp_header(synack)[2]
    verdict = kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 1), T0 + rtt, "tun0")
    return kernel, verdict.sockets[0], isn


def _fired(kernel, until: float) -> list[tuple[float, str, list[int]]]:  # type: ignore[no-untyped-def]
    kernel.advance(until)
    return [(round(f.time - T0, 4), f.what, [tcp_flags(p) for p in f.packets]) for f in kernel.drain_timer_output()]


def test_sysctl_defaults_are_linux_6_18() -> None:
    assert {name: DEFAULTS[name] for name in (
        "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_orphan_retries", "net.ipv4.tcp_retries2",
        "net.ipv4.tcp_rto_min_us", "net.ipv4.tcp_rto_max_ms", "net.ipv4.tcp_early_retrans")} == {
        "net.ipv4.tcp_fin_timeout": 60, "net.ipv4.tcp_orphan_retries": 0, "net.ipv4.tcp_retries2": 15,
        "net.ipv4.tcp_rto_min_us": 200000, "net.ipv4.tcp_rto_max_ms": 120000, "net.ipv4.tcp_early_retrans": 3}


@pytest.mark.parametrize(("rtt", "rto"), [(0.0001, 51), (0.1, 75), (0.004, 51), (0.0041, 52)])
def test_handshake_sample_sets_the_rto(rtt: float, rto: int) -> None:
    """RTO = SRTT + max(2 RTT, 200 ms) after the first sample, in jiffies
    rounded up (tcp_rtt_estimator, tcp_set_rto; HZ=250)."""
    _, conn, _ = _connection(rtt=rtt)
    assert conn.tcb.rtt.rto == rto
    assert conn.tcb.rtt.srtt_us == round(rtt * 1e6) << 3


def test_retransmitted_synack_gives_no_sample_and_a_3s_rto() -> None:
    """Karn: after a SYN-ACK retransmission the handshake gives no sample;
    without timestamps the RTO falls back to 3 s (tcp_init_metrics)."""
    kernel = make_kernel()
    server(kernel)
    isn = tcp_header(kernel.receive(segment(PEER, LOCAL, 40000, 2200, "S", 100), T0, "tun0").replies[0])[2]
    kernel.advance(T0 + 1.5)  # the SYN-ACK timer fired once
    conn = kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 1), T0 + 1.6, "tun0").sockets[0]
    assert conn.tcb.rtt.srtt_us == 0 and conn.tcb.rtt.rto == 3 * tcp_rtx.HZ


def test_estimator_follows_later_samples() -> None:
    """Jacobson/Karels as Linux scales it: SRTT 7/8 old + 1/8 new; the
    variance term never below tcp_rto_min_us."""
    _, conn, _ = _connection(rtt=0.01)
    kernel = make_kernel()
    tcp_rtx.sample(kernel, conn.tcb, 50_000)
    rtt = conn.tcb.rtt
    assert rtt.srtt_us == 80_000 + 40_000 and rtt.mdev_us == 20_000 + (40_000 - 5_000)
    assert rtt.rto == tcp_rtx.usecs_to_jiffies((rtt.srtt_us >> 3) + rtt.rttvar_us)


def test_orphan_fin_is_retransmitted_8_times_then_dies_silently() -> None:
    """tcp_orphan_retries 0 is 8 while the RTO is below its maximum: the FIN
    again at 1, 3, 7 ... 255 RTOs, then at 511 RTOs (104 s after the first
    retransmission, past tcp_model_timeout(8) = 102.2 s) the orphan is
    gone, without a packet."""
    kernel, conn, isn = _connection(rtt=0.0001)
    assert len(kernel.close(conn, now=T0 + 1)) == 1
    fired = _fired(kernel, T0 + 200)
    rto = 0.204
    assert [t for t, _, flags in fired if flags] == [round(1 + rto * (2 ** k - 1), 4) for k in range(1, 9)]
    assert fired[-1] == (round(1 + rto * 511, 4), tcp_rtx.WHAT_RTO, [])
    assert conn.state is TcpState.CLOSE and not kernel.tcp.established
    again = kernel.timers._heap and any(t.armed for _, _, t in kernel.timers._heap)
    assert not again
    replies = kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 2), T0 + 201, "tun0").replies
    assert [tcp_flags(p) for p in replies] == [RST]


def test_retransmitted_fin_is_the_same_fin_with_the_ack_of_the_moment() -> None:
    kernel, conn, isn = _connection(sysctls={"net.ipv4.tcp_orphan_retries": 1})
    (fin,) = kernel.close(conn, now=T0 + 1)
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "FA", 101, isn + 1), T0 + 1.01, "tun0")  # CLOSING
    assert conn.state is TcpState.CLOSING
    (again,) = kernel.advance(T0 + 1.3)
    assert tcp_header(again)[2:5] == (tcp_header(fin)[2], 102, FIN_ACK)


def test_shutdown_socket_dies_with_etimedout() -> None:
    """Not an orphan: tcp_retries2 (2: 1.4 s after the first retransmission),
    then CLOSE with ETIMEDOUT for the application."""
    kernel, conn, _ = _connection(sysctls={"net.ipv4.tcp_retries2": 2}, rtt=0.0001)
    kernel.shutdown_write(conn, now=T0 + 1)
    fired = _fired(kernel, T0 + 10)
    assert [bool(flags) for _, _, flags in fired] == [True, True, True, False]
    assert conn.state is TcpState.CLOSE and kernel.so_error(conn) == errno.ETIMEDOUT


def test_orphan_retries_0_is_0_once_the_rto_is_at_its_maximum() -> None:
    kernel, conn, _ = _connection(sysctls={"net.ipv4.tcp_rto_max_ms": 1000}, rtt=0.0001)
    kernel.close(conn, now=T0 + 1)
    fired = _fired(kernel, T0 + 10)
    assert [t for t, _, flags in fired if flags] == [1.204, 1.612, 2.428]
    assert fired[-1] == (3.428, tcp_rtx.WHAT_RTO, [])


def test_ack_of_the_fin_stops_the_timer() -> None:
    kernel, conn, isn = _connection()
    kernel.close(conn, now=T0 + 1)
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 2), T0 + 1.02, "tun0")
    assert conn.state is TcpState.FIN_WAIT2 and conn.tcb.rtx_timer is None
    assert _fired(kernel, T0 + 30) == []


def test_ack_after_a_retransmission_gives_no_sample() -> None:
    """Karn's rule: the RTO stays backed off (and with it tcp_fin_time)."""
    kernel, conn, isn = _connection(rtt=0.0001)
    kernel.close(conn, now=T0 + 1)
    kernel.advance(T0 + 1.3)
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 2), T0 + 1.35, "tun0")
    assert conn.tcb.rtt.rto == 102 and conn.tcb.rtt.srtt_us == 800


def test_sack_connection_sends_a_tail_loss_probe_first() -> None:
    """With SACK the FIN's first repeat is the probe, one RTO later, and the
    RTO timer restarts from it (tcp_send_loss_probe, tcp_rearm_rto)."""
    kernel = make_kernel(sysctls={"net.ipv4.tcp_orphan_retries": 2})
    server(kernel)
    sack_perm = b"\x02\x04\x05\xb4\x04\x02\x01\x01"
    synack = kernel.receive(segment(PEER, LOCAL, 40000, 2200, "S", 100, options=sack_perm), T0, "tun0").replies[0]
    isn = tcp_header(synack)[2]
    conn = kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 1), T0 + 0.05, "tun0").sockets[0]
    assert conn.tcb.sack_ok and conn.tcb.rtt.rto == 63
    kernel.close(conn, now=T0 + 1)
    fired = _fired(kernel, T0 + 10)
    assert [(t, what) for t, what, flags in fired if flags] == [
        (1.252, tcp_rtx.WHAT_TLP), (1.504, tcp_rtx.WHAT_RTO), (2.008, tcp_rtx.WHAT_RTO)]
    assert fired[-1] == (3.016, tcp_rtx.WHAT_RTO, [])


@pytest.mark.parametrize(("fin_timeout", "lifetime"), [(60, 60.0), (2, 2.0), (0, 0.716), (100, 80.0)])
def test_orphan_fin_wait2_lifetime(fin_timeout: int, lifetime: float) -> None:
    """tcp_fin_time: tcp_fin_timeout, at least 3.5 RTO; beyond 60 s the full
    socket waits fin_time − 60 s, then the FIN_WAIT2 timewait socket as
    long again (tcp_keepalive_timer)."""
    kernel, conn, isn = _connection(sysctls={"net.ipv4.tcp_fin_timeout": fin_timeout}, rtt=0.0001)
    kernel.close(conn, now=T0 + 1)
    tcp_rtx.state(conn.tcb).srtt_us = 0  # keep the RTO at 204 ms: no sample from the ACK
    conn.tcb.rtt.queue[0][3] = True
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 2), T0 + 1.01, "tun0")
    assert conn.state is TcpState.FIN_WAIT2
    assert conn.tcb.deadline - (T0 + 1.01) == pytest.approx(lifetime)
    kernel.advance(conn.tcb.deadline + 0.001)
    assert not kernel.tcp.established


def test_close_with_unread_data_sends_rst() -> None:
    kernel, conn, isn = _connection()
    kernel.autoread = False
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "PA", 101, isn + 1, payload=b"hello"), T0 + 1, "tun0")
    (rst,) = kernel.close(conn, now=T0 + 2)
    assert tcp_header(rst)[2:5] == ((isn + 1) & 0xFFFFFFFF, 106, RST_ACK)
    assert conn.state is TcpState.CLOSE and conn not in kernel.sockets and not kernel.tcp.established
    assert _fired(kernel, T0 + 10) == []


def test_close_after_reading_sends_fin() -> None:
    kernel, conn, isn = _connection()
    kernel.autoread = False
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "PA", 101, isn + 1, payload=b"hello"), T0 + 1, "tun0")
    kernel.recv(conn, now=T0 + 1.5)
    (fin,) = kernel.close(conn, now=T0 + 2)
    assert tcp_flags(fin) == FIN_ACK


def test_peer_fin_alone_is_no_unread_data() -> None:
    kernel, conn, isn = _connection()
    kernel.autoread = False
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "FA", 101, isn + 1), T0 + 1, "tun0")
    (fin,) = kernel.close(conn, now=T0 + 2)
    assert tcp_flags(fin) == FIN_ACK and conn.state is TcpState.LAST_ACK


# -- the replay: the host's own FIN and RST (pktdemux.transmit) ---------------------------------

def test_hosts_fin_takes_the_close_path_and_its_retransmission_matches() -> None:
    """A capture's FIN from the host is close(): an orphan with the FIN's
    timer, the same as Kernel.close; the host's own retransmission of it
    matches the emulation's."""
    kernel, conn, isn = _connection(rtt=0.0001)
    fin = segment(LOCAL, PEER, 2200, 40000, "FA", isn + 1, 101, window=64240)
    assert kernel.transmit(fin, T0 + 1).action == "close"
    assert conn.state is TcpState.FIN_WAIT1 and conn.tcb.rtx_timer is not None
    (again,) = kernel.advance(T0 + 1.3)
    result = kernel.transmit(again, T0 + 1.3)
    assert (result.matched, result.action) == (True, "reply"), result.note


def test_hosts_fin_with_data_is_not_retransmitted_by_the_emulation() -> None:
    kernel, conn, isn = _connection()
    last = segment(LOCAL, PEER, 2200, 40000, "FPA", isn + 1, 101, payload=b"bye")
    assert kernel.transmit(last, T0 + 1).action == "close"
    assert conn.state is TcpState.FIN_WAIT1 and conn.tcb.rtx_timer is None
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 5), T0 + 1.05, "tun0")
    assert conn.state is TcpState.FIN_WAIT2 and conn.tcb.rtt.srtt_us != 8 * 100_000  # sampled from the ACK


def test_hosts_rst_aborts_the_connection() -> None:
    """SO_LINGER 0 (or unread data) on the host: its RST removes the
    connection; the peer's next segment finds the listener."""
    kernel, conn, isn = _connection()
    rst = segment(LOCAL, PEER, 2200, 40000, "RA", isn + 1, 101, window=0)
    result = kernel.transmit(rst, T0 + 1)
    assert (result.matched, result.action) == (None, "close"), result.note
    assert conn.state is TcpState.CLOSE and conn not in kernel.sockets
    replies = kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 1), T0 + 2, "tun0").replies
    assert [tcp_flags(p) for p in replies] == [RST]


def test_data_acked_gives_an_rtt_sample() -> None:
    kernel, conn, isn = _connection(rtt=0.0001)
    data = segment(LOCAL, PEER, 2200, 40000, "PA", isn + 1, 101, payload=b"x" * 100)
    kernel.transmit(data, T0 + 1)
    kernel.receive(segment(PEER, LOCAL, 40000, 2200, "A", 101, isn + 101), T0 + 1.08, "tun0")
    assert conn.tcb.rtt.srtt_us == 800 + (80_000 - 100)
