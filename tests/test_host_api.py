"""The Host facade: sockets with Linux's errors, packets in as Scapy or
bytes, verdicts that say what happened, explicit time."""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6

from pktdemux.errors import SocketError
from pktdemux.host import Host


@pytest.fixture
def host() -> Host:
    return Host(["10.0.0.1/24", "fd00::1/64"])


def handshake(host: Host, sport: int, dport: int = 80, data: bytes = b"") -> None:
    synack = host.receive(IP() / TCP(sport=sport, dport=dport, flags="S", seq=1000)).replies[0]
    host.receive(IP() / TCP(sport=sport, dport=dport, flags="A", seq=1001, ack=synack[TCP].seq + 1) / data)


def test_closed_tcp_port_is_refused_with_a_rst(host: Host) -> None:
    result = host.receive(IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=5555, dport=81, flags="S"))
    assert repr(result).splitlines()[0] == (
        "dropped: NO_SOCKET — nothing listens on tcp 10.0.0.1:81; "
        "the kernel answers with a RST (RFC 9293 §3.10.7.1)")
    (rst,) = result.replies
    assert rst[TCP].flags == "RA" and rst[TCP].sport == 81 and rst[IP].dst == "10.0.0.2"
    assert "reply: IP / TCP 10.0.0.1:81 > 10.0.0.2:5555 RA" in repr(result)


def test_closed_udp_port_answers_icmp_port_unreachable(host: Host) -> None:
    result = host.receive(IP() / UDP(sport=5555, dport=53))
    assert result.text.startswith("dropped: NO_SOCKET — no socket is bound to udp 10.0.0.1:53; "
                                  "the kernel answers with ICMP port unreachable")
    assert result.replies[0][ICMP].type == 3 and result.replies[0][ICMP].code == 3
    v6 = host.receive(IPv6() / UDP(sport=5555, dport=53))
    assert "ICMPv6 port unreachable (RFC 4443 §3.1)" in v6.text
    assert v6.replies[0].haslayer(ICMPv6DestUnreach)


def test_unset_addresses_are_the_default_peer_and_the_host(host: Host) -> None:
    raw = host.packet_bytes(IP() / TCP(dport=80))
    assert raw[12:16] == bytes([10, 0, 0, 2]) and raw[16:20] == bytes([10, 0, 0, 1])
    raw6 = host.packet_bytes(IPv6() / UDP(dport=53))
    assert IPv6(raw6).src == "fd00::2" and IPv6(raw6).dst == "fd00::1"
    assert Host(["10.0.0.1/24"], peer=["10.0.0.77"]).packet_bytes(IP() / UDP())[12:16] == bytes([10, 0, 0, 77])


def test_bare_transport_layer_gets_an_ipv4_header(host: Host) -> None:
    assert IP(host.packet_bytes(TCP(dport=81))).dst == "10.0.0.1"


def test_bytes_pass_through_unchanged(host: Host) -> None:
    raw = bytes(IP(src="10.0.0.9", dst="10.0.0.1") / UDP(sport=1, dport=2))
    assert host.packet_bytes(raw) == raw
    assert host.receive(raw).replies[0][IP].dst == "10.0.0.9"


def test_delivered_data_reaches_the_accepted_socket(host: Host) -> None:
    web = host.socket("tcp")
    web.bind("0.0.0.0", 80)
    web.listen()
    assert web.accept() is None
    handshake(host, 40000, data=b"GET / HTTP/1.1\r\n")
    conn = web.accept()
    assert conn is not None
    assert conn.getpeername() == ("10.0.0.2", 40000)
    assert conn.getsockname() == ("10.0.0.1", 80)
    assert conn.recv() == b"GET / HTTP/1.1\r\n"
    assert conn.recv() is None
    assert web.accept() is None


def test_udp_recv_returns_one_datagram_at_a_time(host: Host) -> None:
    dns = host.socket("udp")
    dns.bind("0.0.0.0", 53)
    first = host.receive(IP() / UDP(sport=4000, dport=53) / b"one")
    host.receive(IP() / UDP(sport=4000, dport=53) / b"two")
    assert first.delivered and first.sockets == [dns]
    assert [dns.recv(), dns.recv(), dns.recv()] == [b"one", b"two", None]


def test_socket_errors_are_oserrors_with_linux_errno(host: Host) -> None:
    a = host.socket("tcp")
    a.bind("0.0.0.0", 8080)
    b = host.socket("tcp")
    with pytest.raises(OSError) as info:
        b.bind("0.0.0.0", 8080)
    assert info.value.errno == errno.EADDRINUSE and isinstance(info.value, SocketError)
    user = host.socket("tcp", uid=1000)
    with pytest.raises(OSError) as info:
        user.bind("0.0.0.0", 80)
    assert info.value.errno == errno.EACCES
    with pytest.raises(OSError) as info:
        host.socket("udp").listen()
    assert info.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as info:
        host.socket("tcp").getpeername()
    assert info.value.errno == errno.ENOTCONN


def test_ephemeral_ports_even_for_connect_odd_for_bind_zero(host: Host) -> None:
    client = host.socket("tcp")
    client.connect("10.0.0.9", 443)
    assert client.getsockname()[1] % 2 == 0
    server = host.socket("tcp")
    server.bind("0.0.0.0", 0)
    assert server.getsockname()[1] % 2 == 1


def test_per_destination_port_limit_is_eaddrnotavail() -> None:
    host = Host(["10.0.0.1/24"], sysctls={"net.ipv4.ip_local_port_range": (40000, 40001)})
    clients = [host.socket("tcp") for _ in range(3)]
    clients[0].connect("10.0.0.9", 443)
    clients[1].connect("10.0.0.9", 443)
    with pytest.raises(OSError) as info:
        clients[2].connect("10.0.0.9", 443)
    assert info.value.errno == errno.EADDRNOTAVAIL
    clients[2].connect("10.0.0.10", 443)  # another destination: the same ports serve again
    assert clients[2].getsockname()[1] in (40000, 40001)


def test_clock_is_explicit(host: Host) -> None:
    assert host.clock == 0.0
    host.receive(IP() / UDP(dport=9), at=12.5)
    assert host.clock == 12.5 and host.kernel.now == 12.5
    host.clock += 1
    host.receive(IP() / UDP(dport=9))
    assert host.kernel.now == 13.5


def test_explain_changes_nothing(host: Host) -> None:
    web = host.socket("tcp")
    web.bind("0.0.0.0", 80)
    web.listen()
    explanation = host.explain(IP() / TCP(sport=1234, dport=80, flags="S"))
    assert explanation.text.startswith("delivered to 'tcp://0.0.0.0:80'")
    assert host.kernel.tcp.established == {}
    assert host.kernel.trace is None


def test_from_file_sockets_keep_what_they_receive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "host.toml"
    path.write_text('[host]\naddresses = ["10.0.0.1/24"]\n[[sockets]]\nname = "dns"\nlabel = "udp://0.0.0.0:53"\n')
    host = Host.from_file(str(path))
    result = host.receive(IP() / UDP(dport=53) / b"q")
    assert result.text.startswith("delivered to 'dns' (udp://0.0.0.0:53 UNCONN)")
    assert result.sockets[0].recv() == b"q"
    assert host.sockets == result.sockets


def test_wrappers_are_stable(host: Host) -> None:
    sock = host.socket("udp")
    assert host.wrap(sock.sock) is sock
    assert sock.proto.name == "UDP" and sock.local_port == 0
    assert repr(sock).startswith("<HostSocket #")
