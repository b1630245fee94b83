"""Inference rules of `pktdemux host infer` on small synthetic captures, and the figures on shipped ones."""

from __future__ import annotations

import ipaddress
import pathlib
from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from pktdemux.capture import Capture
from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.hostimport import infer_host, render
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


def capture(*packets, mac: dict[str, str] | None = None) -> list[Rec]:  # type: ignore[no-untyped-def]
    """Ethernet records of ``packets``; ``mac`` gives a source address's link-layer address."""
    records = []
    for n, pkt in enumerate(packets, 1):
        src = pkt.src
        ether = Ether(src=(mac or {}).get(src, CLIENT_MAC), dst="02:00:00:00:00:01")
        records.append(Rec(n, 1, bytes(ether / pkt)))
    return records


def handshake(server: str, port: int, *, ttl: int = 64, sport: int = 40000, ip_id: int = 0,
              synack_opts=LINUX_SYNACK_OPTS, syn_opts=SYN_OPTS, syn_tos: int = 0, tos: int = 0,
              syn_flags: str = "S", synack_flags: str = "SA"):  # type: ignore[no-untyped-def]
    syn = IP(src=CLIENT, dst=server, tos=syn_tos) / TCP(sport=sport, dport=port, flags=syn_flags, seq=1000,
                                                        options=syn_opts)
    synack = IP(src=server, dst=CLIENT, ttl=ttl, id=ip_id, flags="DF", tos=tos) / TCP(
        sport=port, dport=sport, flags=synack_flags, seq=5000, ack=1001, window=64240, options=synack_opts)
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


# -- figures on shipped captures ---------------------------------------------------------------------

FIGURES = [
    # capture, host's own replies, at least this many reproduced
    ("pop3_refused_retries.pcap", 16, 11),
    ("vlan_qinq_icmp.pcap", 10, 10),
    ("dns_ptr_icmp_echo.pcap", 4, 4),
    ("sll2_icmp_v4v6.pcap", 2, 2),
    ("pcapng_eth_sll_mysql.pcapng", 43, 1),
    ("localhost_v6_refused_http.pcap", 27, 8),
    ("smtp_ipv6_tcp.pcap", 6, 6),
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
