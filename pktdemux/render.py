"""One-line, human summaries of IP packets, for tables and pcapng comments.

Reads only what it shows (addresses, protocol, ports, TCP flags, ICMP
type); never raises on a malformed packet, it shows what it could read.
"""

from __future__ import annotations

from typing import NamedTuple

from .wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    format_addr,
    ip_datagram,
)

_TCP_FLAGS = ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"),
              (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))
_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_FRAG = 44
_PROTO_NAMES = {PROTO_TCP: "TCP", PROTO_UDP: "UDP", PROTO_ICMP: "ICMP", PROTO_ICMPV6: "ICMPv6",
                2: "IGMP", 47: "GRE", 50: "ESP", 51: "AH", 89: "OSPF", 103: "PIM", 132: "SCTP"}
_ICMP4 = {(0, None): "echo reply", (8, None): "echo request", (3, 0): "net unreachable",
          (3, 1): "host unreachable", (3, 2): "protocol unreachable", (3, 3): "port unreachable",
          (3, 4): "frag needed", (11, 0): "TTL exceeded", (11, 1): "reassembly time exceeded",
          (5, None): "redirect", (13, None): "timestamp", (14, None): "timestamp reply"}
_ICMP6 = {(128, None): "echo request", (129, None): "echo reply", (1, 4): "port unreachable",
          (1, 0): "no route", (1, 1): "admin prohibited", (1, 3): "address unreachable",
          (2, None): "packet too big", (3, 0): "hop limit exceeded", (3, 1): "reassembly time exceeded",
          (4, None): "parameter problem", (133, None): "router solicitation",
          (134, None): "router advertisement", (135, None): "neighbor solicitation",
          (136, None): "neighbor advertisement", (143, None): "MLDv2 report"}


class Summary(NamedTuple):
    """What a table row shows of one IP packet.

    Attributes:
        src, dst: ``address`` or ``address:port`` (``[v6]:port``); "" if unknown.
        proto: ``"TCP"``, ``"UDP"``, ``"ICMP"``, ``"ICMPv6"``, ``"IPv4"``...
        info: TCP flags, ICMP type, fragment or length details.
    """

    src: str
    dst: str
    proto: str
    info: str


def tcp_flags(flags: int) -> str:
    """``"SYN,ACK"`` for a TCP flags byte (``"none"`` for 0)."""
    return ",".join(name for bit, name in _TCP_FLAGS if flags & bit) or "none"


def _endpoint(addr: str, port: int | None, v6: bool) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if v6 else f"{addr}:{port}"


def _l4(ip: bytes) -> tuple[int, int, bool, str] | None:
    """(protocol, transport offset, first fragment?, fragment note) or None."""
    version = ip[0] >> 4
    if version == 4:
        if len(ip) < 20:
            return None
        frag = ((ip[6] & 0x1F) << 8) | ip[7]
        more = ip[6] & 0x20
        note = f"frag off={frag * 8}{' MF' if more else ''}" if frag or more else ""
        return ip[9], (ip[0] & 15) * 4, frag == 0, note
    if len(ip) < 40:
        return None
    proto, off, note, first = ip[6], 40, "", True
    for _ in range(8):
        if proto in _IPV6_EXT and len(ip) >= off + 8:
            proto, off = ip[off], off + 8 * (ip[off + 1] + 1)
        elif proto == _IPV6_FRAG and len(ip) >= off + 8:
            frag = ((ip[off + 2] << 8) | ip[off + 3]) >> 3
            more = ip[off + 3] & 1
            note = f"frag off={frag * 8}{' MF' if more else ''}"
            first = frag == 0
            proto, off = ip[off], off + 8
        else:
            break
    return proto, off, first, note


def _icmp_name(table: dict, itype: int, code: int, label: str) -> str:
    name = table.get((itype, code)) or table.get((itype, None))
    return name if name else f"{label} type {itype} code {code}"


def _transport(proto: int, seg: bytes, v6: bool) -> tuple[int | None, int | None, str]:
    if proto == PROTO_TCP and len(seg) >= 14:
        sport, dport = (seg[0] << 8) | seg[1], (seg[2] << 8) | seg[3]
        payload = max(0, len(seg) - (seg[12] >> 4) * 4)
        return sport, dport, f"[{tcp_flags(seg[13])}]" + (f" len={payload}" if payload else "")
    if proto == PROTO_UDP and len(seg) >= 8:
        return (seg[0] << 8) | seg[1], (seg[2] << 8) | seg[3], f"len={max(0, len(seg) - 8)}"
    if proto in (PROTO_ICMP, PROTO_ICMPV6) and len(seg) >= 2:
        table, label = (_ICMP6, "ICMPv6") if v6 else (_ICMP4, "ICMP")
        return None, None, _icmp_name(table, seg[0], seg[1], label)
    return None, None, ""


def summarize(ip: bytes) -> Summary:
    """The table fields of an IP packet (from its IP header)."""
    version = ip[0] >> 4 if ip else 0
    v6 = version == 6
    if version not in (4, 6) or len(ip) < (40 if v6 else 20):
        return Summary("", "", f"IPv{version}" if ip else "", f"{len(ip)} bytes, header unreadable")
    src, dst = (ip[8:24], ip[24:40]) if v6 else (ip[12:16], ip[16:20])
    ip = ip_datagram(ip)
    proto, off, first, note = _l4(ip) or (0, len(ip), False, "")
    name = _PROTO_NAMES.get(proto, str(proto))
    sport = dport = None
    info = ""
    if first:
        sport, dport, info = _transport(proto, ip[off:], v6)
    info = " ".join(x for x in (info, note) if x)
    return Summary(_endpoint(format_addr(src), sport, v6), _endpoint(format_addr(dst), dport, v6), name, info)


def brief(ip: bytes) -> str:
    """A few words for a reply: ``"TCP [RST,ACK]"``, ``"ICMP port unreachable"``."""
    s = summarize(ip)
    info = s.info.split(" len=")[0]
    return f"{s.proto} {info}".strip()
