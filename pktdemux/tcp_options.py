"""TCP options: parsing what the peer offered and writing what Linux sends.

Parsing follows net/ipv4/tcp_input.c:tcp_parse_options (an option with a bad
length ends the walk; a SYN-only option on a non-SYN segment is ignored) and
its fast path for the common NOP NOP TIMESTAMP layout
(tcp_parse_aligned_timestamp).  Writing follows
net/ipv4/tcp_output.c:tcp_options_write, which always emits the options in the
same order with the same NOP padding (spec §3.3).

All integers are host byte order; option bytes are network order.
"""

from __future__ import annotations

import struct

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERM = 4
OPT_TIMESTAMP = 8

#: Largest window-scale shift (RFC 7323 §2.3, TCP_MAX_WSCALE).
MAX_WSCALE = 14

_ALIGNED_TS = b"\x01\x01\x08\x0a"
_TS_PAIR = struct.Struct("!II")


class TcpOptions:
    """The options of one received segment that TCP acts on.

    Attributes:
        mss: MSS option value, or None (SYN only).
        wscale: window-scale shift as sent (may exceed 14), or None (SYN only).
        sack_ok: SACK-permitted seen (SYN only).
        tsval, tsecr: timestamp option values, or None when absent.
    """

    __slots__ = ("mss", "sack_ok", "tsecr", "tsval", "wscale")

    def __init__(self) -> None:
        self.mss: int | None = None
        self.wscale: int | None = None
        self.sack_ok = False
        self.tsval: int | None = None
        self.tsecr: int | None = None

    @property
    def has_timestamp(self) -> bool:
        """Whether the segment carried a timestamp option."""
        return self.tsval is not None


NO_OPTIONS = TcpOptions()


def parse_options(data: bytes, start: int, end: int, syn: bool) -> TcpOptions:
    """Parse the options in ``data[start:end]`` (the bytes after the 20-byte header).

    Args:
        data: buffer holding the TCP header.
        start, end: option area bounds in ``data``.
        syn: the segment has SYN set; MSS, window scale and SACK-permitted
            count only then (tcp_parse_options ``opt_rx`` rules).

    Never raises: a malformed option ends parsing, as in the kernel; an
    ``end`` beyond the buffer (a header cut short) is taken as its end.
    """
    end = min(end, len(data))
    opts = TcpOptions()
    # Fast path: NOP NOP TS first, the layout of every Linux data segment.
    if not syn and end - start == 12 and data[start:start + 4] == _ALIGNED_TS:
        opts.tsval, opts.tsecr = _TS_PAIR.unpack_from(data, start + 4)
        return opts
    i = start
    while i < end:
        kind = data[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            break
        size = data[i + 1]
        if size < 2 or i + size > end:
            break
        _apply_option(opts, kind, size, data, i, syn)
        i += size
    return opts


def _apply_option(opts: TcpOptions, kind: int, size: int, data: bytes, i: int, syn: bool) -> None:
    if kind == OPT_TIMESTAMP and size == 10:
        opts.tsval, opts.tsecr = _TS_PAIR.unpack_from(data, i + 2)
    elif not syn:
        return
    elif kind == OPT_MSS and size == 4:
        mss = struct.unpack_from("!H", data, i + 2)[0]
        if mss:
            opts.mss = mss
    elif kind == OPT_WSCALE and size == 3:
        opts.wscale = data[i + 2]
    elif kind == OPT_SACK_PERM and size == 2:
        opts.sack_ok = True


def synack_options(mss: int, timestamps: tuple[int, int] | None, sack: bool, wscale: int | None) -> bytes:
    """The option bytes of a SYN-ACK, in Linux's order (tcp_options_write).

    Args:
        mss: our MSS (always sent).
        timestamps: (TSval, TSecr) when the SYN offered timestamps, else None.
        sack: SACK-permitted is echoed.
        wscale: our window-scale shift when the SYN offered window scaling.

    Returns:
        ``02 04 mss``, then ``04 02 08 0a TSval TSecr`` (SACK folded into the
        timestamp word) or ``01 01 08 0a ...`` or ``01 01 04 02``, then
        ``01 03 03 ws`` (spec §3.3).
    """
    out = struct.pack("!BBH", OPT_MSS, 4, mss)
    if timestamps is not None:
        lead = b"\x04\x02" if sack else b"\x01\x01"
        out += lead + b"\x08\x0a" + _TS_PAIR.pack(*timestamps)
    elif sack:
        out += b"\x01\x01\x04\x02"
    if wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, wscale))
    return out


def syn_options(mss: int, timestamps: tuple[int, int] | None, sack: bool, wscale: int | None) -> bytes:
    """The option bytes of a SYN Linux sends on connect() (same order as a SYN-ACK)."""
    return synack_options(mss, timestamps, sack, wscale)


def timestamp_option(tsval: int, tsecr: int) -> bytes:
    """``01 01 08 0a TSval TSecr``: the option block of every segment of a
    connection that negotiated timestamps (tcp_options_write)."""
    return _ALIGNED_TS + _TS_PAIR.pack(tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)
