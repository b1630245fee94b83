"""Recognise the packets a Linux host sends on its own, unprompted: IGMP and
MLD membership reports, router solicitations and neighbour discovery.

They are not answers to anything the oracle injected, so the oracle drops
them.  The test is on bytes alone (no Scapy), since it runs for every packet
read from the TUN device.
"""

from __future__ import annotations

_PROTO_IGMP = 2
_NH_HOP_BY_HOP = 0
_NH_ICMPV6 = 58
#: ICMPv6 types of MLD (130-132, 143) and of neighbour discovery (133-137, RFC 4861).
_ICMPV6_NOISE = frozenset({130, 131, 132, 133, 134, 135, 136, 137, 143})


def is_background_noise(packet: bytes) -> bool:
    """True for IGMP, MLD, router solicitation and neighbour discovery packets.

    Args:
        packet: an IPv4 or IPv6 packet from its IP header.

    MLD reports travel behind a Hop-by-Hop header (router alert), so any
    IPv6 packet whose first next header is Hop-by-Hop counts as noise: the
    kernel never puts one on a reply.
    """
    if len(packet) < 20:
        return False
    version = packet[0] >> 4
    if version == 4:
        return packet[9] == _PROTO_IGMP
    if version == 6 and len(packet) >= 40:
        nh = packet[6]
        if nh == _NH_HOP_BY_HOP:
            return True
        return nh == _NH_ICMPV6 and len(packet) > 40 and packet[40] in _ICMPV6_NOISE
    return False
