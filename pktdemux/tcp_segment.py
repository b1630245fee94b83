"""One received TCP segment, parsed from the packet bytes.

Sequence arithmetic is modulo 2**32 (RFC 9293 §3.4): :func:`seq_before` and
:func:`seq_after` are the kernel's ``before()`` / ``after()``
(include/net/tcp.h).
"""

from __future__ import annotations

import struct

from .packet import IpPacket
from .tcp_options import NO_OPTIONS, TcpOptions, parse_options

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

MOD32 = 0xFFFFFFFF

_HEADER = struct.Struct("!HHIIBBHHH")


def seq_before(a: int, b: int) -> bool:
    """``a`` comes before ``b`` in sequence space (kernel ``before()``)."""
    return (a - b) & 0x80000000 != 0 and a != b


def seq_after(a: int, b: int) -> bool:
    """``a`` comes after ``b`` in sequence space (kernel ``after()``)."""
    return seq_before(b, a)


class Segment:
    """The TCP header of a received segment and where its payload lies.

    Attributes:
        sport, dport: ports (host order).
        seq, ack: SEG.SEQ and SEG.ACK.
        flags: the flag byte (FIN 0x01 ... CWR 0x80).
        window: the raw window field (unscaled).
        doff: header length in bytes.
        payload_len: data bytes after the header.
        end_seq: SEG.SEQ + SEG.LEN, where SYN and FIN count one each (mod 2**32).
        options: parsed options (a shared empty instance when doff is 20).
        pkt: the IP packet carrying the segment.
        addr_sum: the source and destination addresses summed as 16-bit
            words, modulo 0xFFFF: the part of the pseudo-header checksum
            (RFC 9293 §3.1) and of a reply's IPv4 header checksum that the
            segment and its replies share.
    """

    __slots__ = (
        "ack",
        "addr_sum",
        "doff",
        "dport",
        "end_seq",
        "flags",
        "options",
        "payload_len",
        "pkt",
        "seq",
        "sport",
        "window",
    )

    def __init__(self, pkt: IpPacket, header: tuple[int, ...], payload_len: int,
                 addr_sum: int | None = None) -> None:
        self.pkt = pkt
        self.addr_sum = address_sum(pkt.src, pkt.dst) if addr_sum is None else addr_sum
        self.sport, self.dport, self.seq, self.ack, off, self.flags, self.window, _, _ = header
        self.doff = (off >> 4) * 4
        self.payload_len = payload_len
        self.end_seq = (self.seq + payload_len + (self.flags & SYN) // SYN + (self.flags & FIN)) & MOD32
        self.options: TcpOptions = NO_OPTIONS
        if self.doff > 20:
            start = pkt.l4_offset + 20
            self.options = parse_options(pkt.raw, start, pkt.l4_offset + self.doff, bool(self.flags & SYN))

    @property
    def payload(self) -> bytes:
        """The data bytes."""
        start = self.pkt.l4_offset + self.doff
        return self.pkt.raw[start:start + self.payload_len]

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload bytes plus one for SYN and one for FIN (RFC 9293 §3.4)."""
        return (self.end_seq - self.seq) & MOD32

    def has(self, flag: int) -> bool:
        """Whether every bit of ``flag`` is set."""
        return self.flags & flag == flag


def address_sum(src: bytes, dst: bytes) -> int:
    """The ones'-complement sum (RFC 1071) of two addresses as 16-bit words,
    modulo 0xFFFF (2**16 ≡ 1, so the big-endian integer does it in C)."""
    return int.from_bytes(src + dst, "big") % 0xFFFF


def parse_header(pkt: IpPacket) -> tuple[int, ...] | None:
    """The raw header fields, or None when fewer than 20 bytes follow the IP header."""
    if len(pkt.raw) - pkt.l4_offset < 20:
        return None
    return _HEADER.unpack_from(pkt.raw, pkt.l4_offset)
