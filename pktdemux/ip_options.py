"""IPv4 options of received packets and their echo in kernel replies.

Two steps, as in net/ipv4/ip_options.c:

* :func:`compile_received` is __ip_options_compile on a received header: it
  validates every option, and on a packet routed to this host it fills in the
  Record Route slot with the local address and Timestamp slots with the
  current time, *in the received header* (so an ICMP error later quotes the
  modified header with its original checksum, observed on Linux 6.18).
* :func:`echo_options` is __ip_options_echo followed by ip_options_build: the
  options a reply carries back (Record Route and Timestamp, each with one
  more slot filled by the sender).

Times are ms since midnight UTC (net/ipv4/icmp.c:inet_current_timestamp),
computed from the kernel clock ``now`` (seconds since the epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

IPOPT_END = 0
IPOPT_NOOP = 1
IPOPT_RR = 7
IPOPT_TIMESTAMP = 68
IPOPT_LSRR = 131
IPOPT_CIPSO = 134
IPOPT_SSRR = 137
IPOPT_RA = 148

IPOPT_TS_TSONLY = 0
IPOPT_TS_TSANDADDR = 1
IPOPT_TS_PRESPEC = 3


@dataclass(slots=True)
class Ipv4Options:
    """What ip_options_compile recorded (struct ip_options).

    Offsets are from the start of the IP header (0 = option absent).
    """

    rr: int = 0
    rr_needaddr: bool = False
    ts: int = 0
    ts_needaddr: bool = False
    ts_needtime: bool = False
    srr: int = 0
    router_alert: int = 0
    cipso: int = 0


class OptionError(ValueError):
    """A malformed option; ``pointer`` is the offset of the bad octet from
    the start of the IP header, for ICMP Parameter Problem (12/0).
    ``options`` is what was compiled before the bad option (set by
    :func:`compile_received`): the 12/0 echoes that Record Route /
    Timestamp state, as __icmp_send echoes the skb's partly filled
    IPCB(skb)->opt."""

    def __init__(self, pointer: int, why: str) -> None:
        super().__init__(why)
        self.pointer = pointer
        self.options: Ipv4Options | None = None


def ms_since_midnight(now: float) -> int:
    """``now`` (seconds since the epoch) as ms since midnight UTC (inet_current_timestamp)."""
    # via whole microseconds, so that float noise never moves a ms boundary
    return round(now * 1_000_000) // 1000 % 86_400_000


def compile_received(header: bytearray, local_addr: bytes, is_unicast_remote, now: float) -> Ipv4Options:
    """Validate and process the options of a received IPv4 header, in place.

    Args:
        header: the IP header (``ihl*4`` bytes), modified in place like the
            kernel's skb: Record Route gets ``local_addr``, Timestamp gets
            the time (and address), END padding after an END is zeroed.
        local_addr: the address that receives the packet (fib_compute_spec_dst).
        is_unicast_remote: callable(addr) -> bool, True when ``addr`` is not
            one of the host's (inet_addr_type == RTN_UNICAST), for
            pre-specified timestamps.
        now: seconds since the epoch.

    Returns:
        The parsed option state.

    Raises:
        OptionError: for a malformed option (net/ipv4/ip_options.c:
            __ip_options_compile, which then sends ICMP 12/0).
    """
    opt = Ipv4Options()
    try:
        _compile(header, opt, local_addr, is_unicast_remote, now)
    except OptionError as err:
        err.options = opt
        raise
    return opt


def _compile(header: bytearray, opt: Ipv4Options, local_addr: bytes, is_unicast_remote, now: float) -> None:
    end = len(header)
    i = 20
    while i < end:
        kind = header[i]
        if kind == IPOPT_END:
            for j in range(i + 1, end):
                header[j] = IPOPT_END
            break
        if kind == IPOPT_NOOP:
            i += 1
            continue
        if end - i < 2:
            raise OptionError(i, "option type without a length")
        optlen = header[i + 1]
        if optlen < 2 or optlen > end - i:
            raise OptionError(i, f"option length {optlen} invalid")
        if kind in (IPOPT_LSRR, IPOPT_SSRR):
            _source_route(header, i, optlen, opt)
        elif kind == IPOPT_RR:
            _record_route(header, i, optlen, opt, local_addr)
        elif kind == IPOPT_TIMESTAMP:
            _timestamp(header, i, optlen, opt, local_addr, is_unicast_remote, now)
        elif kind == IPOPT_RA:
            if optlen < 4:
                raise OptionError(i + 1, "router alert shorter than 4 bytes")
            if header[i + 2] == 0 and header[i + 3] == 0:
                opt.router_alert = i
        elif kind == IPOPT_CIPSO:
            # cipso_v4_validate: no CIPSO DOI is configured (netlabel's
            # default), so the option fails at its length when shorter than
            # 8 bytes, else at its DOI; it is recorded first, so the 12/0
            # echoes it
            if opt.cipso:
                raise OptionError(i, "second CIPSO option")
            opt.cipso = i
            raise OptionError(i + (1 if optlen < 8 else 2), "CIPSO option with an unknown DOI")
        # other options (security, stream id, unknown) are accepted on receive
        i += optlen


def _source_route(header: bytearray, i: int, optlen: int, opt: Ipv4Options) -> None:
    if optlen < 3:
        raise OptionError(i + 1, "source route shorter than 3 bytes")
    if header[i + 2] < 4:
        raise OptionError(i + 2, "source route pointer below 4")
    if opt.srr:
        raise OptionError(i, "second source route option")
    opt.srr = i


def _record_route(header: bytearray, i: int, optlen: int, opt: Ipv4Options, local_addr: bytes) -> None:
    if opt.rr:
        raise OptionError(i, "second record route option")
    if optlen < 3:
        raise OptionError(i + 1, "record route shorter than 3 bytes")
    ptr = header[i + 2]
    if ptr < 4:
        raise OptionError(i + 2, "record route pointer below 4")
    if ptr <= optlen:
        if ptr + 3 > optlen:
            raise OptionError(i + 2, "record route slot past the option")
        header[i + ptr - 1:i + ptr + 3] = local_addr
        header[i + 2] = ptr + 4
        opt.rr_needaddr = True
    opt.rr = i


def _timestamp(header: bytearray, i: int, optlen: int, opt: Ipv4Options, local_addr: bytes,
               is_unicast_remote, now: float) -> None:
    if opt.ts:
        raise OptionError(i, "second timestamp option")
    if optlen < 4:
        raise OptionError(i + 1, "timestamp shorter than 4 bytes")
    ptr = header[i + 2]
    if ptr < 5:
        raise OptionError(i + 2, "timestamp pointer below 5")
    flag = header[i + 3] & 0x0F
    if ptr <= optlen:
        if ptr + 3 > optlen:
            raise OptionError(i + 2, "timestamp slot past the option")
        stamp = ms_since_midnight(now).to_bytes(4, "big")
        if flag == IPOPT_TS_TSONLY:
            header[i + ptr - 1:i + ptr + 3] = stamp
            opt.ts_needtime = True
            header[i + 2] = ptr + 4
        elif flag == IPOPT_TS_TSANDADDR:
            if ptr + 7 > optlen:
                raise OptionError(i + 2, "timestamp slot past the option")
            header[i + ptr - 1:i + ptr + 3] = local_addr
            header[i + ptr + 3:i + ptr + 7] = stamp
            opt.ts_needaddr = opt.ts_needtime = True
            header[i + 2] = ptr + 8
        elif flag == IPOPT_TS_PRESPEC:
            if ptr + 7 > optlen:
                raise OptionError(i + 2, "timestamp slot past the option")
            if not is_unicast_remote(bytes(header[i + ptr - 1:i + ptr + 3])):
                header[i + ptr + 3:i + ptr + 7] = stamp
                opt.ts_needtime = True
                header[i + 2] = ptr + 8
    elif flag != IPOPT_TS_PRESPEC:
        overflow = header[i + 3] >> 4
        if overflow == 15:
            raise OptionError(i + 3, "timestamp overflow counter full")
        header[i + 3] = flag | (overflow + 1) << 4
    opt.ts = i


def echo_options(header: bytes, opt: Ipv4Options | None, reply_src: bytes,
                 is_unicast_remote, now: float) -> bytes | None:
    """The options of a reply to a packet with ``header`` (already compiled).

    Record Route and Timestamp are copied; when the sender still has room it
    adds its address / time (__ip_options_echo, ip_options_build).  A CIPSO
    option (recorded only on the way to a 12/0 about it) is copied as it is.
    Source routes are not echoed (such packets are dropped while
    accept_source_route=0).  The result is padded with END to a multiple of
    4 bytes.

    Returns:
        The option bytes (b"" when nothing is echoed), or None when the
        kernel refuses to echo (a slot past the option: -EINVAL, so no reply).
    """
    if opt is None or not (opt.rr or opt.ts or opt.cipso):
        return b""
    out = bytearray()
    fills: list[tuple[int, bytes]] = []
    stamp = ms_since_midnight(now).to_bytes(4, "big")
    if opt.rr:
        optlen = header[opt.rr + 1]
        ptr = header[opt.rr + 2]
        start = len(out)
        out += header[opt.rr:opt.rr + optlen]
        if opt.rr_needaddr and ptr <= optlen:
            if ptr + 3 > optlen:
                return None
            out[start + 2] = ptr + 4
            fills.append((start + ptr - 1, reply_src))
    if opt.ts:
        optlen = header[opt.ts + 1]
        ptr = header[opt.ts + 2]
        start = len(out)
        out += header[opt.ts:opt.ts + optlen]
        if ptr <= optlen:
            if opt.ts_needaddr:
                if ptr + 3 > optlen:
                    return None
                fills.append((start + ptr - 1, reply_src))
                ptr += 4
            if opt.ts_needtime:
                if ptr + 3 > optlen:
                    return None
                if out[start + 3] & 0x0F != IPOPT_TS_PRESPEC:
                    fills.append((start + ptr - 1, stamp))
                    ptr += 4
                elif ptr + 7 <= optlen and not is_unicast_remote(bytes(out[start + ptr - 1:start + ptr + 3])):
                    fills.append((start + ptr + 3, stamp))
                    ptr += 8
            out[start + 2] = ptr
    for offset, value in fills:
        out[offset:offset + 4] = value
    if opt.cipso:
        out += header[opt.cipso:opt.cipso + header[opt.cipso + 1]]
    while len(out) & 3:
        out.append(IPOPT_END)
    return bytes(out)
