"""Shared helpers for the network-layer tests: the spec's test host and the
kernel's recorded vectors (spec §12.1, p20_vectors.json)."""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

from pktdemux import Interface, Kernel, Sysctls
from pktdemux.wire import (
    build_ipv4,
    build_ipv6,
    checksum,
    parse_addr,
    transport_checksum,
)

VECTORS_PATH = Path("/work/shared/kernel-probes/p20_vectors.json")
_LOCAL_COPY = Path(__file__).with_name("data") / "p20_vectors.json"


def load_vectors() -> dict[str, dict]:
    """The p20 vectors by id (the shared copy, else the one under tests/data)."""
    path = VECTORS_PATH if VECTORS_PATH.exists() else _LOCAL_COPY
    return {v["id"]: v for v in json.loads(path.read_text())}


def make_kernel(sysctls: dict | None = None, mtu: int = 1500) -> Kernel:
    """The spec's test host: tun0 with 10.0.0.1/24 and fd00::1/64 (plus lo)."""
    iface = Interface("tun0", [ipaddress.IPv4Interface("10.0.0.1/24"),
                               ipaddress.IPv6Interface("fd00::1/64")], mtu=mtu)
    return Kernel([iface], Sysctls(sysctls or {}))


def mask_random(packet: bytes) -> bytes:
    """Zero the fields the kernel draws at random: IPv4 ID and header
    checksum, IPv6 flow label (the ICMPv6 checksum does not cover it)."""
    b = bytearray(packet)
    if b[0] >> 4 == 4:
        b[4:6] = b"\0\0"
        b[10:12] = b"\0\0"
    else:
        b[1] &= 0xF0
        b[2:4] = b"\0\0"
    return bytes(b)


def a(text: str) -> bytes:
    return parse_addr(text)


def udp4(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x", *, tos: int = 0,
         options: bytes = b"", csum: int | None = None) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if csum is None:
        csum = transport_checksum(a(src), a(dst), 17, seg) or 0xFFFF
    seg = seg[:6] + csum.to_bytes(2, "big") + seg[8:]
    return build_ipv4(src=a(src), dst=a(dst), proto=17, payload=seg, tos=tos, ident=1, options=options)


def udp6(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x", *, csum: int | None = None) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if csum is None:
        csum = transport_checksum(a(src), a(dst), 17, seg) or 0xFFFF
    seg = seg[:6] + csum.to_bytes(2, "big") + seg[8:]
    return build_ipv6(src=a(src), dst=a(dst), next_header=17, payload=seg)


def icmp4(src: str, dst: str, type_: int, code: int = 0, rest: bytes = b"\0\x01\0\x01", data: bytes = b"x",
          *, tos: int = 0, options: bytes = b"") -> bytes:
    body = bytes((type_, code, 0, 0)) + rest + data
    body = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
    return build_ipv4(src=a(src), dst=a(dst), proto=1, payload=body, tos=tos, ident=1, options=options)


def icmp6(src: str, dst: str, type_: int, code: int = 0, rest: bytes = b"\0\x01\0\x01", data: bytes = b"x",
          *, tc: int = 0) -> bytes:
    body = bytes((type_, code, 0, 0)) + rest + data
    csum = transport_checksum(a(src), a(dst), 58, body)
    body = body[:2] + csum.to_bytes(2, "big") + body[4:]
    return build_ipv6(src=a(src), dst=a(dst), next_header=58, payload=body, traffic_class=tc)
