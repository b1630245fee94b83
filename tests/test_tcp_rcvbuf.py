"""The receive buffer behind the advertised window (pktdemux.tcp_rcvbuf):
the skb truesize of the default driver profile as measured on Linux 6.18
through a TUN device, the application's reads (Kernel.autoread,
Kernel.recv), the window update a read sends, and the window growth the
kernel-differential tests check (test_differential_rcvwindow.py,
test_differential_lifecycle.py S16) reproduced without the oracle."""

from __future__ import annotations

import pytest
from tcp_helpers import T0, make_kernel, segment, tcp_header

from pktdemux.sockets import Proto
from pktdemux.tcp_rcvbuf import linear_skb, space_from_win, win_from_space

PEER, LOCAL = "10.0.0.2", "10.0.0.1"


@pytest.mark.parametrize(("payload", "truesize"), [
    (1, 832), (128, 832), (152, 832), (153, 1280), (600, 1280), (601, 2304), (1460, 2304),
])
def test_linear_skb_truesize_is_what_linux_charged(payload: int, truesize: int) -> None:
    """ss -tm's skmem r after one unread segment of ``payload`` bytes (IPv4,
    no TCP options) through the oracle's TUN device."""
    assert linear_skb(40 + payload)[0] == truesize


def test_a_small_segment_fits_in_the_room_after_the_last() -> None:
    _, room = linear_skb(45)  # "hello"
    assert room == 256 - 64 - 45


def test_window_and_space_convert_with_the_scaling_ratio() -> None:
    assert win_from_space(128, 131072) == 65536
    assert space_from_win(128, 65536) == 131072
    assert win_from_space(162, 131072 - 4416) == 80149


def _connection(kernel):  # type: ignore[no-untyped-def]
    """An accepted connection on port 80 (MSS 1460 only): (socket, ISN)."""
    sock = kernel.socket(Proto.TCP, 4, name="srv")
    kernel.bind(sock, LOCAL, 80)
    kernel.listen(sock, 16)
    synack = kernel.receive(segment(PEER, LOCAL, 41000, 80, "S", 1000, options=b"\x02\x04\x05\xb4"), T0, "tun0")
    isn = tcp_header(synack.replies[0])[2]
    verdict = kernel.receive(segment(PEER, LOCAL, 41000, 80, "A", 1001, isn + 1), T0 + 0.001, "tun0")
    return verdict.sockets[0], isn


def _data(kernel, isn: int, offset: int, size: int, at: float) -> list[bytes]:  # type: ignore[no-untyped-def]
    packet = segment(PEER, LOCAL, 41000, 80, "PA", 1001 + offset, isn + 1, window=64240, payload=bytes(size))
    return list(kernel.receive(packet, at, "tun0").replies)


def test_unread_data_keeps_the_right_edge() -> None:
    """S16: 5 bytes, then 5 more, unread: 64235 then 64230 (rcv_ssthresh is
    the clamp, 64076: the offer never re-opens to 64240)."""
    kernel = make_kernel()
    kernel.autoread = False
    _, isn = _connection(kernel)
    assert [tcp_header(_data(kernel, isn, n, 5, T0 + 1 + n)[0])[5] for n in (0, 5)] == [64235, 64230]


def test_a_read_that_frees_half_the_clamp_sends_a_window_update() -> None:
    kernel = make_kernel()
    kernel.autoread = False
    sock, isn = _connection(kernel)
    # once the window stops growing the ACKs are delayed (pktdemux.tcp_delack): the timer's ACK then
    windows = [tcp_header((_data(kernel, isn, 1460 * n, 1460, T0 + 1 + n / 10) or
                           kernel.advance(T0 + 1.05 + n / 10))[0])[5] for n in range(36)]
    assert windows[-1] == 29200
    (update,) = kernel.recv(sock, now=T0 + 5)
    assert tcp_header(update)[5] == 0xFFFF
    assert kernel.recv(sock, now=T0 + 6) == ()


def test_autoread_reads_after_the_ack() -> None:
    """With the application reading at once, growing segments open the
    window past 65535 (the field saturates) and no window update is due."""
    kernel = make_kernel()
    sock, isn = _connection(kernel)
    replies = [_data(kernel, isn, 1460 * n, 1460, T0 + 1 + n / 10) for n in range(4)]
    assert [len(r) for r in replies] == [1, 1, 1, 1]
    assert tcp_header(replies[-1][0])[5] == 0xFFFF
    assert kernel.recv(sock, now=T0 + 2) == ()
