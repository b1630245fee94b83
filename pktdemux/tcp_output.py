"""Building the TCP packets the kernel sends, byte for byte (spec §3, §9).

Every builder answers one received segment, so the reply's addresses are the
segment's swapped.  IP header fields per spec §9:

=========================  =======  =========================  ====  ==========
packet                     TTL      TOS / traffic class        DF    IPv4 ID
=========================  =======  =========================  ====  ==========
RST (control socket)       64       incoming, ECN bits clear   set   0
SYN-ACK                    64       0 (listener's TOS)         set   0
request / TIME_WAIT ACK    64       incoming / 0               set   0
full-socket segment        64       0 (socket TOS)             set   counter
=========================  =======  =========================  ====  ==========

IPv6 replies carry the auto flow label (``kernel.entropy.flow_label``) when
net.ipv6.auto_flowlabels is on.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import tcp_delack
from .packet import IpPacket, RouteType
from .sockets import V4_MAPPED_PREFIX, Socket
from .tcp_options import synack_options, timestamp_option
from .tcp_rcvbuf import buffer as rcvbuf_of
from .tcp_segment import ACK, CWR, ECE, MOD32, RST, SYN, Segment, address_sum
from .wire import PROTO_TCP, build_ipv4, transport_checksum

if TYPE_CHECKING:
    from .kernel import Kernel
    from .tcp_rcvbuf import RcvBuffer
    from .tcp_tcb import Tcb

_HEADER = struct.Struct("!HHIIBBHHH")
#: IPv4 header (no options) and TCP header (no options) in one go.
_V4_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")
#: IPv6 fixed header and TCP header (no options).
_V6_TCP = struct.Struct("!IHBB16s16sHHIIBBHHH")
#: The constant words of the IPv4 header of a reply: version/IHL 0x45, DF, protocol TCP.
_V4_CONST = 0x4500 + 0x4000 + PROTO_TCP
_ECN_MASK = 0x03
IPV4_HEADER = 20
IPV6_HEADER = 40
TCP_HEADER = 20
#: Largest IPv4 packet: the MSS on an MTU-65536 loopback is capped by it
#: (net/ipv4/route.c:ipv4_default_advmss, IPV4_MAX_PMTU).
IPV4_MAX_PMTU = 65535
#: Timestamp option bytes, which reduce the effective MSS (TCPOLEN_TSTAMP_ALIGNED).
TS_ALIGNED = 12


def tcp_segment_bytes(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
    window: int, options: bytes = b"", payload: bytes = b"",
) -> bytes:
    """A TCP header (RFC 9293 §3.1) plus payload, with its checksum filled in."""
    doff = (TCP_HEADER + len(options)) // 4
    header = _HEADER.pack(sport, dport, seq & MOD32, ack & MOD32, doff << 4, flags, window, 0, 0)
    segment = header + options + payload
    csum = transport_checksum(src, dst, PROTO_TCP, segment)
    return segment[:16] + csum.to_bytes(2, "big") + segment[18:]


def reply(
    kernel: Kernel, seg: Segment, seq: int, ack: int, flags: int, window: int,
    options: bytes = b"", *, tos: int, ip_options: bytes = b"", ip_id: int = 0,
) -> bytes:
    """A TCP segment from ``seg``'s destination back to its source, in its IP
    header (DF, TTL / hop limit from the sysctls), checksums filled in.

    ``options`` are TCP options (a multiple of 4 bytes), ``ip_options``
    IPv4 options echoed from the received packet (padded).  Both checksums
    (RFC 1071) start from one partial sum of the address pair, which the
    received segment already holds (``seg.addr_sum``): the pseudo-header and
    the IPv4 header sum the same addresses, and swapping them changes
    nothing.  As 2**16 ≡ 1 (mod 0xFFFF), a 32-bit field adds in whole.
    """
    pkt = seg.pkt
    try:
        addr_sum = seg.addr_sum
    except AttributeError:  # a stand-in for the received segment (e.g. a timer's)
        addr_sum = address_sum(pkt.src, pkt.dst)
    seq &= MOD32
    ack &= MOD32
    sport, dport = seg.dport, seg.sport
    tcp_len = TCP_HEADER + len(options)
    total = addr_sum + PROTO_TCP + tcp_len + sport + dport + seq + ack + (tcp_len << 10 | flags) + window
    if options:
        total += int.from_bytes(options, "big")
    tcp_csum = -total % 0xFFFF
    if pkt.version == 4:
        ttl = kernel.ip_sysctls.ip_default_ttl
        if not ip_options:
            ip_len = IPV4_HEADER + tcp_len
            ip_csum = -(_V4_CONST + tos + ip_len + ip_id + (ttl << 8) + addr_sum) % 0xFFFF
            return _V4_TCP.pack(0x45, tos, ip_len, ip_id, 0x4000, ttl, PROTO_TCP, ip_csum, pkt.dst, pkt.src,
                                sport, dport, seq, ack, tcp_len << 2, flags, window, tcp_csum, 0) + options
        tcp = _HEADER.pack(sport, dport, seq, ack, tcp_len << 2, flags, window, tcp_csum, 0) + options
        return build_ipv4(src=pkt.dst, dst=pkt.src, proto=PROTO_TCP, payload=tcp, ttl=ttl, tos=tos, ident=ip_id,
                          df=True, options=ip_options)
    label = 0
    if kernel.ip_sysctls.auto_flowlabels:
        label = kernel.entropy.flow_label(pkt.dst, pkt.src, seg.dport, seg.sport, PROTO_TCP)
    hop_limit = kernel.ip_sysctls.hop_limit
    return _V6_TCP.pack(0x60000000 | tos << 20 | label, tcp_len, PROTO_TCP, hop_limit, pkt.dst, pkt.src,
                        sport, dport, seq, ack, tcp_len << 2, flags, window, tcp_csum, 0) + options


def echoed_ip_options(kernel: Kernel, seg: Segment) -> bytes | None:
    """The IPv4 options a reply to ``seg`` carries (__ip_options_echo: Record
    Route and Timestamp), b"" when none, None when the kernel cannot echo
    them and so sends no reply."""
    pkt = seg.pkt
    if pkt.version != 4 or not pkt.options:
        return b""
    from .ip_options import echo_options

    routing = kernel.routing
    return echo_options(pkt.raw, pkt.parsed_options, pkt.dst, lambda a: not routing.is_local(a), kernel.now)


def send_reset(kernel: Kernel, seg: Segment, *, socket_found: bool = True) -> tuple[bytes, ...]:
    """The RST answering ``seg`` as a tuple of replies (tcp_v4_send_reset,
    tcp_v6_send_reset; spec §3.1); empty when the kernel sends none.

    Never for a RST, never when the IP options cannot be echoed.  IPv4: never
    unless the destination is a local address (RTN_LOCAL when no socket was
    found; otherwise the reply's route rejects a non-local source).  IPv6:
    the unicast-destination check applies only when no socket was found, so
    a listener reached through a multicast address does answer an ACK.  ACK set: seq = SEG.ACK, RST only.  ACK clear: seq 0, RST+ACK
    with ack = SEG.SEQ + SEG.LEN.  No TCP options, window 0, TOS with the
    ECN bits cleared, DF, IPv4 ID 0, received IPv4 options echoed.
    """
    if seg.flags & RST:
        return ()
    if seg.pkt.route is not RouteType.LOCAL and (seg.pkt.version == 4 or not socket_found):
        return ()
    ip_options = echoed_ip_options(kernel, seg)
    if ip_options is None:
        return ()
    tos = seg.pkt.tos & ~_ECN_MASK
    if seg.flags & ACK:
        return (reply(kernel, seg, seg.ack, 0, RST, 0, tos=tos, ip_options=ip_options),)
    return (reply(kernel, seg, 0, seg.end_seq, RST | ACK, 0, tos=tos, ip_options=ip_options),)


def ms_clock(kernel: Kernel) -> int:
    """The kernel's millisecond TCP clock (tcp_clock_ms), from ``kernel.now``."""
    return int(kernel.now * 1000) & MOD32


def tsval(kernel: Kernel, tcb: Tcb) -> int:
    """TSval of a segment sent now: ms clock + the connection's offset."""
    return (ms_clock(kernel) + tcb.ts_offset) & MOD32


def advertised_mss(kernel: Kernel, seg: Segment) -> int:
    """Our MSS towards ``seg``'s sender: route MTU − 40 (IPv4) or − 60 (IPv6),
    capped as dst_metric_advmss does (ipv4_default_advmss, ip6_default_advmss)."""
    mtu = device_mtu(kernel, seg.pkt.device)
    if seg.pkt.version == 4:
        return min(mtu, IPV4_MAX_PMTU) - IPV4_HEADER - TCP_HEADER
    return mtu - IPV6_HEADER - TCP_HEADER


def device_mtu(kernel: Kernel, device: str) -> int:
    """The MTU of ``device`` from kernel.routing, else the interface list, else 1500."""
    mtu = getattr(kernel.routing, "mtu", None)
    if mtu is not None:
        return int(mtu(device))
    for iface in kernel.interfaces:
        if iface.name == device:
            return iface.mtu
    return 1500


def synack(kernel: Kernel, seg: Segment, tcb: Tcb) -> bytes:
    """The SYN-ACK of a request (tcp_make_synack, spec §3.3).

    ``tcb`` holds the request: ISS, RCV.NXT, MSS, the initial window, the
    option decisions (each only when the SYN offered it and its sysctl is
    on), the timestamp offset, ECN.
    """
    ts = (tsval(kernel, tcb), tcb.ts_recent) if tcb.ts_ok else None
    wscale = tcb.rcv_wscale if tcb.wscale_ok else None
    options = synack_options(tcb.mss, ts, tcb.sack_ok, wscale)
    flags = SYN | ACK | (ECE if tcb.ecn_ok else 0)
    return reply(kernel, seg, tcb.iss, tcb.rcv_nxt, flags, min(tcb.rcv_wnd, 0xFFFF), options, tos=tcb.tos,
                 ip_options=tcb.ip_options)


class RequestOrigin:
    """What a reply builder reads of the segment it answers, rebuilt from a
    request socket: the addresses as received (reversed in the reply), the
    ports, the address sum.  For SYN-ACKs sent without a segment to answer."""

    __slots__ = ("addr_sum", "dport", "pkt", "sport")

    def __init__(self, req: Socket) -> None:
        assert req.remote_addr is not None, "a request socket has its peer"
        local, remote = _plain(req.local_addr), _plain(req.remote_addr)
        self.pkt = IpPacket(4 if len(local) == 4 else 6, remote, local, PROTO_TCP, 0, 0, 0, 0, b"", 0, b"",
                            RouteType.LOCAL, req.device or "")
        self.sport, self.dport = req.remote_port, req.local_port
        self.addr_sum = address_sum(remote, local)


def request_synack(kernel: Kernel, req: Socket) -> bytes:
    """The SYN-ACK of the pending request ``req`` sent again, for the SYN-ACK
    retransmission timer (reqsk_timer_handler → tcp_rtx_synack →
    tcp_v4_send_synack): same ISN, window and options as the first, TSval
    from the clock now (``kernel.now``)."""
    return synack(kernel, RequestOrigin(req), req.tcb)  # type: ignore[arg-type]


def _plain(addr: bytes) -> bytes:
    """A v4-mapped address as IPv4 (a dual-stack listener's IPv4 request)."""
    return addr[12:] if len(addr) == 16 and addr.startswith(V4_MAPPED_PREFIX) else addr


def free_window(tcb: Tcb, buf: RcvBuffer) -> int:
    """The window the receive buffer allows now (net/ipv4/tcp_output.c:
    __tcp_select_window, tcp_shrink_window off).

    The free space is tcp_space() (free memory in window terms, see
    :mod:`pktdemux.tcp_rcvbuf`).  Below half the full space it is rounded
    down to the scale unit, and becomes 0 under 1/16 of the buffer or one
    rcv_mss.  It is capped by rcv_ssthresh.  With window scaling the offer is
    that space rounded up to the scale unit; without, the window offered
    last is kept while it is within one rcv_mss below the space, else the
    space is rounded down to a multiple of rcv_mss (the peer's segment
    size as guessed, 536 until full segments arrive).
    """
    mss = buf.rcv_mss
    free_space = buf.tcp_space()
    allowed = buf.full_space()
    full_space = min(buf.window_clamp, allowed)
    if mss > full_space:
        mss = full_space
        if mss <= 0:
            return 0
    unit = 1 << tcb.rcv_wscale
    if free_space < full_space >> 1:
        free_space &= ~(unit - 1)
        if free_space < allowed >> 4 or free_space < mss:
            return 0
    free_space = min(free_space, buf.rcv_ssthresh)
    if tcb.rcv_wscale:
        return -(-free_space // unit) * unit
    window = tcb.rcv_wnd
    if window <= free_space - mss or window > free_space:
        window = free_space - free_space % mss
    elif mss == full_space and free_space > window + (full_space >> 1):
        window = free_space
    return window


def select_window(kernel: Kernel, tcb: Tcb) -> int:
    """The window field of a segment a full socket sends now; updates
    RCV.WUP and the window (tcp_select_window).

    :func:`free_window`, but never less than what the last window still
    offers (tcp_receive_window, rounded up to the scale unit): an offered
    window is not taken back.  The field is the window >> rcv_wscale, at
    most 65535.
    """
    current = tcb.receive_window()
    window = free_window(tcb, rcvbuf_of(kernel, tcb))
    if window < current:
        unit = 1 << tcb.rcv_wscale
        window = -(-current // unit) * unit
    tcb.rcv_wnd = window
    tcb.rcv_wup = tcb.rcv_nxt
    return min(window, 0xFFFF << tcb.rcv_wscale) >> tcb.rcv_wscale


def socket_segment(kernel: Kernel, seg: Segment, tcb: Tcb, flags: int = ACK) -> bytes:
    """A segment from a full socket: seq = SND.NXT, ack = RCV.NXT (tcp_send_ack).

    The socket's TOS (0 unless learned from the host's packets), DF, IPv4 ID
    from the socket's counter (incremented), timestamps when negotiated, the
    window from :func:`select_window`.
    """
    window = select_window(kernel, tcb)
    if tcb.delack is not None and flags & ACK:
        tcp_delack.ack_sent(tcb)  # tcp_event_ack_sent: a scheduled (delayed) ACK goes with this one
    options = timestamp_option(tsval(kernel, tcb), tcb.ts_recent) if tcb.ts_ok else b""
    ip_id = tcb.ip_id
    tcb.ip_id = (ip_id + 1) & 0xFFFF
    return reply(kernel, seg, tcb.snd_nxt, tcb.rcv_nxt, flags, window, options, tos=tcb.tos, ip_id=ip_id,
                 ip_options=tcb.ip_options)


def control_ack(kernel: Kernel, seg: Segment, tcb: Tcb, *, tos: int) -> bytes:
    """An ACK from the control socket for a request or TIME_WAIT entry
    (tcp_v4_send_ack via tcp_v4_reqsk_send_ack / tcp_v4_timewait_ack):
    seq = SND.NXT, ack = RCV.NXT, window = rcv_wnd >> rcv_wscale, DF, ID 0."""
    options = timestamp_option(tsval(kernel, tcb), tcb.ts_recent) if tcb.ts_ok else b""
    window = min(tcb.receive_window() >> tcb.rcv_wscale, 0xFFFF)
    return reply(kernel, seg, tcb.snd_nxt, tcb.rcv_nxt, ACK, window, options, tos=tos)


def has_ecn_setup(seg: Segment) -> bool:
    """A SYN asking for ECN: ECE and CWR both set (RFC 3168 §6.1.1)."""
    return seg.flags & (ECE | CWR) == ECE | CWR

