"""The parsed network layer of one received packet, as the transport
handlers see it.

Parsing from bytes lives in :mod:`pktdemux.ipv4` and :mod:`pktdemux.ipv6`;
this module only defines the shape, so that every protocol handler shares it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class RouteType(enum.Enum):
    """How routing classified the destination (net/ipv4/route.c RTN_*)."""

    LOCAL = "local"          #: one of the host's own addresses (RTN_LOCAL)
    BROADCAST = "broadcast"  #: subnet or limited broadcast (RTN_BROADCAST / RTCF_BROADCAST)
    MULTICAST = "multicast"  #: a joined multicast group (RTCF_MULTICAST)
    #: not local and forwarding is off (RTN_UNREACHABLE, input ip_error): only
    #: the IPv4 options are processed, and a malformed one answered
    UNREACHABLE = "unreachable"


@dataclass(slots=True)
class IpPacket:
    """One IPv4 or IPv6 datagram that passed the network-layer checks.

    Addresses are packed bytes (4 or 16, network order); integers are host
    byte order.

    Attributes:
        version: 4 or 6.
        src, dst: source and destination address.
        proto: the transport protocol number (after IPv6 extension headers).
        tos: IPv4 TOS byte, or IPv6 traffic class.
        ttl: TTL or hop limit.
        flow_label: IPv6 flow label (0 for IPv4).
        ip_id: IPv4 identification (0 for IPv6).
        raw: the whole datagram from its IP header, trimmed to the IP total
            length (what an ICMP error quotes).
        l4_offset: offset of the transport header in ``raw``.
        options: IPv4 options as received (b"" when none).
        route: routing's classification of ``dst``.
        device: the ingress device name (e.g. ``"eth0"``, ``"lo"``).
        nh_offset: IPv6 only: offset in ``raw`` of the Next Header field that
            named ``proto`` (6 for the fixed header), for ICMPv6 4/1 pointers.
        parsed_options: IPv4 only: what the kernel recorded while processing
            ``options`` (a :class:`pktdemux.ip_options.Ipv4Options`), so that
            replies can echo Record Route / Timestamp; None without options.
        frag_offset: IPv4 fragment offset in bytes (0 for a first fragment or
            a whole datagram); ICMP errors are never sent for offset != 0.
    """

    version: int
    src: bytes
    dst: bytes
    proto: int
    tos: int
    ttl: int
    flow_label: int
    ip_id: int
    raw: bytes
    l4_offset: int
    options: bytes
    route: RouteType
    device: str
    nh_offset: int = 6
    parsed_options: Any = None
    frag_offset: int = 0

    @property
    def l4(self) -> bytes:
        """The transport header and payload."""
        return self.raw[self.l4_offset:]
