"""Kernel.transmit: the host's own packets are matched against the
emulation's replies and move the emulated sockets along (transcripts)."""

from __future__ import annotations

import struct

import pytest
from tcp_helpers import T0, ip_id, listen, make_kernel, segment, tcp_header

from pktdemux.sent_replies import SentReplies
from pktdemux.sockets import Proto, TcpState
from pktdemux.tcp_segment import ACK, SYN

PEER, LOCAL = "10.0.0.2", "10.0.0.1"
LINUX_SYN = bytes.fromhex("020405b40402080a000003e80000000001030307")


def host_synack(isn: int, ack: int, tsval: int) -> bytes:
    """The SYN-ACK the real host sent: same options as the emulation's, its own ISN and TSval."""
    options = bytes.fromhex("020405b40402080a") + struct.pack("!II", tsval, 1000) + bytes.fromhex("0103030a")
    packet = bytearray(segment(LOCAL, PEER, 80, 41000, "SA", isn, ack, window=65160, options=options))
    packet[4:6] = b"\0\0"  # ID 0 with DF, as Linux sends it
    packet[6] = 0x40
    return _fix_ip_checksum(bytes(packet))


def _fix_ip_checksum(packet: bytes) -> bytes:
    from pktdemux.wire import checksum

    header = bytearray(packet[:20])
    header[10:12] = b"\0\0"
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + packet[20:]


def test_host_synack_with_its_own_isn_matches_and_is_adopted() -> None:
    kernel = make_kernel()
    listener = listen(kernel, LOCAL, 80)
    ours = kernel.receive(segment(PEER, LOCAL, 41000, 80, "S", 100, options=LINUX_SYN), T0, "tun0").replies[0]
    assert tcp_header(ours)[2] != 0xABCDEF00
    result = kernel.transmit(host_synack(0xABCDEF00, 101, 0x12345678), T0 + 0.0001)
    assert result.matched is True and result.action == "reply", result.note
    (req,) = result.sockets
    assert req.tcb.iss == 0xABCDEF00 and req.parent is listener
    ack_opts = b"\x01\x01\x08\x0a" + struct.pack("!II", 1001, 0x12345678)
    verdict = kernel.receive(segment(PEER, LOCAL, 41000, 80, "A", 101, 0xABCDEF01, options=ack_opts), T0 + 0.01, "tun0")
    assert verdict.delivered and req.state is TcpState.ESTABLISHED, verdict.note
    assert req in listener.tcb.accept_queue


def test_host_synack_differing_in_options_is_not_matched() -> None:
    kernel = make_kernel()
    listen(kernel, LOCAL, 80)
    kernel.receive(segment(PEER, LOCAL, 41000, 80, "S", 100), T0, "tun0")  # SYN without options
    result = kernel.transmit(host_synack(7, 101, 1), T0)
    assert result.matched is False and result.note.endswith("ip.total_length: 60 != 44")


def test_host_rst_for_a_closed_port_matches() -> None:
    kernel = make_kernel()
    reply = kernel.receive(segment(PEER, LOCAL, 40000, 81, "S", 1000), T0, "tun0").replies[0]
    assert kernel.transmit(reply, T0 + 0.001).matched is True
    assert kernel.transmit(reply, T0 + 0.002).matched is False  # each reply matches once


def test_unproduced_rst_names_the_closest_reply() -> None:
    kernel = make_kernel()
    reply = kernel.receive(segment(PEER, LOCAL, 40000, 81, "S", 1000), T0, "tun0").replies[0]
    wrong = bytearray(reply)
    wrong[8] = 63  # TTL
    result = kernel.transmit(_fix_ip_checksum(bytes(wrong)), T0)
    assert result.matched is False and result.note.endswith("ip.ttl: 63 != 64")


def test_connect_then_peer_synack_gives_the_hosts_third_ack() -> None:
    kernel = make_kernel()
    syn = bytearray(segment(LOCAL, PEER, 39769, 9000, "S", 1236643992, window=64240, options=LINUX_SYN))
    syn[4:6], syn[6] = (23917).to_bytes(2, "big"), 0x40
    result = kernel.transmit(_fix_ip_checksum(bytes(syn)), T0)
    assert result.matched is None and result.action == "connect"
    (sock,) = result.sockets
    assert sock.state is TcpState.SYN_SENT
    verdict = kernel.receive(segment(PEER, LOCAL, 9000, 39769, "SA", 5000, 1236643993), T0 + 0.01, "tun0")
    (third,) = verdict.replies
    assert sock.state is TcpState.ESTABLISHED
    assert tcp_header(third)[2:6] == (1236643993, 5001, ACK, 64240) and ip_id(third) == 23918
    assert kernel.transmit(third, T0 + 0.011).matched is True


def test_syn_sent_rejects_a_synack_with_a_wrong_ack() -> None:
    kernel = make_kernel()
    kernel.transmit(segment(LOCAL, PEER, 39769, 9000, "S", 1000), T0)
    verdict = kernel.receive(segment(PEER, LOCAL, 9000, 39769, "SA", 5000, 1077), T0, "tun0")
    assert tcp_header(verdict.replies[0])[2:5] == (1077, 0, 0x04)


def test_data_and_close_move_the_connection_to_time_wait() -> None:
    kernel = make_kernel()
    listen(kernel, LOCAL, 80)
    isn = tcp_header(kernel.receive(segment(PEER, LOCAL, 41000, 80, "S", 100), T0, "tun0").replies[0])[2]
    child = kernel.receive(segment(PEER, LOCAL, 41000, 80, "A", 101, isn + 1), T0, "tun0").sockets[0]
    sent = kernel.transmit(segment(LOCAL, PEER, 80, 41000, "PA", isn + 1, 101, payload=b"hello"), T0 + 0.1)
    assert sent.action == "send" and child.tcb.snd_nxt == isn + 6
    assert child not in child.parent.tcb.accept_queue  # it sent: the application accept()ed it
    closing = kernel.transmit(segment(LOCAL, PEER, 80, 41000, "FA", isn + 6, 101), T0 + 0.2)
    assert closing.action == "close" and child.state is TcpState.FIN_WAIT1
    kernel.receive(segment(PEER, LOCAL, 41000, 80, "A", 101, isn + 7), T0 + 0.3, "tun0")
    assert child.state is TcpState.FIN_WAIT2
    verdict = kernel.receive(segment(PEER, LOCAL, 41000, 80, "FA", 101, isn + 7), T0 + 0.4, "tun0")
    assert child.state is TcpState.TIME_WAIT
    assert tcp_header(verdict.replies[0])[2:5] == (isn + 7, 102, ACK) and ip_id(verdict.replies[0]) == 0


def test_host_ack_differing_in_window_is_reported() -> None:
    kernel = make_kernel()
    listen(kernel, LOCAL, 80)
    isn = tcp_header(kernel.receive(segment(PEER, LOCAL, 41000, 80, "S", 100), T0, "tun0").replies[0])[2]
    kernel.receive(segment(PEER, LOCAL, 41000, 80, "A", 101, isn + 1), T0, "tun0")
    ours = kernel.receive(segment(PEER, LOCAL, 41000, 80, "PA", 101, isn + 1, payload=b"hi"), T0, "tun0").replies[0]
    theirs = bytearray(ours)
    theirs[34:36] = (502).to_bytes(2, "big")
    result = kernel.transmit(bytes(theirs), T0 + 0.001)
    assert result.matched is False and "tcp.window" in result.note


@pytest.mark.parametrize("padding", [b"", bytes(6), b"\xaa" * 6 + b"\xde\xad\xbe\xef"])
def test_link_padding_after_the_hosts_ack_is_not_data(padding: bytes) -> None:
    """A pure ACK in a minimum-size Ethernet frame comes with padding (and
    maybe an FCS) after its IP length: still a pure ACK, matched, and SND.NXT
    does not move."""
    kernel = make_kernel()
    listen(kernel, LOCAL, 80)
    isn = tcp_header(kernel.receive(segment(PEER, LOCAL, 41000, 80, "S", 100), T0, "tun0").replies[0])[2]
    child = kernel.receive(segment(PEER, LOCAL, 41000, 80, "A", 101, isn + 1), T0, "tun0").sockets[0]
    ours = kernel.receive(segment(PEER, LOCAL, 41000, 80, "PA", 101, isn + 1, payload=b"hi"), T0, "tun0").replies[0]
    result = kernel.transmit(ours + padding, T0 + 0.001)
    assert result.matched is True and result.action == "reply", result.note
    assert child.tcb.snd_nxt == isn + 1


def test_udp_from_a_port_without_socket_is_an_implicit_bind() -> None:
    from pktdemux.wire import PROTO_UDP, build_ipv4, parse_addr

    kernel = make_kernel()
    datagram = build_ipv4(src=parse_addr(LOCAL), dst=parse_addr(PEER), proto=PROTO_UDP,
                          payload=struct.pack("!HHHH", 5353, 53, 9, 0) + b"q")
    result = kernel.transmit(datagram, T0)
    assert result.action == "implicit bind" and result.matched is None
    (sock,) = result.sockets
    assert sock.proto is Proto.UDP and sock.local_port == 5353 and sock in kernel.udp.on_port(5353)
    assert kernel.transmit(datagram, T0 + 1).action == "send"


def test_sent_replies_stay_bounded() -> None:
    store = SentReplies(max_age=5.0, max_count=100)
    packets = [segment(LOCAL, PEER, 80, 1000 + i, "R", i) for i in range(300)]
    for i, packet in enumerate(packets):
        store.record((packet,), T0 + i * 0.001)
    assert len(store) == 100
    store.prune(T0 + 100)
    assert len(store) == 0 and store.closest(packets[-1]) is None


def test_unparsable_packets_do_not_raise() -> None:
    kernel = make_kernel()
    assert kernel.transmit(b"", T0).matched is None
    assert kernel.transmit(b"\x45" + bytes(10), T0).matched is None
    assert SYN  # flags are plain ints


def _fragment(packet: bytes, *, offset: int, more: bool, keep: int) -> bytes:
    """``packet`` (IPv4, no options) as one fragment: ``keep`` bytes of its payload at ``offset``."""
    from pktdemux.wire import build_ipv4

    payload = packet[20:][offset:offset + keep]
    frag = build_ipv4(src=packet[12:16], dst=packet[16:20], proto=packet[9], payload=payload, ident=7)
    flags = (0x2000 if more else 0) | offset >> 3
    return _fix_ip_checksum(frag[:6] + flags.to_bytes(2, "big") + frag[8:])


def test_host_first_fragment_with_part_of_the_tcp_header_does_not_raise() -> None:
    kernel = make_kernel()
    syn = segment(LOCAL, PEER, 41000, 80, "S", 100, options=LINUX_SYN)
    first = _fragment(syn, offset=0, more=True, keep=24)  # data offset says 40 bytes, 24 present
    result = kernel.transmit(first, T0)
    assert result.matched is None and result.action == "send"
    assert result.note == "IPv4 fragment at offset 0, more follow: sent by an application"
    later = _fragment(syn, offset=24, more=False, keep=16)
    assert kernel.transmit(later, T0).note == "IPv4 fragment at offset 24: sent by an application"
    assert not kernel.tcp.established  # no connect() from a fragment


def test_host_syn_cut_inside_its_options_does_not_raise() -> None:
    kernel = make_kernel()
    syn = segment(LOCAL, PEER, 41000, 80, "S", 100, options=LINUX_SYN)
    cut = _fix_ip_checksum(syn[:2] + (len(syn) - 14).to_bytes(2, "big") + syn[4:-14])
    result = kernel.transmit(cut, T0)
    assert result.action == "connect"
    (sock,) = result.sockets
    assert sock.tcb.mss == 1460  # the MSS option survived; the cut timestamp did not
    assert sock.tcb.ts_ok is False


def test_parse_options_bounds_the_end_by_the_buffer() -> None:
    from pktdemux.tcp_options import parse_options

    opts = parse_options(bytes.fromhex("020405b4040208"), 0, 40, True)
    assert opts.mss == 1460 and opts.tsval is None
