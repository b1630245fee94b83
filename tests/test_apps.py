"""pktdemux.apps: an echo server answering over TCP and UDP, packets built from the socket's state."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from pktdemux.apps import echo, serve
from pktdemux.host import Host


def checksums_ok(packet: bytes) -> bool:
    parsed = IP(packet)
    again = parsed.copy()
    del again.chksum
    del again.payload.chksum
    rebuilt = IP(bytes(again))
    return (rebuilt.chksum, rebuilt.payload.chksum) == (parsed.chksum, parsed.payload.chksum)


def test_tcp_echo_answers_with_the_connection_sequence_numbers() -> None:
    host = Host(["10.0.0.1/24"])
    server = host.socket("tcp")
    server.bind("0.0.0.0", 7)
    server.listen()
    serve(server, echo)
    synack = host.receive(IP() / TCP(sport=40000, dport=7, flags="S", seq=1000)).replies[0]
    iss = synack[TCP].seq
    got = host.receive(IP() / TCP(sport=40000, dport=7, flags="PA", seq=1001, ack=iss + 1) / b"ping")
    (ack,) = got.replies
    (data,) = got.sent
    segment = IP(data)
    assert bytes(segment[TCP].payload) == b"ping"
    assert (segment[TCP].seq, segment[TCP].ack, str(segment[TCP].flags)) == (iss + 1, 1005, "PA")
    assert segment[TCP].ack == ack[TCP].ack and segment.dst == "10.0.0.2" and segment[TCP].dport == 40000
    assert checksums_ok(data)
    again = host.receive(IP() / TCP(sport=40000, dport=7, flags="PA", seq=1005, ack=iss + 5) / b"two")
    assert IP(again.sent[0])[TCP].seq == iss + 5  # SND.NXT moved on by what was sent
    assert "app sent: IP / TCP 10.0.0.1:echo > 10.0.0.2:40000 PA / Raw" in repr(again)


def test_udp_echo_answers_the_sender() -> None:
    host = Host(["10.0.0.1/24", "fd00::1/64"])
    for family, any_addr in ((4, "0.0.0.0"), (6, "::")):
        sock = host.socket("udp", family, v6only=True) if family == 6 else host.socket("udp")
        sock.bind(any_addr, 7)
        serve(sock)
    v4 = host.receive(IP(src="10.0.0.9") / UDP(sport=5353, dport=7) / b"hi").sent[0]
    assert (IP(v4).src, IP(v4).dst, IP(v4)[UDP].sport, IP(v4)[UDP].dport) == ("10.0.0.1", "10.0.0.9", 7, 5353)
    assert bytes(IP(v4)[UDP].payload) == b"hi" and checksums_ok(v4)
    v6 = IPv6(host.receive(IPv6() / UDP(sport=5353, dport=7) / b"hi6").sent[0])
    assert (v6.src, v6.dst, bytes(v6[UDP].payload)) == ("fd00::1", "fd00::2", b"hi6")
    del v6[UDP].chksum
    assert IPv6(bytes(v6))[UDP].chksum == IPv6(host.receive(IPv6() / UDP(sport=5353, dport=7) / b"hi6").sent[0])[UDP].chksum


def test_an_app_that_returns_nothing_sends_nothing() -> None:
    host = Host(["10.0.0.1/24"])
    sink = host.socket("udp")
    sink.bind("0.0.0.0", 9)
    serve(sink, lambda data: None)
    result = host.receive(IP() / UDP(dport=9) / b"x")
    assert result.sent == () and sink.recv() is None
