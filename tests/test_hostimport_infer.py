"""Inference rules of `pktdemux host infer` on small synthetic captures, and the figures on shipped ones."""

from __future__ import annotations

import ipaddress
import pathlib
from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from pktdemux.capture import Capture, Record
from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.hostimport import infer_host, render, stack_signs
from pktdemux.replay import Replay

ROOT = pathlib.Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"

CLIENT, CLIENT_MAC = "192.0.2.100", "02:00:00:00:00:64"
HOST_MAC = "00:30:48:dd:00:53"
LINUX_SYNACK_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (7, 1)), ("NOP", None), ("WScale", 7)]
SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]


@dataclass
class Rec:
    n: int
    linktype: int
    frame: bytes
    time: float = 0.0


def capture(*packets, mac: dict[str, str] | None = None) -> list[Rec]:  # type: ignore[no-untyped-def]
    """Ethernet records of ``packets``, one a second from time 1.0; ``mac``
    gives a source address's link-layer address."""
    records = []
    for n, pkt in enumerate(packets, 1):
        src = pkt.src
        ether = Ether(src=(mac or {}).get(src, CLIENT_MAC), dst="02:00:00:00:00:01")
        records.append(Rec(n, 1, bytes(ether / pkt), float(n)))
    return records


def handshake(server: str, port: int, *, ttl: int = 64, sport: int = 40000, ip_id: int = 0,
              synack_opts=LINUX_SYNACK_OPTS, syn_opts=SYN_OPTS, syn_tos: int = 0, tos: int = 0,
              syn_flags: str = "S", synack_flags: str = "SA", window: int = 64240):  # type: ignore[no-untyped-def]
    syn = IP(src=CLIENT, dst=server, tos=syn_tos) / TCP(sport=sport, dport=port, flags=syn_flags, seq=1000,
                                                        options=syn_opts)
    synack = IP(src=server, dst=CLIENT, ttl=ttl, id=ip_id, flags="DF", tos=tos) / TCP(
        sport=port, dport=sport, flags=synack_flags, seq=5000, ack=1001, window=window, options=synack_opts)
    return [syn, synack]


def refused(server: str, port: int, *, ttl: int = 64, sport: int = 40001, ip_id: int = 0):  # type: ignore[no-untyped-def]
    syn = IP(src=CLIENT, dst=server) / TCP(sport=sport, dport=port, flags="S", seq=2000)
    rst = IP(src=server, dst=CLIENT, ttl=ttl, id=ip_id, flags="DF") / TCP(
        sport=port, dport=sport, flags="RA", seq=0, ack=2001, window=0)
    return [syn, rst]


def infer(records, *addresses: str):  # type: ignore[no-untyped-def]
    given = [ipaddress.ip_interface(a) for a in addresses] if addresses else None
    imported = infer_host(records, given, source="test")
    parse_host(render(imported), "inferred.toml")  # the text reads back
    return imported


def addresses(imported) -> set[str]:  # type: ignore[no-untyped-def]
    return {str(a.ip) for i in imported.spec.interfaces for a in i.addresses}


def text(imported) -> str:  # type: ignore[no-untyped-def]
    return render(imported)


# -- several addresses of one host --------------------------------------------------------

@pytest.mark.parametrize("other, taken", [
    (refused("203.0.113.20", 110, ttl=57), True),                  # same TTL, same client
    (refused("203.0.113.20", 110, ttl=58), False),                 # another TTL: another host
    (refused("203.0.113.20", 110, ttl=57, ip_id=999), False),      # RST with an ID: another stack
])
def test_responders_of_one_configuration(other, taken: bool) -> None:  # type: ignore[no-untyped-def]
    records = capture(*handshake("203.0.113.10", 110, ttl=57), *handshake("203.0.113.10", 110, ttl=57, sport=40002),
                      *other)
    imported = infer(records)
    assert ("203.0.113.20" in addresses(imported)) is taken
    if taken:
        assert "Also the host's: 203.0.113.20" in text(imported)
        # the port refused on the other address: the listener is bound to the address that answered
        (sock,) = imported.spec.sockets
        assert sock.address == ipaddress.ip_address("203.0.113.10").packed


def test_responders_without_a_common_peer_need_the_same_kind_of_reply() -> None:
    ping = [IP(src="10.1.0.1", dst="10.1.0.2") / ICMP(type=8, id=1, seq=1),
            IP(src="10.1.0.2", dst="10.1.0.1", ttl=255) / ICMP(type=0, id=1, seq=1),
            IP(src="10.2.0.1", dst="10.2.0.2") / ICMP(type=8, id=1, seq=1),
            IP(src="10.2.0.2", dst="10.2.0.1", ttl=255) / ICMP(type=0, id=1, seq=1)]
    assert addresses(infer(capture(*ping))) >= {"10.1.0.2", "10.2.0.2"}
    mixed = ping[:2] + refused("10.2.0.2", 25, ttl=255)
    assert "10.2.0.2" not in addresses(infer(capture(*mixed)))


def test_host_talking_to_itself_owns_every_address_it_sends_to_itself() -> None:
    records = capture(IP(src="192.0.2.1", dst="192.0.2.1") / ICMP(type=8),
                      IP(src="192.0.2.1", dst="192.0.2.1") / ICMP(type=0),
                      IPv6(src="fe80::1", dst="fe80::1") / ICMP(type=8))
    imported = infer(records)
    assert {"192.0.2.1", "fe80::1"} <= addresses(imported)
    assert "sends packets to itself" in text(imported)


def test_loopback_capture_adds_the_hosts_wire_address() -> None:
    loop = handshake("127.0.0.1", 3306)
    loop[0][IP].src = "127.0.0.1"
    loop[1][IP].dst = "127.0.0.1"
    wire = [IP(src="10.0.0.5", dst="10.0.0.9") / UDP(sport=5000, dport=53),
            IP(src="10.0.0.9", dst="10.0.0.5") / UDP(sport=53, dport=5000),
            IP(src="10.0.0.5", dst="10.0.0.7") / UDP(sport=5001, dport=53)]
    imported = infer(capture(*loop, *loop, *wire))
    assert "10.0.0.5" in addresses(imported)
    assert imported.spec.interfaces[0].name == "eth0"
    assert "taken on the host" in text(imported)
    build_kernel(imported.spec)


def test_eui64_ties_the_ipv6_address_to_the_ipv4_one() -> None:
    v6 = "2001:db8::230:48ff:fedd:53"
    records = capture(*handshake("198.51.100.13", 22),
                      IPv6(src=v6, dst="2001:db8::99") / TCP(sport=40000, dport=80, flags="S"),
                      IPv6(src="2001:db8::99", dst=v6) / TCP(sport=80, dport=40000, flags="SA"),
                      mac={"198.51.100.13": HOST_MAC, v6: HOST_MAC})
    imported = infer(records)
    assert v6 in addresses(imported)
    assert "EUI-64" in text(imported)
    # another MAC: not tied
    records = capture(*handshake("198.51.100.13", 22),
                      IPv6(src=v6, dst="2001:db8::99") / TCP(sport=40000, dport=80, flags="S"),
                      mac={"198.51.100.13": "00:11:22:33:44:55", v6: HOST_MAC})
    assert v6 not in addresses(infer(records))


# -- sysctls the SYN-ACKs reveal ----------------------------------------------------------------

@pytest.mark.parametrize("synack_opts, expected", [
    (LINUX_SYNACK_OPTS, {}),
    ([("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)], {"net.ipv4.tcp_timestamps": 0}),
    ([("MSS", 1460), ("NOP", None), ("NOP", None), ("Timestamp", (7, 1)), ("NOP", None), ("WScale", 7)],
     {"net.ipv4.tcp_sack": 0}),
    ([("MSS", 1460), ("SAckOK", b""), ("Timestamp", (7, 1))], {"net.ipv4.tcp_window_scaling": 0}),
    ([("MSS", 1460)], {"net.ipv4.tcp_timestamps": 0, "net.ipv4.tcp_sack": 0,
                        "net.ipv4.tcp_window_scaling": 0}),
])
def test_options_left_out_of_the_synack(synack_opts, expected: dict) -> None:  # type: ignore[no-untyped-def]
    imported = infer(capture(*handshake("198.51.100.1", 80, synack_opts=synack_opts)))
    got = {k: v for k, v in imported.spec.sysctl.items()
           if k in ("net.ipv4.tcp_timestamps", "net.ipv4.tcp_sack", "net.ipv4.tcp_window_scaling")}
    assert got == expected
    for name in expected:
        assert f"{name} = 0: the SYN offered" in text(imported) and "packet 2" in text(imported)


def test_option_not_offered_says_nothing() -> None:
    imported = infer(capture(*handshake("198.51.100.1", 80, syn_opts=[("MSS", 1460)],
                                        synack_opts=[("MSS", 1460)])))
    assert "net.ipv4.tcp_timestamps" not in imported.spec.sysctl


def test_mixed_answers_keep_the_default() -> None:
    records = capture(*handshake("198.51.100.1", 80),
                      *handshake("198.51.100.1", 80, sport=40002, synack_opts=[("MSS", 1460)]))
    imported = infer(records)
    assert "net.ipv4.tcp_timestamps" not in imported.spec.sysctl
    assert "kept at its default" in text(imported)


@pytest.mark.parametrize("synack_flags, expected", [("SAE", None), ("SA", 0)])
def test_ecn_setup_answered_or_not(synack_flags: str, expected) -> None:  # type: ignore[no-untyped-def]
    imported = infer(capture(*handshake("198.51.100.1", 80, syn_flags="SEC", synack_flags=synack_flags)))
    assert imported.spec.sysctl.get("net.ipv4.tcp_ecn") == expected


@pytest.mark.parametrize("syn_tos, tos, reflect, caveat", [
    (0x28, 0x28, 1, False),   # the SYN's DSCP comes back: tcp_reflect_tos
    (0x00, 0x20, None, True),  # a TOS the SYN did not carry: cannot be set
    (0x00, 0x00, None, False),
])
def test_synack_tos(syn_tos: int, tos: int, reflect, caveat: bool) -> None:  # type: ignore[no-untyped-def]
    imported = infer(capture(*handshake("198.51.100.1", 80, syn_tos=syn_tos, tos=tos)))
    assert imported.spec.sysctl.get("net.ipv4.tcp_reflect_tos") == reflect
    assert ("TOS their SYN did not carry" in text(imported)) is caveat


def exchange(steps) -> list[Rec]:  # type: ignore[no-untyped-def]
    """A handshake with the server 198.51.100.1:80, then ``steps``: (ms after
    the previous packet, "c" client data / "s" server data / "a" server pure
    ACK, payload bytes), with sequence numbers that follow."""
    records = capture(*handshake("198.51.100.1", 80))
    seq = {"c": 1001, "s": 5001}
    t = records[-1].time
    for n, (ms, who, size) in enumerate(steps, len(records) + 1):
        t += ms / 1000
        if who == "c":
            pkt = IP(src=CLIENT, dst="198.51.100.1") / TCP(sport=40000, dport=80, flags="PA", seq=seq["c"],
                                                          ack=seq["s"]) / (b"q" * size)
            seq["c"] += size
        else:
            pkt = IP(src="198.51.100.1", dst=CLIENT, flags="DF") / TCP(
                sport=80, dport=40000, flags="PA" if size else "A", seq=seq["s"], ack=seq["c"]) / (b"r" * size)
            seq["s"] += size
        ether = Ether(src=CLIENT_MAC, dst="02:00:00:00:00:01")
        records.append(Rec(n, 1, bytes(ether / pkt), t))
    return records


@pytest.mark.parametrize("steps, thresh", [
    # answered within 40 ms, then the next small request ACKed at once: not interactive
    ([(0, "c", 50), (5, "s", 100), (100, "c", 50), (1, "a", 0)], 255),
    # the same ACK 40 ms late: the delayed-ACK timer of a 6.18 host in pingpong mode
    ([(0, "c", 50), (5, "s", 100), (100, "c", 50), (40, "a", 0)], None),
    # no data answered within 40 ms before the quick ACK: quick-ACK credits explain it
    ([(0, "c", 50), (60, "s", 100), (100, "c", 50), (1, "a", 0)], None),
    # the delayed-ACK timer fired (ACK 40 ms late), which leaves pingpong mode: the next quick ACK is 6.18's
    ([(0, "c", 50), (5, "s", 100), (100, "c", 50), (40, "a", 0), (1, "c", 50), (1, "a", 0)], None),
    # a quick ACK of a full-sized segment: ACKed at once in any mode
    ([(0, "c", 50), (5, "s", 100), (100, "c", 1400), (1, "a", 0)], None),
])
def test_quick_acks_after_replies_raise_the_pingpong_threshold(steps, thresh) -> None:  # type: ignore[no-untyped-def]
    imported = infer(exchange(steps), "198.51.100.1")
    assert imported.spec.sysctl.get("net.ipv4.tcp_pingpong_thresh") == thresh
    assert ("tcp_pingpong_thresh = 255: the host ACKed small segments at once" in text(imported)) is bool(thresh)


NO_TS_OPTS = [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]


@pytest.mark.parametrize("synack_opts, window, initrwnd, rmem1", [
    (LINUX_SYNACK_OPTS, 14480, 10, None),  # 10 x 1448 (MSS 1460 less 12 for timestamps)
    (NO_TS_OPTS, 5840, 4, None),           # 4 x 1460
    (NO_TS_OPTS, 29200, 20, None),         # 20 x 1460, older kernels' default cap
    (NO_TS_OPTS, 64240, 0, None),          # 6.18's own window: nothing to set
    ([("MSS", 65495), ("SAckOK", b""), ("Timestamp", (7, 1)), ("NOP", None), ("WScale", 7)],
     43690, 0, 87380),                     # no whole number of segments: half of tcp_rmem[1]
])
def test_small_synack_window_is_the_routes_initrwnd(synack_opts, window: int, initrwnd: int,  # type: ignore[no-untyped-def]
                                                    rmem1: int | None) -> None:
    """A SYN-ACK window of N whole segments below 6.18's default is the
    route's initrwnd, the buffer (tcp_rmem[1]) left at its default; only a
    window no initrwnd gives is half of a smaller tcp_rmem[1]."""
    imported = infer(capture(*handshake("198.51.100.1", 80, synack_opts=synack_opts, window=window)))
    assert imported.spec.interfaces[0].initrwnd == initrwnd
    rmem = imported.spec.sysctl.get("net.ipv4.tcp_rmem", (4096, 131072, 33554432))
    assert rmem[1] == (rmem1 or 131072)  # type: ignore[index]
    if initrwnd:
        assert f"initrwnd = {initrwnd}\n" in text(imported)
        assert f"# initrwnd = {initrwnd}: SYN-ACK window {window} (packet 2) is {initrwnd} x" in text(imported)
        assert "1 of 1 SYN-ACK(s) agree" in " ".join(imported.host_notes)
    else:
        assert "initrwnd" not in text(imported)


def test_synack_over_loopback_gives_no_initrwnd_to_the_hosts_device() -> None:
    """A host on eth0 whose SYN-ACK went to its own address (over lo, whose
    routes [host] initrwnd does not set): the window is taken as half of
    tcp_rmem[1] instead."""
    loop = handshake("127.0.0.1", 3306, synack_opts=NO_TS_OPTS, window=5840)
    loop[0][IP].src = "127.0.0.1"
    loop[1][IP].dst = "127.0.0.1"
    wire = [IP(src="10.0.0.5", dst="10.0.0.9") / UDP(sport=5000, dport=53),
            IP(src="10.0.0.9", dst="10.0.0.5") / UDP(sport=53, dport=5000)]
    imported = infer(capture(*loop, *wire))
    assert imported.spec.interfaces[0].name == "eth0"
    assert imported.spec.interfaces[0].initrwnd == 0
    assert imported.spec.sysctl["net.ipv4.tcp_rmem"][1] == 11680  # type: ignore[index]


def test_inferred_initrwnd_reproduces_the_synack_and_the_window_after_it() -> None:
    """The SYN-ACK window N x MSS, and the window of the ACK for data that
    follows it (rcv_ssthresh starts at N x MSS, the buffer at its default):
    a replay of the inferred host matches both."""
    syn, synack = handshake("198.51.100.1", 80, synack_opts=NO_TS_OPTS, syn_opts=NO_TS_OPTS, window=5840)
    data = IP(src=CLIENT, dst="198.51.100.1") / TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=5001,
                                                     window=502) / (b"x" * 1460)
    records = capture(syn, synack, IP(src=CLIENT, dst="198.51.100.1") / TCP(sport=40000, dport=80, flags="A",
                                                                          seq=1001, ack=5001, window=502), data)
    imported = infer(records)
    assert imported.spec.interfaces[0].initrwnd == 4
    replay = Replay(build_kernel(imported.spec))
    results = {r.n: r for r in replay.run(Record(r.n, round(r.time * 1e9), r.time, r.linktype, r.frame,
                                                   len(r.frame)) for r in records)}
    (ack,) = results[4].verdict.replies
    window = int.from_bytes(ack[34:36], "big")
    # rcv_ssthresh 5840 grew by 2 x 1460 (tcp_grow_window) to 8760; scale 7: ALIGN(8760, 128) >> 7
    assert window == -(-8760 // 128)
    assert results[2].matched is True


# -- what no setting reproduces is said ------------------------------------------------------------

def test_ip_id_on_tcp_replies_is_a_caveat() -> None:
    imported = infer(capture(*refused("198.51.100.1", 23, ip_id=4242)))
    assert "ID not 0, DF (packet 2)" in text(imported)


def test_icmp_error_without_precedence_is_a_caveat() -> None:
    dgram = IP(src=CLIENT, dst="198.51.100.1") / UDP(sport=5000, dport=9)
    error = IP(src="198.51.100.1", dst=CLIENT, tos=0) / ICMP(type=3, code=3) / bytes(dgram)[:28]
    imported = infer(capture(dgram, error))
    assert "TOS 0x00 (packet 2)" in text(imported)


def test_bsd_option_layout_is_a_caveat() -> None:
    bsd = [("MSS", 1460), ("NOP", None), ("WScale", 6), ("SAckOK", b""), ("Timestamp", (7, 1))]
    imported = infer(capture(*handshake("198.51.100.1", 80, synack_opts=bsd)))
    assert "not in the order Linux writes them" in text(imported)
    assert "not in the order" not in text(infer(capture(*handshake("198.51.100.1", 80))))


# -- Linux or not (tools/infer_report.py) --------------------------------------------------------------

BSD_OPTS = [("MSS", 1460), ("NOP", None), ("WScale", 6), ("SAckOK", b""), ("Timestamp", (7, 1))]


@pytest.mark.parametrize("reply, linux, other", [
    (handshake("198.51.100.1", 80, ttl=57)[1],
     ["TTL from 64", "SYN-ACK with DF, ID 0", "SYN-ACK options in Linux order"], []),
    (handshake("198.51.100.1", 80, ip_id=4242)[1],
     ["TTL from 64", "SYN-ACK options in Linux order"], ["SYN-ACK with DF, ID not 0"]),
    (IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=62) / TCP(flags="SA", options=BSD_OPTS),
     ["hop limit from 64"], ["SYN-ACK options in another order"]),
    (refused("198.51.100.1", 23, ttl=120, ip_id=7)[1], [], ["TTL from 128", "RST with DF, ID not 0"]),
    (IP(src="198.51.100.1", dst=CLIENT, tos=0xC0) / ICMP(type=3, code=3) / bytes(28),
     ["TTL from 64", "ICMP error with TOS 0xc0"], []),
    (IP(src="198.51.100.1", dst=CLIENT, tos=0) / ICMP(type=3, code=3) / bytes(28),
     ["TTL from 64"], ["ICMP error with TOS 0x00"]),
    (IP(src="198.51.100.1", dst=CLIENT, ttl=254) / ICMP(type=0), [], ["TTL from 255"]),
    (b"\x45\x00", [], []),  # not a packet: no sign
])
def test_stack_signs(reply, linux: list[str], other: list[str]) -> None:  # type: ignore[no-untyped-def]
    """What one kernel-made reply says of the stack that sent it."""
    assert stack_signs(bytes(reply)) == (linux, other)


# -- socket lifetimes ------------------------------------------------------------------------------------

HOST, RESOLVER, HOST6, RESOLVER6 = "198.51.100.1", "192.0.2.53", "2001:db8::1", "2001:db8::53"


def query(port: int, *, v6: bool = False):  # type: ignore[no-untyped-def]
    ip = IPv6(src=HOST6, dst=RESOLVER6) if v6 else IP(src=HOST, dst=RESOLVER)
    return ip / UDP(sport=port, dport=53) / b"query"


def answer(port: int, *, v6: bool = False):  # type: ignore[no-untyped-def]
    ip = IPv6(src=RESOLVER6, dst=HOST6) if v6 else IP(src=RESOLVER, dst=HOST)
    return ip / UDP(sport=53, dport=port) / b"answer"


def unreachable(port: int, *, v6: bool = False):  # type: ignore[no-untyped-def]
    """The host's port unreachable for an answer to ``port``."""
    if v6:
        from scapy.layers.inet6 import ICMPv6DestUnreach
        return IPv6(src=HOST6, dst=RESOLVER6) / ICMPv6DestUnreach(code=4) / bytes(answer(port, v6=True))
    return IP(src=HOST, dst=RESOLVER, tos=0xC0) / ICMP(type=3, code=3) / bytes(answer(port))


@pytest.mark.parametrize("packets, label, closed", [
    # implicit bind by the query (1), answer delivered (2), the late answer (3) drew ICMP (4)
    ([query(33000), answer(33000), answer(33000), unreachable(33000)], "udp://0.0.0.0:33000", 2.5),
    # the answer comes after the resolver gave up: closed between query (1) and answer (2)
    ([query(33001), answer(33001), unreachable(33001)], "udp://0.0.0.0:33001", 1.5),
    # IPv6: the implicit bind is a wildcard AF_INET6 socket
    ([query(33002, v6=True), answer(33002, v6=True), unreachable(33002, v6=True)], "udp://[::]:33002", 1.5),
    # a server socket (it answered a datagram: 1, 2) later closed (3 drew 4)
    ([answer(5353), query(5353), answer(5353), unreachable(5353)], "udp://0.0.0.0:5353", 2.5),
    # no ICMP error: the implicit bind needs no entry
    ([query(33003), answer(33003)], None, None),
    # closed before the host sent from it: no lifetime to give (not open first)
    ([answer(33004), unreachable(33004), query(33004)], None, None),
    # the host's error without the datagram that drew it in the capture: no time to close at
    ([query(33005), unreachable(33005)], None, None),
])
def test_udp_socket_closed_when_a_port_unreachable_follows(packets, label: str | None,  # type: ignore[no-untyped-def]
                                                          closed: float | None) -> None:
    """A UDP port that was open (or that the host sent from first) and later
    drew ICMP port unreachable gets a socket with a close time midway
    between the last packet that shows it open and the datagram that found
    it closed."""
    imported = infer(capture(*packets))
    lifetimes = {s.label: s.closed for s in imported.spec.sockets if s.proto.name == "UDP"}
    if label is None:
        assert all(c is None for c in lifetimes.values())
    else:
        assert lifetimes == {label: closed}
        assert f"closed = {closed}" in text(imported)


def test_inferred_close_time_turns_the_late_answer_away() -> None:
    """pppoe_nb6_http.pcap: the query from port 32623 (packets 26, 27), the
    first answer (32) taken, the late one (33) answered with ICMP port
    unreachable (34): inferred, the late answer finds no socket."""
    path = PCAPS / "pppoe_nb6_http.pcap"
    with Capture(path) as cap:
        imported = infer_host(cap.records(), source=path.name)
    (resolver,) = [s for s in imported.spec.sockets if s.port == 32623]
    assert 1388651877.351014 < resolver.closed < 1388651877.422462
    replay = Replay(build_kernel(imported.spec))
    with Capture(path) as cap:
        results = {r.n: r for r in replay.run(cap.records())}
    assert results[32].verdict.delivered
    assert results[33].reason.name == "NO_SOCKET"


# -- figures on shipped captures ---------------------------------------------------------------------

FIGURES = [
    # capture, host's own replies, at least this many reproduced
    ("pop3_refused_retries.pcap", 21, 21),
    ("vlan_qinq_icmp.pcap", 10, 10),
    ("dns_ptr_icmp_echo.pcap", 4, 4),
    ("sll2_icmp_v4v6.pcap", 2, 2),
    ("pcapng_eth_sll_mysql.pcapng", 43, 4),
    # 17 of its ACKs are sent at once by the capture's kernel (5.1 to 6.0:
    # loopback exchanges within one jiffy never enter pingpong mode there),
    # where 6.18 delays them into the answer (pktdemux.tcp_delack)
    ("localhost_v6_refused_http.pcap", 27, 25),
    ("http_ns_be.pcap", 5, 4),
    ("smtp_ipv6_tcp.pcap", 6, 6),
    ("vlan0_http.pcap", 2, 2),       # initrwnd 10: the SYN-ACK and the ACK after the request
    ("http_3streams.pcap", 3, 1),    # initrwnd 4; the other two carry TOS 0x20 (the server's network)
]


@pytest.mark.parametrize("name, own, reproduced", FIGURES, ids=[f[0] for f in FIGURES])
def test_infer_and_replay_reproduce_the_replies(name: str, own: int, reproduced: int) -> None:
    path = PCAPS / name
    with Capture(path) as cap:
        imported = infer_host(cap.records(), source=name)
    replay = Replay(build_kernel(imported.spec))
    with Capture(path) as cap:
        for _ in replay.run(cap.records()):
            pass
    assert replay.totals.own_generated == own
    assert replay.totals.own_matched >= reproduced
