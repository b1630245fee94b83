"""Random differential suite: random socket tables and random packets from
a fixed seed, every packet compared with the real kernel.

Each scenario is one namespace: 6–10 random socket groups (TCP listeners,
bound-only TCP, UDP binds and connects; wildcard, specific, dual-stack,
V6ONLY, v4-mapped, SO_REUSEPORT groups, SO_REUSEADDR sharing) and about 150
random packets (TCP flags/options/payloads, UDP, ICMP and ICMPv6 echo,
unknown protocols; good and bad checksums; local, secondary, broadcast,
multicast, foreign and loopback destinations).  Every error-producing packet
comes from its own peer address, so ICMP rate limiting never decides.  A
SYN is followed by the peer's RST (seq = SYN.seq + 1) that silently drops
any half-open request, so no SYN-ACK retransmission crosses the scenario.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest
from kernel_support import Case, assert_agree, host_toml
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.packet import Raw

SEED = 61820
SCENARIOS = 14
PACKETS = 150
#: Seconds between injections (replies come back within microseconds).
GAP = 0.003

ADDRESSES = ("10.0.0.1/24", "10.0.0.3/24", "fd00::1/64")
#: Bind addresses: (label address, family text, extra keys).
BIND_CHOICES = [
    ("0.0.0.0", {}), ("10.0.0.1", {}), ("10.0.0.3", {}), ("[::]", {"v6only": False}),
    ("[::]", {"v6only": True}), ("[fd00::1]", {}), ("[::ffff:10.0.0.1]", {}),
]


class SocketGen:
    """Random socket groups on distinct ports (no bind conflicts)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sockets: list[dict[str, Any]] = []
        self.ports: list[int] = []
        #: "address:port" peers of connected UDP sockets (some packets come from them)
        self.peers: list[str] = []

    def _add(self, label: str, **keys: Any) -> None:
        self.sockets.append({"label": label, "name": f"s{len(self.sockets)}", **keys})

    def group(self) -> None:
        rng = self.rng
        port = rng.choice([rng.randint(1, 1023), rng.randint(1024, 65535)])
        while port in self.ports:
            port = rng.randint(1, 65535)
        self.ports.append(port)
        proto = rng.choice(["tcp", "udp"])
        addr, extra = rng.choice(BIND_CHOICES)
        backlog = {"listen": rng.choice([1, 4, 128])} if proto == "tcp" else {}
        kind = rng.choice(["single", "single", "bound", "reuseport", "wild+exact", "v4+v6only", "connected"])
        if kind == "single" or (kind == "bound" and proto == "udp"):
            if proto == "udp" and rng.random() < 0.2:
                addr, extra = "10.0.0.255", {}
            self._add(f"{proto}://{addr}:{port}", **backlog, **extra)
        elif kind == "bound":
            self._add(f"tcp://{addr}:{port}", **extra)
        elif kind == "reuseport":
            for _ in range(rng.randint(2, 3)):
                self._add(f"{proto}://{addr}:{port}", reuseport=True, **backlog, **extra)
        elif kind == "wild+exact":
            share = {"reuseport": True} if proto == "tcp" else {"reuseaddr": True}
            first, second = ("0.0.0.0", "10.0.0.1") if rng.random() < 0.5 else ("10.0.0.1", "0.0.0.0")
            self._add(f"{proto}://{first}:{port}", **share, **backlog)
            self._add(f"{proto}://{second}:{port}", **share, **backlog)
        elif kind == "v4+v6only":
            self._add(f"{proto}://0.0.0.0:{port}", **backlog)
            self._add(f"{proto}://[::]:{port}", v6only=True, **backlog)
        else:  # a UDP socket connected to a peer, beside a wildcard one
            peer = f"10.0.0.{rng.randint(200, 250)}:{rng.randint(1024, 65535)}"
            self._add(f"udp://0.0.0.0:{port}", reuseaddr=True)
            self._add(f"udp://0.0.0.0:{port}", reuseaddr=True, peer=peer)
            self.peers.append(peer)


class PacketGen:
    """Random packets towards a host; fresh peer addresses per packet."""

    def __init__(self, rng: random.Random, ports: list[int], peers: list[str]) -> None:
        self.rng = rng
        self.ports = ports
        self.connected_peers = peers
        v4 = [f"10.0.0.{i}" for i in range(2, 200) if i != 3]
        rng.shuffle(v4)
        self.v4_pool = v4
        self.v6_used: set[str] = set()

    def _src4(self) -> str:
        r = self.rng.random()
        if r < 0.03:
            return self.rng.choice(["10.0.0.1", "0.0.0.0", "10.0.0.255", "127.0.0.1", "224.0.0.5"])
        if r < 0.08:
            return f"198.51.100.{self.rng.randint(1, 254)}"
        if r < 0.12 and self.connected_peers:
            return self.rng.choice(self.connected_peers).split(":")[0]
        return self.v4_pool.pop() if self.v4_pool else f"192.0.2.{self.rng.randint(1, 254)}"

    def _src6(self) -> str:
        r = self.rng.random()
        if r < 0.03:
            return self.rng.choice(["::", "fd00::1", "ff02::5"])
        while True:
            prefix = "2001:db8::" if r < 0.08 else "fd00::"
            addr = f"{prefix}{self.rng.randint(0x100, 0xFFFF):x}"
            if addr not in self.v6_used:
                self.v6_used.add(addr)
                return addr

    def _dst4(self) -> str:
        return self.rng.choices(
            ["10.0.0.1", "10.0.0.3", "10.0.0.255", "10.0.0.0", "255.255.255.255", "10.0.0.99", "224.0.0.1",
             "239.1.2.3", "127.0.0.1"],
            [55, 15, 8, 3, 5, 4, 5, 2, 3])[0]

    def _dst6(self) -> str:
        return self.rng.choices(["fd00::1", "ff02::1", "fd00::99", "::1"], [80, 10, 7, 3])[0]

    def _port(self) -> int:
        return self.rng.choice(self.ports) if self.ports and self.rng.random() < 0.7 else self.rng.randint(1, 65535)

    def _ip(self, version: int, proto: int | None = None) -> Any:
        rng = self.rng
        if version == 4:
            keys: dict[str, Any] = dict(src=self._src4(), dst=self._dst4(), id=rng.randint(0, 65535),
                                        ttl=rng.choice([64, 64, 1, 0, 255]), tos=rng.choice([0, 0, 0, 0xFF, 0xB8, 3]))
            if rng.random() < 0.3:
                keys["flags"] = "DF"
            if rng.random() < 0.03:
                keys["options"] = rng.choice([b"\x01\x01\x01\x00", b"\x07\x07\x04" + bytes(4) + b"\x00"])
            if proto is not None:
                keys["proto"] = proto
            return IP(**keys)
        keys = dict(src=self._src6(), dst=self._dst6(), tc=rng.choice([0, 0, 0x10, 0xB9]),
                    fl=rng.randint(0, 0xFFFFF), hlim=rng.choice([64, 255, 1]))
        if proto is not None:
            keys["nh"] = proto
        return IPv6(**keys)

    def _tcp(self) -> tuple[Any, bool]:
        rng = self.rng
        flags = rng.choices(["S", "SA", "A", "PA", "R", "RA", "F", "FA", "SF", "SR", "", "SEC", "FPU", "U"],
                            [30, 6, 10, 8, 5, 4, 4, 5, 3, 3, 3, 4, 2, 2])[0]
        options = rng.choice([[], [], [("MSS", rng.choice([536, 1400, 1460, 9000]))],
                              [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (rng.randint(0, 2**32 - 1), 0)),
                               ("NOP", None), ("WScale", rng.randint(0, 14))],
                              [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b"")],
                              [("NOP", None), ("NOP", None), ("Timestamp", (rng.randint(1, 99), rng.randint(0, 9)))],
                              [("WScale", rng.choice([0, 7, 20]))]])
        seg = TCP(sport=rng.randint(1024, 65535), dport=self._port(), flags=flags, seq=rng.randint(0, 2**32 - 1),
                  ack=rng.randint(0, 2**32 - 1) if "A" in flags else 0, window=rng.choice([0, 8192, 65535]),
                  options=options)
        if rng.random() < 0.05:
            seg.chksum = rng.randint(0, 0xFFFF)
        payload = bytes(rng.randint(0, 255) for _ in range(rng.choice([0, 0, 0, 1, 10, 40])))
        return seg / payload if payload else seg, flags in ("S", "SEC")

    def _udp(self, index: int) -> Any:
        rng = self.rng
        payload = f"p{index}:".encode() + bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 20)))
        dgram = UDP(sport=rng.randint(1, 65535), dport=self._port())
        if rng.random() < 0.12 and self.connected_peers:
            dgram.sport = int(rng.choice(self.connected_peers).split(":")[1])
        r = rng.random()
        if r < 0.05:
            dgram.chksum = rng.randint(1, 0xFFFF)
        elif r < 0.10:
            dgram.chksum = 0
        elif r < 0.13:
            dgram.len = rng.choice([7, 8 + len(payload) + 5, 8 + len(payload) - 1])
        return dgram / payload

    def packet(self, index: int) -> tuple[bytes, bytes | None]:
        """One random packet, and the cleanup RST that follows a SYN (or None)."""
        rng = self.rng
        version = 4 if rng.random() < 0.65 else 6
        kind = rng.choices(["tcp", "udp", "echo", "proto", "icmp-error"], [45, 35, 12, 4, 4])[0]
        cleanup = None
        if kind == "tcp":
            l4, is_syn = self._tcp()
            ip = self._ip(version)
            pkt = ip / l4
            if is_syn:
                seg = pkt[TCP]
                rst = ip.copy() / TCP(sport=seg.sport, dport=seg.dport, flags="R", seq=(seg.seq + 1) % 2**32)
                cleanup = bytes(rst)
        elif kind == "udp":
            pkt = self._ip(version) / self._udp(index)
        elif kind == "echo":
            ident, seq, data = rng.randint(0, 65535), rng.randint(0, 65535), bytes(rng.randint(0, 99) for _ in range(8))
            if version == 4:
                echo = ICMP(type=8, code=rng.choice([0, 0, 5]), id=ident, seq=seq) / data
                if rng.random() < 0.05:
                    echo.chksum = rng.randint(0, 0xFFFF)
                pkt = self._ip(4) / echo
            else:
                pkt = self._ip(6) / ICMPv6EchoRequest(id=ident, seq=seq, data=data)
        elif kind == "proto":
            pkt = self._ip(version, proto=rng.choice([253, 132, 47])) / Raw(b"hello")
        else:
            inner = IP(src="10.0.0.1", dst="10.0.0.77") / UDP(sport=53, dport=9)
            pkt = self._ip(4) / ICMP(type=3, code=3) / bytes(inner)
        raw = bytearray(bytes(pkt))
        if version == 4 and rng.random() < 0.02:
            raw[10] ^= 0x55  # bad IPv4 header checksum
        return bytes(raw), cleanup


def make_case(index: int) -> Case:
    rng = random.Random(SEED * 1000 + index)
    sockets = SocketGen(rng)
    for _ in range(rng.randint(6, 10)):
        sockets.group()
    case = Case(f"random #{index} (seed {SEED})", host_toml(sockets.sockets, addresses=ADDRESSES))
    gen = PacketGen(rng, sockets.ports, sockets.peers)
    for i in range(PACKETS):
        packet, cleanup = gen.packet(i)
        case.add(packet, gap=GAP, label=f"{i}")
        if cleanup is not None:
            case.add(cleanup, gap=GAP, label=f"{i} cleanup RST")
    return case


def test_generator_is_deterministic_and_big_enough() -> None:
    """The same seed gives the same cases; a run compares at least 2,000 packets."""
    assert make_case(3).packets == make_case(3).packets
    assert sum(len(make_case(i).packets) for i in range(SCENARIOS)) >= 2000
    labels = [s["label"] for s in make_case(0).scenario().host.to_json()["sockets"]]
    assert all(ipaddress.ip_address(label.split("//")[1].rsplit(":", 1)[0].strip("[]")) for label in labels)


@pytest.mark.kernel
@pytest.mark.parametrize("index", range(SCENARIOS))
def test_random_scenario(differential, index: int) -> None:
    """Every packet of random scenario ``index``: same replies, same receivers."""
    oracle, _, notes = differential(make_case(index))
    refused = [s.name for s in oracle.sockets if s.error]
    assert refused == [], f"the generator made conflicting sockets: {refused}"
    assert_agree(notes)
