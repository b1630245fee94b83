"""Builders shared by the TCP tests: a host like the spec's probe namespace
(tun0 with 10.0.0.1/24 and fd00::1/64), sockets registered straight in the
TCP table, and segments as packet bytes."""

from __future__ import annotations

import ipaddress
import struct

from pktdemux.kernel import Interface, Kernel
from pktdemux.matching import describe_fields
from pktdemux.sockets import Proto, Socket, TcpState
from pktdemux.tcp_output import tcp_segment_bytes
from pktdemux.wire import PROTO_TCP, build_ipv4, build_ipv6, parse_addr

LOCAL4, LOCAL6 = "10.0.0.1", "fd00::1"
T0 = 1_700_000_000.0

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


def make_kernel(*, mtu: int = 1500, seed: int = 0, sysctls: dict | None = None) -> Kernel:
    from pktdemux.sysctl import Sysctls

    tun = Interface("tun0", [ipaddress.ip_interface("10.0.0.1/24"), ipaddress.ip_interface("10.0.0.3/24"),
                             ipaddress.ip_interface("fd00::1/64")], mtu=mtu)
    return Kernel([tun], Sysctls(sysctls or {}), seed=seed)


def tcp_socket(addr: str, port: int, *, family: int | None = None, peer: tuple[str, int] | None = None,
               state: TcpState = TcpState.CLOSE, **options: object) -> Socket:
    packed = parse_addr(addr)
    if family is None:
        family = 4 if len(packed) == 4 else 6
    if family == 6 and len(packed) == 4:
        packed = bytes(10) + b"\xff\xff" + packed
    sock = Socket(Proto.TCP, family, packed, port, state=state, **options)  # type: ignore[arg-type]
    if peer is not None:
        remote = parse_addr(peer[0])
        if family == 6 and len(remote) == 4:
            remote = bytes(10) + b"\xff\xff" + remote
        sock.remote_addr, sock.remote_port = remote, peer[1]
    return sock


def listen(kernel: Kernel, addr: str, port: int, backlog: int = 128, **options: object) -> Socket:
    sock = tcp_socket(addr, port, backlog=backlog, **options)
    kernel.tcp.listen(sock)
    return sock


def flags_of(text: str) -> int:
    return sum(FLAG_BITS[c] for c in text)


def segment(src: str, dst: str, sport: int, dport: int, flags: str = "S", seq: int = 1000, ack: int = 0, *,
            window: int = 8192, options: bytes = b"", payload: bytes = b"", tos: int = 0) -> bytes:
    """A peer's TCP segment as IP packet bytes (Scapy-like defaults: IPv4 ID 1, TTL 64)."""
    s, d = parse_addr(src), parse_addr(dst)
    tcp = tcp_segment_bytes(s, d, sport, dport, seq, ack, flags_of(flags), window, options, payload)
    if len(s) == 4:
        return build_ipv4(src=s, dst=d, proto=PROTO_TCP, payload=tcp, tos=tos, ident=1)
    return build_ipv6(src=s, dst=d, next_header=PROTO_TCP, payload=tcp, traffic_class=tos)


def fields(packet: bytes) -> dict[str, str]:
    return dict(describe_fields(packet))


def tcp_header(packet: bytes) -> tuple[int, int, int, int, int, int]:
    """(sport, dport, seq, ack, flags, window) of an IPv4/IPv6 TCP packet."""
    off = 40 if packet[0] >> 4 == 6 else (packet[0] & 0x0F) * 4
    sport, dport, seq, ack, _, flags, window = struct.unpack_from("!HHIIBBH", packet, off)
    return sport, dport, seq, ack, flags, window


def tcp_flags(packet: bytes) -> int:
    """The TCP flags (FIN..URG) of an IPv4/IPv6 TCP packet."""
    return tcp_header(packet)[4] & 0x3F


def ip_id(packet: bytes) -> int:
    return struct.unpack_from("!H", packet, 4)[0]


def tcp_options(packet: bytes) -> bytes:
    off = 40 if packet[0] >> 4 == 6 else (packet[0] & 0x0F) * 4
    return packet[off + 20: off + (packet[off + 12] >> 4) * 4]


def tsval(packet: bytes) -> int | None:
    opts = tcp_options(packet)
    i = opts.find(b"\x08\x0a")
    return struct.unpack_from("!I", opts, i + 2)[0] if i >= 0 else None
