"""pktdemux.network: port forwarding through a home router (DNAT)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, UDPerror

from pktdemux.host import Host
from pktdemux.network import Router


def rebuilt_checksums(packet: bytes) -> tuple[int, int]:
    copy = IP(packet)
    del copy.chksum
    del copy.payload.chksum
    again = IP(bytes(copy))
    return again.chksum, again.payload.chksum


@pytest.fixture
def lan() -> tuple[Router, Host]:
    server = Host(["192.168.1.50/24"])
    game = server.socket("tcp")
    game.bind("0.0.0.0", 25565)
    game.listen()
    router = Router("203.0.113.5/24")
    router.forward("tcp 203.0.113.5:25565 -> 192.168.1.50:25565", server)
    router.forward("udp 203.0.113.5:19132 -> 192.168.1.50:19132", server)
    return router, server


def test_forwarded_syn_reaches_the_internal_listener_and_the_synack_leaves_from_the_public_address(lan) -> None:  # type: ignore[no-untyped-def]
    router, _ = lan
    crossing = router.receive(IP(src="198.51.100.7", ttl=64) / TCP(sport=50000, dport=25565, flags="S"))
    inside = IP(crossing.inside)
    assert (inside.dst, inside[TCP].dport, inside.ttl) == ("192.168.1.50", 25565, 63)
    assert rebuilt_checksums(crossing.inside) == (inside.chksum, inside[TCP].chksum)
    assert crossing.received.delivered
    (synack,) = crossing.replies
    out = IP(synack)
    assert (out.src, out[TCP].sport, out.dst, str(out[TCP].flags)) == ("203.0.113.5", 25565, "198.51.100.7", "SA")
    assert rebuilt_checksums(synack) == (out.chksum, out[TCP].chksum)
    assert repr(crossing).startswith("forwarded by tcp 203.0.113.5:25565 -> 192.168.1.50:25565")


def test_forwarded_udp_to_a_closed_port_comes_back_translated(lan) -> None:  # type: ignore[no-untyped-def]
    router, _ = lan
    crossing = router.receive(IP(src="198.51.100.7") / UDP(sport=50000, dport=19132))
    out = IP(crossing.replies[0])
    assert out.src == "203.0.113.5" and out[ICMP].type == 3 and out[ICMP].code == 3
    quoted = out[ICMP].payload
    assert (quoted.dst, quoted[UDPerror].dport) == ("203.0.113.5", 19132)
    assert rebuilt_checksums(crossing.replies[0]) == (out.chksum, out[ICMP].chksum)


def test_unforwarded_port_is_the_router_own(lan) -> None:  # type: ignore[no-untyped-def]
    router, _ = lan
    crossing = router.receive(IP(src="198.51.100.7") / TCP(sport=50000, dport=22, flags="S"))
    assert crossing.rule is None and crossing.inside is None
    assert IP(crossing.replies[0]).src == "203.0.113.5" and IP(crossing.replies[0])[TCP].flags == "RA"


def test_bad_rules_are_refused() -> None:
    router = Router("203.0.113.5/24")
    with pytest.raises(ValueError):
        router.forward("tcp 203.0.113.6:80 -> 192.168.1.2:80", Host(["192.168.1.2/24"]))
    with pytest.raises(ValueError):
        router.forward("sctp 203.0.113.5:80 -> 192.168.1.2:80", Host(["192.168.1.2/24"]))
