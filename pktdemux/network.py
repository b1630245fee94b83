"""A home router with port forwarding (DNAT) in front of internal hosts.

>>> router = Router("203.0.113.5/24")
>>> router.forward("tcp 203.0.113.5:25565 -> 192.168.1.50:25565", minecraft_host)   # doctest: +SKIP

A packet to a forwarded public port is rewritten as Linux's netfilter NAT
does (net/netfilter/nf_nat_proto.c): destination address and port replaced,
TTL decremented by the forwarding hop (net/ipv4/ip_forward.c), IPv4 header
and TCP/UDP checksums updated incrementally (RFC 1624; a UDP checksum of 0
stays 0); the internal host's kernel demultiplexes it; its replies go back
out with the source rewritten to the public address and port, and in an
ICMP error the quoted packet rewritten too (nf_nat_icmp_reply_translation).
Anything else is for the router itself, a Linux host whose sockets are
``router.host``'s (so an unforwarded port is answered with a RST or an ICMP
port unreachable from the public address).

IPv4 only (port forwarding is an IPv4 NAT matter); no connection tracking
beyond the rules (every reply from a forwarded socket is translated), no
TTL-expired errors.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import Any

from .host import Host, Received
from .wire import ones_complement_sum

PROTOCOLS = {"tcp": 6, "udp": 17}
PROTO_ICMP = 1
#: offset of the checksum in a TCP / UDP header
_CSUM_AT = {6: 16, 17: 6}
_RULE = re.compile(r"\s*(tcp|udp)\s+([\d.]+):(\d+)\s*->\s*([\d.]+):(\d+)\s*")


@dataclass(frozen=True, slots=True)
class Forward:
    """One DNAT rule: ``proto public:port -> private:port``, to ``host``."""

    proto: int
    public: bytes
    public_port: int
    private: bytes
    private_port: int
    host: Host

    def __str__(self) -> str:
        name = {v: k for k, v in PROTOCOLS.items()}[self.proto]
        return (f"{name} {ipaddress.ip_address(self.public)}:{self.public_port} -> "
                f"{ipaddress.ip_address(self.private)}:{self.private_port}")


@dataclass(frozen=True, slots=True)
class Crossing:
    """What happened to one packet arriving at the router's public side.

    Attributes:
        rule: the DNAT rule that matched, or None (the router took the packet).
        inside: the packet as the internal host received it (IP bytes), or None.
        received: the verdict of the host that took it (internal or router).
        replies: the replies as they leave the router, already translated (IP bytes).
    """

    rule: Forward | None
    inside: bytes | None
    received: Received
    replies: tuple[bytes, ...]

    def __repr__(self) -> str:
        from .shell import decode

        lines = []
        if self.rule is not None and self.inside is not None:
            lines.append(f"forwarded by {self.rule}: now {decode(self.inside).summary()}")
        lines.append(("internal host: " if self.rule else "router: ") + self.received.text)
        lines += [f"  reply out: {decode(r).summary()}" for r in self.replies]
        return "\n".join(lines)


class Router:
    """A Linux router with one public address and DNAT rules.

    Args:
        public: the public address with prefix, e.g. ``"203.0.113.5/24"``.
        seed: seeds the router's own kernel.
    """

    def __init__(self, public: str, *, seed: int = 0) -> None:
        self.host = Host([public], seed=seed)
        self.public = ipaddress.ip_interface(public).ip.packed
        self.rules: list[Forward] = []

    def forward(self, rule: str, host: Host) -> Forward:
        """Add a rule ``"tcp 203.0.113.5:25565 -> 192.168.1.50:25565"`` to ``host``.

        Raises:
            ValueError: a malformed rule, or a public address not the router's.
        """
        match = _RULE.fullmatch(rule)
        if match is None:
            raise ValueError(f"expected 'tcp|udp PUBLIC:PORT -> PRIVATE:PORT', got {rule!r}")
        proto, public, pport, private, iport = match.groups()
        if ipaddress.ip_address(public).packed != self.public:
            raise ValueError(f"{public} is not the router's public address")
        entry = Forward(PROTOCOLS[proto], ipaddress.ip_address(public).packed, int(pport),
                        ipaddress.ip_address(private).packed, int(iport), host)
        self.rules.append(entry)
        return entry

    def receive(self, packet: Any, at: float | None = None) -> Crossing:
        """A packet from the Internet reaches the router's public address.

        Args:
            packet: Scapy packet or IPv4 bytes; an unset destination is the
                public address.
            at: seconds, for the host that takes the packet.
        """
        raw = self.host.packet_bytes(packet)
        rule = self._match(raw)
        if rule is None:
            received = self.host.receive(raw, at)
            return Crossing(None, None, received, received.verdict.replies)
        inside = rewrite(raw, dst=(rule.private, rule.private_port), forward=True)
        received = rule.host.receive(inside, at)
        out = tuple(self._translate_reply(rule, r) for r in received.verdict.replies)
        return Crossing(rule, inside, received, out)

    def _match(self, raw: bytes) -> Forward | None:
        if len(raw) < 20 or raw[0] >> 4 != 4 or raw[16:20] != self.public:
            return None
        header = (raw[0] & 0x0F) * 4
        if raw[9] not in _CSUM_AT or len(raw) < header + 4:
            return None
        dport = struct.unpack_from("!H", raw, header + 2)[0]
        return next((r for r in self.rules if r.proto == raw[9] and r.public_port == dport), None)

    def _translate_reply(self, rule: Forward, reply: bytes) -> bytes:
        if reply[9] == PROTO_ICMP:
            return rewrite_icmp_error(reply, rule)
        return rewrite(reply, src=(rule.public, rule.public_port), forward=True)


def _checksum_fix(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over 16-bit words."""
    total = (~csum & 0xFFFF) + ones_complement_sum(bytes(b ^ 0xFF for b in old)) + ones_complement_sum(new)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def rewrite(packet: bytes, *, src: tuple[bytes, int] | None = None, dst: tuple[bytes, int] | None = None,
            forward: bool = False) -> bytes:
    """``packet`` (IPv4, TCP or UDP) with its source or destination address
    and port replaced, checksums updated; ``forward`` also takes one off the TTL."""
    buf = bytearray(packet)
    header = (buf[0] & 0x0F) * 4
    proto = buf[9]
    for (addr, port), addr_at, port_at in ((x, a, p) for x, a, p in ((src, 12, 0), (dst, 16, 2)) if x):
        old = bytes(buf[addr_at:addr_at + 4]) + bytes(buf[header + port_at:header + port_at + 2])
        new = addr + port.to_bytes(2, "big")
        buf[addr_at:addr_at + 4] = addr
        _fix16(buf, 10, bytes(old[:4]), addr)
        buf[header + port_at:header + port_at + 2] = port.to_bytes(2, "big")
        csum_at = header + _CSUM_AT[proto]
        if proto in _CSUM_AT and len(buf) >= csum_at + 2 and not (proto == 17 and buf[csum_at:csum_at + 2] == b"\0\0"):
            _fix16(buf, csum_at, old, new)
    if forward:
        old_ttl = bytes(buf[8:10])
        buf[8] -= 1
        _fix16(buf, 10, old_ttl, bytes(buf[8:10]))
    return bytes(buf)


def _fix16(buf: bytearray, at: int, old: bytes, new: bytes) -> None:
    csum = struct.unpack_from("!H", buf, at)[0]
    struct.pack_into("!H", buf, at, _checksum_fix(csum, old, new))


def rewrite_icmp_error(reply: bytes, rule: Forward) -> bytes:
    """An ICMP error from the internal host, translated: the outer source
    becomes the public address, the quoted packet's destination the public
    address and port (nf_nat_icmp_reply_translation)."""
    outer = (reply[0] & 0x0F) * 4
    quote_at = outer + 8
    quote = reply[quote_at:]
    if len(quote) < 20:
        return rewrite_outer_source(reply, rule.public)
    inner = rewrite(quote, dst=(rule.public, rule.public_port))
    buf = bytearray(rewrite_outer_source(reply, rule.public))
    buf[quote_at:] = inner
    _fix16(buf, outer + 2, quote, inner)
    return bytes(buf)


def rewrite_outer_source(packet: bytes, addr: bytes) -> bytes:
    """IPv4 source replaced, header checksum updated, TTL taken one off (the forwarding hop)."""
    buf = bytearray(packet)
    old = bytes(buf[8:10]) + bytes(buf[12:16])
    buf[8] -= 1
    buf[12:16] = addr
    _fix16(buf, 10, old, bytes(buf[8:10]) + addr)
    return bytes(buf)
