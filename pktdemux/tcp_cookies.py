"""SYN cookies (net/ipv4/syncookies.c, net/ipv6/syncookies.c; spec §3.5).

The cookie has the kernel's layout: hash1 + peer ISN + (minute counter << 24)
+ ((hash2(counter) + MSS index) & 0xFFFFFF), valid for two counter steps
(MAX_SYNCOOKIE_AGE).  The hashes come from ``kernel.entropy.cookie_hash``
instead of the boot secret, so the value is a seeded stand-in: an observer
cannot tell the difference, and a final ACK is checked the same way.

With timestamps the low 6 bits of the un-offset TSval carry the peer's window
scale (0xF: none), SACK (bit 4) and ECN (bit 5) (cookie_init_timestamp).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .tcp_segment import MOD32, Segment

if TYPE_CHECKING:
    from .kernel import Kernel

#: Peer-MSS classes a cookie can encode (msstab in syncookies.c).
MSS_TABLE_V4 = (536, 1300, 1440, 1460)
MSS_TABLE_V6 = (1220, 1420, 1440, 8940)
COOKIE_BITS = 24
COOKIE_MASK = (1 << COOKIE_BITS) - 1
#: A cookie stays valid this many minute-counter steps (MAX_SYNCOOKIE_AGE).
MAX_AGE = 2
#: Seconds a SYN-queue overflow keeps the cookie check on (TCP_SYNCOOKIE_VALID).
OVERFLOW_VALID = 120.0
TS_BITS = 6
TS_WSCALE_NONE = 0x0F
TS_SACK = 0x10
TS_ECN = 0x20


def _mss_table(seg: Segment) -> tuple[int, ...]:
    return MSS_TABLE_V4 if seg.pkt.version == 4 else MSS_TABLE_V6


def _counter(kernel: Kernel) -> int:
    """tcp_cookie_time(): minutes, modulo 2**32."""
    return int(kernel.now // 60) & MOD32


def _flow(seg: Segment) -> tuple[bytes, bytes, int, int]:
    return (seg.pkt.src, seg.pkt.dst, seg.sport, seg.dport)


def cookie_isn(kernel: Kernel, seg: Segment) -> int:
    """The ISN of a cookie SYN-ACK answering the SYN ``seg``."""
    table = _mss_table(seg)
    peer_mss = seg.options.mss or table[0]
    index = max(i for i, mss in enumerate(table) if i == 0 or peer_mss >= mss)
    count = _counter(kernel)
    h1 = kernel.entropy.cookie_hash(*_flow(seg), 0)
    h2 = kernel.entropy.cookie_hash(*_flow(seg), count)
    return (h1 + seg.seq + (count << COOKIE_BITS) + ((h2 + index) & COOKIE_MASK)) & MOD32


def check_cookie(kernel: Kernel, seg: Segment) -> int | None:
    """The peer MSS class a final ACK's cookie encodes, or None when invalid
    (__cookie_v4_check / __cookie_v6_check)."""
    cookie = (seg.ack - 1) & MOD32
    peer_isn = (seg.seq - 1) & MOD32
    count = _counter(kernel)
    rest = (cookie - kernel.entropy.cookie_hash(*_flow(seg), 0) - peer_isn) & MOD32
    age = (count - (rest >> COOKIE_BITS)) & (MOD32 >> COOKIE_BITS)
    if age >= MAX_AGE:
        return None
    index = (rest - kernel.entropy.cookie_hash(*_flow(seg), (count - age) & MOD32)) & COOKIE_MASK
    table = _mss_table(seg)
    return table[index] if index < len(table) else None


def ts_offset(kernel: Kernel, seg: Segment) -> int:
    """The timestamp offset for the address pair (secure_tcp_ts_off): stateless,
    so the final ACK's TSecr can be decoded."""
    return kernel.entropy.cookie_hash(b"tsoff", seg.pkt.dst, seg.pkt.src)


def encode_tsval(ms_clock: int, wscale: int | None, sack: bool, ecn: bool) -> int:
    """The un-offset TSval carrying the option choices (cookie_init_timestamp)."""
    options = TS_WSCALE_NONE if wscale is None else wscale
    options |= TS_SACK if sack else 0
    options |= TS_ECN if ecn else 0
    ts = (ms_clock >> TS_BITS << TS_BITS) | options
    if ts > ms_clock:
        ts -= 1 << TS_BITS
    return ts & MOD32


def decode_tsecr(tsecr: int) -> tuple[int | None, bool, bool]:
    """(peer window scale or None, SACK, ECN) from an un-offset TSecr
    (cookie_timestamp_decode)."""
    bits = tsecr & ((1 << TS_BITS) - 1)
    wscale = bits & TS_WSCALE_NONE
    return (None if wscale == TS_WSCALE_NONE else wscale), bool(bits & TS_SACK), bool(bits & TS_ECN)
