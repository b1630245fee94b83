"""Link-layer decoding: a captured frame in, the IP packet it carries out.

Pure and on the hot path: plain slicing and integer reads, no Scapy.
:func:`decode` never raises; a frame it cannot read comes back as
:class:`Undecoded` with a reason.

Link types (LINKTYPE_* values, https://www.tcpdump.org/linktypes.html):

=====  ==================  ==============================================
value  name                header
=====  ==================  ==============================================
0      NULL                4-byte address family, writer's byte order
1      ETHERNET            14 bytes; 802.1Q/802.1ad/QinQ tags, PPPoE
                           session, MPLS and LLC/SNAP are walked through
12,14  RAW (DLT values)    none; IP version from the first nibble
101    RAW                 none; IP version from the first nibble
108    LOOP                4-byte address family, network byte order
113    LINUX_SLL           16 bytes, protocol in the last 2
228    IPV4                none
229    IPV6                none
276    LINUX_SLL2          20 bytes, protocol in the first 2
=====  ==================  ==============================================
"""

from __future__ import annotations

from typing import NamedTuple

from .dropreason import DropReason


class Decoded(NamedTuple):
    """An IP packet found in a frame.

    Attributes:
        family: 4 or 6, the protocol the link layer announced (ethertype,
            address family or link type); the kernel dispatches on it, so it
            can differ from the version in the IP header of a damaged frame.
        ip: the bytes from the IP header to the end of the frame (Ethernet
            padding or an FCS may follow the datagram; the IP length says).
    """

    family: int
    ip: bytes


class Undecoded(NamedTuple):
    """A frame that carries no IP packet pktdemux can run.

    Attributes:
        reason: UNSUPPORTED_LINK (unknown link type or encapsulation),
            CAPTURE_TRUNCATED (the frame ends inside a link-layer header), or
            None for a readable frame that is simply not IP (ARP, LLDP...).
        note: one line for humans, e.g. ``"ARP (ethertype 0x0806)"``.
    """

    reason: DropReason | None
    note: str


ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100, 0x9200, 0x9300})
_PPPOE_SESSION = 0x8864
_MPLS = frozenset({0x8847, 0x8848})
_MAX_LAYERS = 16  # tags, labels and shims walked before giving up

_ETHERTYPE_NAMES = {
    0x0806: "ARP", 0x8035: "RARP", 0x88CC: "LLDP", 0x888E: "EAPOL",
    0x8863: "PPPoE discovery", 0x88F7: "PTP", 0x8809: "slow protocols (LACP)",
    0x88E5: "MACsec", 0x9000: "loopback test", 0x88E1: "HomePlug", 0x893A: "IEEE 1905",
    0x22F0: "AVTP", 0x8137: "IPX", 0x0842: "Wake-on-LAN", 0x88B5: "local experimental",
}
_BSD_AF_INET = 2
_BSD_AF_INET6 = frozenset({24, 28, 30})  # OpenBSD/NetBSD, FreeBSD, Darwin


def _short(what: str, have: int, need: int) -> Undecoded:
    return Undecoded(DropReason.CAPTURE_TRUNCATED, f"frame ends inside the {what} ({have} of {need} bytes)")


def _other(etype: int) -> Undecoded:
    name = _ETHERTYPE_NAMES.get(etype)
    label = f"{name} (ethertype 0x{etype:04x})" if name else f"ethertype 0x{etype:04x}"
    return Undecoded(None, f"not IP: {label}")


def _by_nibble(frame: bytes, offset: int, what: str) -> Decoded | Undecoded:
    if len(frame) <= offset:
        return _short(what, 0, 1)
    version = frame[offset] >> 4
    if version == 4 or version == 6:
        return Decoded(version, frame[offset:])
    return Undecoded(DropReason.UNSUPPORTED_LINK, f"{what}: IP version {version}")


def _ethertype(frame: bytes, etype: int, off: int) -> Decoded | Undecoded:
    """Follow an ethertype from ``off`` through tags and shims to IP."""
    n = len(frame)
    for _ in range(_MAX_LAYERS):
        if etype == ETH_P_IP:
            return Decoded(4, frame[off:])
        if etype == ETH_P_IPV6:
            return Decoded(6, frame[off:])
        if etype in _VLAN_TAGS:
            if n < off + 4:
                return _short(f"VLAN tag (TPID 0x{etype:04x})", n - off, 4)
            etype = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
        elif etype == _PPPOE_SESSION:
            return _pppoe(frame, off)
        elif etype in _MPLS:
            return _mpls(frame, off)
        elif etype < 0x0600:  # an 802.3 length: LLC follows
            if n < off + 3:
                return _short("802.2 LLC header", n - off, 3)
            if frame[off:off + 3] != b"\xaa\xaa\x03":
                return Undecoded(None, f"not IP: 802.2 LLC frame (DSAP 0x{frame[off]:02x})")
            if n < off + 8:
                return _short("SNAP header", n - off, 8)
            etype = (frame[off + 6] << 8) | frame[off + 7]
            off += 8
        else:
            return _other(etype)
    return Undecoded(DropReason.UNSUPPORTED_LINK, f"more than {_MAX_LAYERS} link-layer headers")


def _pppoe(frame: bytes, off: int) -> Decoded | Undecoded:
    """PPPoE session stage (RFC 2516): 6-byte header, then the PPP protocol."""
    if len(frame) < off + 8:
        return _short("PPPoE session header", len(frame) - off, 8)
    proto = (frame[off + 6] << 8) | frame[off + 7]
    if proto == 0x0021:
        return Decoded(4, frame[off + 8:])
    if proto == 0x0057:
        return Decoded(6, frame[off + 8:])
    return Undecoded(None, f"not IP: PPP protocol 0x{proto:04x} over PPPoE")


def _mpls(frame: bytes, off: int) -> Decoded | Undecoded:
    """An MPLS label stack (RFC 3032): labels up to the bottom-of-stack bit, then IP."""
    n = len(frame)
    for _ in range(_MAX_LAYERS):
        if n < off + 4:
            return _short("MPLS label", n - off, 4)
        bottom = frame[off + 2] & 1
        off += 4
        if bottom:
            if n > off and frame[off] >> 4 not in (4, 6):
                # Pseudowire control word (RFC 4385) or another non-IP payload.
                return Undecoded(None, f"not IP: MPLS payload starting 0x{frame[off]:02x}")
            return _by_nibble(frame, off, "MPLS payload")
    return Undecoded(DropReason.UNSUPPORTED_LINK, f"more than {_MAX_LAYERS} MPLS labels")


_new = tuple.__new__  # builds a Decoded without NamedTuple's Python-level __new__


def _ethernet(frame: bytes) -> Decoded | Undecoded:
    if len(frame) < 14:
        return _short("Ethernet header", len(frame), 14)
    etype = (frame[12] << 8) | frame[13]
    # the common cases first, without the walk
    if etype == ETH_P_IP:
        return _new(Decoded, (4, frame[14:]))
    if etype == ETH_P_IPV6:
        return _new(Decoded, (6, frame[14:]))
    return _ethertype(frame, etype, 14)


def _sll_proto(frame: bytes, proto: int, off: int) -> Decoded | Undecoded:
    if proto >= 0x0600:
        return _ethertype(frame, proto, off)
    if proto == 0x0004:  # LINUX_SLL_P_802_2: an LLC header follows
        return _ethertype(frame, 0, off)
    return Undecoded(None, f"not IP: Linux cooked protocol 0x{proto:04x}")


def _sll(frame: bytes) -> Decoded | Undecoded:
    if len(frame) < 16:
        return _short("Linux cooked (SLL) header", len(frame), 16)
    return _sll_proto(frame, (frame[14] << 8) | frame[15], 16)


def _sll2(frame: bytes) -> Decoded | Undecoded:
    if len(frame) < 20:
        return _short("Linux cooked v2 (SLL2) header", len(frame), 20)
    return _sll_proto(frame, (frame[0] << 8) | frame[1], 20)


def _family(frame: bytes, family: int, what: str) -> Decoded | Undecoded:
    if family == _BSD_AF_INET:
        return Decoded(4, frame[4:])
    if family in _BSD_AF_INET6:
        return Decoded(6, frame[4:])
    return Undecoded(None, f"not IP: {what} address family {family}")


def _null(frame: bytes) -> Decoded | Undecoded:
    if len(frame) < 4:
        return _short("BSD loopback header", len(frame), 4)
    family = int.from_bytes(frame[:4], "little")
    if family & 0xFFFF0000:  # written on a big-endian host (libpcap does the same)
        family = int.from_bytes(frame[:4], "big")
    return _family(frame, family, "BSD loopback")


def _loop(frame: bytes) -> Decoded | Undecoded:
    if len(frame) < 4:
        return _short("OpenBSD loopback header", len(frame), 4)
    return _family(frame, int.from_bytes(frame[:4], "big"), "OpenBSD loopback")


def _raw(frame: bytes) -> Decoded | Undecoded:
    return _by_nibble(frame, 0, "raw IP frame")


def _ipv4(frame: bytes) -> Decoded | Undecoded:
    return Decoded(4, frame) if frame else _short("IPv4 header", 0, 1)


def _ipv6(frame: bytes) -> Decoded | Undecoded:
    return Decoded(6, frame) if frame else _short("IPv6 header", 0, 1)


_DECODERS = {
    0: _null,
    1: _ethernet,
    12: _raw,
    14: _raw,
    101: _raw,
    108: _loop,
    113: _sll,
    228: _ipv4,
    229: _ipv6,
    276: _sll2,
}

#: The link types :func:`decode` reads.
SUPPORTED_LINKTYPES = frozenset(_DECODERS)


def decode(linktype: int, frame: bytes) -> Decoded | Undecoded:
    """The IP packet in ``frame``, or why there is none.

    Args:
        linktype: LINKTYPE_* value (16 bits) of the frame.
        frame: the captured bytes, link-layer header first.

    Returns:
        :class:`Decoded` with the announced IP family and the IP bytes, or
        :class:`Undecoded` with a reason and a note.  Never raises.
    """
    decoder = _DECODERS.get(linktype)
    if decoder is None:
        return Undecoded(DropReason.UNSUPPORTED_LINK, f"link type {linktype} is not supported")
    return decoder(frame)


def ip_cut_short(ip: bytes) -> bool:
    """True when the IP header claims more bytes than ``ip`` holds.

    Used on frames the capture's snap length cut: if the datagram still fits,
    the cut only removed padding or an FCS and the packet can run.  A packet
    whose version is neither 4 nor 6 is never "cut short" (the kernel judges it).
    """
    n = len(ip)
    if not n:
        return True
    version = ip[0] >> 4
    if version == 4:
        return n < 20 or n < (ip[0] & 15) * 4 or n < ((ip[2] << 8) | ip[3])
    if version == 6:
        return n < 40 or n < 40 + ((ip[4] << 8) | ip[5])
    return False
