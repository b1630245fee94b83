"""Transcripts of the socket-table and sequence vectors observed on Linux
(spec §12.2, S11–S26): queues, SYN cookies, an established connection under
RFC 5961, half-open requests and TIME_WAIT."""

from __future__ import annotations

from tcp_helpers import (
    T0,
    ip_id,
    listen,
    make_kernel,
    segment,
    tcp_header,
    tcp_options,
    tsval,
)

from pktdemux.sockets import TcpState
from pktdemux.tcp_segment import ACK, RST, SYN

PEER, LOCAL = "10.0.0.2", "10.0.0.1"
NO_TS_OPTS = bytes.fromhex("020405b4010303070101" "0402")  # MSS 1460, WS 7, SACK-permitted
TS_OPTS = bytes.fromhex("020405780402080a000003090000000001030307")  # MSS 1400, SACK, TS 777, WS 7


class Peer:
    """The remote end of a transcript: sends segments at a clock that moves 0.6 s per step."""

    def __init__(self, kernel, port: int, sport: int, now: float = T0) -> None:  # type: ignore[no-untyped-def]
        self.kernel, self.port, self.sport, self.now = kernel, port, sport, now

    def send(self, flags: str, seq: int, ack: int = 0, *, payload: bytes = b"", options: bytes = b"",
             step: float = 0.6):  # type: ignore[no-untyped-def]
        self.now += step
        packet = segment(PEER, LOCAL, self.sport, self.port, flags, seq, ack, payload=payload, options=options)
        return self.kernel.receive(packet, self.now, "tun0")

    def connect(self, seq: int = 700, options: bytes = b""):  # type: ignore[no-untyped-def]
        """SYN, then the final ACK; returns (ISN, verdict of the ACK)."""
        synack = self.send("S", seq, options=options).replies[0]
        isn = tcp_header(synack)[2]
        return isn, self.send("A", seq + 1, isn + 1)


def test_s11_accept_queue_holds_backlog_plus_one() -> None:
    kernel = make_kernel()
    sock = listen(kernel, LOCAL, 90, backlog=1)
    for sport in (42000, 42001):
        _, verdict = Peer(kernel, 90, sport).connect(1000)
        assert verdict.delivered
    assert len(sock.tcb.accept_queue) == 2
    for sport in (42002, 42003):
        verdict = Peer(kernel, 90, sport).send("S", 1000)
        assert verdict.replies == () and verdict.reason is not None and verdict.reason.name == "TCP_LISTEN_OVERFLOW"


def test_s12_syn_cookies_when_requests_exceed_the_backlog() -> None:
    kernel = make_kernel()
    listen(kernel, LOCAL, 91, backlog=2)
    options = [tcp_options(Peer(kernel, 91, 43000 + i).send("S", 5000, options=NO_TS_OPTS).replies[0])
               for i in range(5)]
    assert options[:3] == [bytes.fromhex("020405b4010104020103030a")] * 3
    assert options[3:] == [bytes.fromhex("020405b4")] * 2
    assert len(kernel.tcp.established) == 3


def test_s13_cookie_with_timestamps_then_its_ack_establishes() -> None:
    kernel = make_kernel()
    sock = listen(kernel, LOCAL, 91, backlog=2)
    for i in range(3):
        Peer(kernel, 91, 43000 + i).send("S", 5000, options=NO_TS_OPTS)
    peer = Peer(kernel, 91, 43100)
    synack = peer.send("S", 5000, options=TS_OPTS).replies[0]
    opts = tcp_options(synack)
    assert opts[:8] == bytes.fromhex("020405b40402080a") and opts[12:] == bytes.fromhex("000003090103030a")
    assert tcp_header(synack)[5] == 65160
    isn, echo = tcp_header(synack)[2], tsval(synack)
    ack_opts = b"\x01\x01\x08\x0a" + (778).to_bytes(4, "big") + echo.to_bytes(4, "big")  # type: ignore[union-attr]
    verdict = peer.send("A", 5001, isn + 1, options=ack_opts)
    assert verdict.delivered and verdict.replies == ()
    child = kernel.tcp.established[(bytes([10, 0, 0, 1]), 91, bytes([10, 0, 0, 2]), 43100)]
    assert child.state is TcpState.ESTABLISHED and child in sock.tcb.accept_queue
    assert child.tcb.snd_wscale == 7 and child.tcb.sack_ok


def test_cookie_ack_with_a_wrong_cookie_gets_a_reset() -> None:
    kernel = make_kernel()
    listen(kernel, LOCAL, 91, backlog=0)
    peer = Peer(kernel, 91, 43100)
    peer.send("S", 5000)
    isn = tcp_header(peer.send("S", 5000).replies[0])[2]  # second SYN: a cookie (queue over backlog 0)
    verdict = peer.send("A", 5001, isn + 2)
    assert tcp_header(verdict.replies[0])[2:5] == (isn + 2, 0, RST)


def three_handshakes(abort_on_overflow: int):  # type: ignore[no-untyped-def]
    """listen(1): SYN a, SYN b, ACK a, SYN c, ACK b, ACK c, the order of probe p11b."""
    kernel = make_kernel(sysctls={"net.ipv4.tcp_abort_on_overflow": abort_on_overflow})
    sock = listen(kernel, LOCAL, 620, backlog=1)
    a, b, c = (Peer(kernel, 620, sport) for sport in (48000, 48001, 48002))
    isns = [tcp_header(a.send("S", 100).replies[0])[2], tcp_header(b.send("S", 100).replies[0])[2]]
    verdicts = [a.send("A", 101, isns[0] + 1)]
    isns.append(tcp_header(c.send("S", 100).replies[0])[2])
    verdicts += [b.send("A", 101, isns[1] + 1), c.send("A", 101, isns[2] + 1)]
    return kernel, sock, isns, verdicts


def test_s14_final_ack_on_full_accept_queue_is_dropped_and_request_kept() -> None:
    kernel, sock, isns, verdicts = three_handshakes(0)
    assert [v.delivered for v in verdicts] == [True, True, False]
    assert verdicts[2].replies == () and verdicts[2].reason.name == "TCP_LISTEN_OVERFLOW"
    req = kernel.tcp.established[(bytes([10, 0, 0, 1]), 620, bytes([10, 0, 0, 2]), 48002)]
    assert req.state is TcpState.SYN_RECV and req.tcb.acked and len(sock.tcb.accept_queue) == 2


def test_s15_final_ack_on_full_accept_queue_with_abort_on_overflow() -> None:
    kernel, sock, isns, verdicts = three_handshakes(1)
    (reply,) = verdicts[2].replies
    assert tcp_header(reply)[2:5] == ((isns[2] + 1) & 0xFFFFFFFF, 0, RST)
    assert ip_id(reply) == 0 and reply[6] & 0x40
    assert (bytes([10, 0, 0, 1]), 620, bytes([10, 0, 0, 2]), 48002) not in kernel.tcp.established


def established(port: int = 80):  # type: ignore[no-untyped-def]
    """S16–S22 set-up: a connection 10.0.0.1:80 ↔ 10.0.0.2:41023 with RCV.NXT 701."""
    kernel = make_kernel()
    listen(kernel, LOCAL, port)
    peer = Peer(kernel, port, 41023)
    isn, verdict = peer.connect(700, options=bytes.fromhex("020405b4"))
    return kernel, peer, isn, verdict.sockets[0]


def test_s16_in_window_data_is_acked() -> None:
    kernel, peer, isn, child = established()
    verdict = peer.send("PA", 701, isn + 1, payload=b"hello")
    assert verdict.delivered and child.rx_bytes == 5 and child.tcb.rcv_nxt == 706
    (reply,) = verdict.replies
    assert tcp_header(reply) == (80, 41023, isn + 1, 706, ACK, 64235)
    assert reply[6] & 0x40  # DF
    second = peer.send("PA", 706, isn + 1, payload=b"x").replies[0]
    assert ip_id(second) == (ip_id(reply) + 1) & 0xFFFF


def test_s17_to_s21_rfc5961_transcript() -> None:
    kernel, peer, isn, child = established()
    peer.send("PA", 701, isn + 1, payload=b"hello")
    dup = peer.send("PA", 706 + 10**8, isn + 1, payload=b"zz")
    assert dup.reason.name == "TCP_INVALID_SEQUENCE" and tcp_header(dup.replies[0])[2:5] == (isn + 1, 706, ACK)
    challenge = peer.send("S", 12345)
    assert challenge.reason.name == "TCP_INVALID_SYN" and tcp_header(challenge.replies[0])[2:5] == (isn + 1, 706, ACK)
    rst_in_window = peer.send("R", 706 + 100)
    assert rst_in_window.reason.name == "TCP_RESET" and tcp_header(rst_in_window.replies[0])[3] == 706
    far = peer.send("R", 706 + 10**8)
    assert far.replies == () and child.state is TcpState.ESTABLISHED
    too_far_ack = peer.send("A", 706, isn + 1 + 100000)
    assert too_far_ack.reason.name == "TCP_ACK_UNSENT_DATA" and tcp_header(too_far_ack.replies[0])[3] == 706
    exact = peer.send("R", 706)
    assert exact.delivered and exact.replies == () and child.state is TcpState.CLOSE
    assert kernel.tcp.established == {}


def test_s22_five_syns_in_a_burst_get_one_challenge_ack() -> None:
    kernel, peer, isn, child = established(600)
    replies = [r for _ in range(5) for r in peer.send("S", 12345, step=0.002).replies]
    assert len(replies) == 1
    dupacks = [r for _ in range(3) for r in peer.send("PA", 701 + 10**8, isn + 1, payload=b"zz", step=0.002).replies]
    assert len(dupacks) == 3  # data segments are never rate limited


def test_pure_ack_is_delivered_silently() -> None:
    kernel, peer, isn, child = established()
    verdict = peer.send("A", 701, isn + 1)
    assert verdict.delivered and verdict.replies == () and verdict.sockets == (child,)


def test_out_of_order_data_is_held_then_delivered() -> None:
    kernel, peer, isn, child = established()
    held = peer.send("PA", 706, isn + 1, payload=b"world")
    assert held.delivered and tcp_header(held.replies[0])[3] == 701
    filled = peer.send("PA", 701, isn + 1, payload=b"hello")
    assert tcp_header(filled.replies[0])[3] == 711 and child.tcb.rcv_nxt == 711


def test_fin_moves_to_close_wait_with_a_delayed_ack() -> None:
    """tcp_fin in ESTABLISHED enters pingpong mode: the ACK comes from the
    delayed-ACK timer (at once here: no data yet, ato is still 0)."""
    kernel, peer, isn, child = established()
    verdict = peer.send("FA", 701, isn + 1)
    assert child.state is TcpState.CLOSE_WAIT and verdict.replies == ()
    (ack,) = kernel.advance(kernel.now + 0.1)
    assert tcp_header(ack)[2:5] == (isn + 1, 702, ACK)


def pending_request():  # type: ignore[no-untyped-def]
    kernel = make_kernel()
    listen(kernel, LOCAL, 80)
    peer = Peer(kernel, 80, 41022)
    first = peer.send("S", 500, options=bytes.fromhex("020405b40402080a000003e80000000001030307"))
    return kernel, peer, first.replies[0]


def test_s23_retransmitted_syn_gets_the_same_isn() -> None:
    kernel, peer, first = pending_request()
    again = peer.send("S", 500, options=bytes.fromhex("020405b40402080a000003e80000000001030307"))
    (second,) = again.replies
    assert tcp_header(second)[2:5] == tcp_header(first)[2:5]
    assert tcp_options(second)[:8] == tcp_options(first)[:8]


def test_s24_in_window_syn_with_new_seq_resets_the_request() -> None:
    kernel, peer, first = pending_request()
    verdict = peer.send("S", 9000)
    assert tcp_header(verdict.replies[0])[2:5] == (0, 9001, RST | ACK)
    assert kernel.tcp.established == {}


def test_rst_for_a_pending_request() -> None:
    """At RCV.NXT: removed silently.  Elsewhere in the window: a challenge ACK
    (seq ISS+1, ack RCV.NXT, ID 0) and the request stays (checked on 6.18)."""
    kernel, peer, first = pending_request()
    isn = tcp_header(first)[2]
    challenge = peer.send("R", 601)
    (reply,) = challenge.replies
    assert tcp_header(reply)[2:5] == (isn + 1, 501, ACK) and ip_id(reply) == 0
    assert len(kernel.tcp.established) == 1
    assert peer.send("R", 501).replies == () and kernel.tcp.established == {}


def test_out_of_window_data_for_a_pending_request_gets_an_ack() -> None:
    kernel, peer, first = pending_request()
    isn = tcp_header(first)[2]
    verdict = peer.send("PA", 501 + 10**7, isn + 1, payload=b"x")
    assert verdict.reason.name == "TCP_OVERWINDOW"
    assert tcp_header(verdict.replies[0])[2:5] == (isn + 1, 501, ACK) and ip_id(verdict.replies[0]) == 0


def test_wrong_ack_for_a_pending_request_gets_a_reset_from_the_listener() -> None:
    kernel, peer, first = pending_request()
    verdict = peer.send("A", 501, 12345)
    assert tcp_header(verdict.replies[0])[2:5] == (12345, 0, RST)
    assert len(kernel.tcp.established) == 1


def timewait(port: int = 92):  # type: ignore[no-untyped-def]
    """S25/S26 set-up: the server closed first (FIN sent), the peer ACKed and sent its FIN."""
    kernel = make_kernel()
    listen(kernel, LOCAL, port)
    peer = Peer(kernel, port, 44000)
    isn, verdict = peer.connect(100, options=bytes.fromhex("020405b4"))
    child = verdict.sockets[0]
    child.state, child.tcb.fin_sent = TcpState.FIN_WAIT1, True  # close(): the FIN (seq isn+1) went out
    child.tcb.snd_nxt = (isn + 2) & 0xFFFFFFFF
    last_ack = peer.send("FA", 101, isn + 2)
    return kernel, peer, isn, child, last_ack


def test_s25_timewait_acks_a_retransmitted_fin_with_id_zero() -> None:
    kernel, peer, isn, child, last_ack = timewait()
    assert child.state is TcpState.TIME_WAIT
    # the full socket ACKs the FIN (its own IP ID counter), then becomes TIME_WAIT
    assert tcp_header(last_ack.replies[0])[2:6] == (isn + 2, 102, ACK, 64239)
    assert ip_id(last_ack.replies[0]) == (child.tcb.ip_id - 1) & 0xFFFF
    (reply,) = peer.send("FA", 101, isn + 2).replies
    assert tcp_header(reply)[2:6] == (isn + 2, 102, ACK, 64239) and ip_id(reply) == 0 and reply[6] & 0x40


def test_s26_new_syn_on_timewait_reuses_the_4_tuple_with_isn_plus_65537() -> None:
    kernel, peer, isn, child, _ = timewait()
    (synack,) = peer.send("S", 100000).replies
    assert tcp_header(synack)[2:5] == ((isn + 2 + 65537) & 0xFFFFFFFF, 100001, SYN | ACK)
    assert kernel.tcp.established[(bytes([10, 0, 0, 1]), 92, bytes([10, 0, 0, 2]), 44000)].state is TcpState.SYN_RECV


def test_timewait_rst_at_rcv_nxt_kills_the_entry() -> None:
    kernel, peer, isn, child, _ = timewait()
    verdict = peer.send("R", 102)
    assert verdict.replies == () and kernel.tcp.established == {}


def test_timewait_expires_after_60_seconds() -> None:
    kernel, peer, isn, child, _ = timewait()
    verdict = peer.send("FA", 101, isn + 2, step=61)
    # the entry is gone: the listener sees an ACK and answers with a RST
    assert verdict.reason.name == "TCP_FLAGS" and tcp_header(verdict.replies[0])[2:5] == (isn + 2, 0, RST)
    assert kernel.tcp.established == {}


def test_request_expires_after_the_synack_retries() -> None:
    kernel, peer, first = pending_request()
    verdict = peer.send("A", 501, tcp_header(first)[2] + 1, step=64)
    assert verdict.reason.name == "TCP_FLAGS"  # the listener answers: the request is gone
    assert kernel.tcp.established == {}
