"""The host's own packets, as a capture shows them ("out" direction).

:func:`transmit` is :meth:`pktdemux.kernel.Kernel.transmit`.  A packet the
kernel would generate by itself (RST, SYN-ACK, pure ACK, ICMP error, echo
reply) is matched against the replies the emulation sent recently; a packet
an application caused (a connect()'s SYN, data, a close()'s FIN, a UDP
datagram) updates the emulated sockets so that the rest of the capture
replays as it happened:

* SYN (no ACK): connect() → a SYN_SENT socket (spec §3.8);
* SYN-ACK for a pending request: its ISN and TSval offset are adopted;
* data / FIN from a connection: SND.NXT advances, data is queued for the
  RTT sample of its ACK (:mod:`pktdemux.tcp_rtx`); a FIN is close(), the
  path :meth:`Kernel.close <pktdemux.kernel.Kernel.close>` takes
  (:func:`pktdemux.tcp_conn.close`: ESTABLISHED → FIN_WAIT1, CLOSE_WAIT →
  LAST_ACK, an orphan, its FIN retransmitted by the emulation until
  acknowledged); the host's own retransmission of a bare FIN is a kernel
  packet, matched against the emulation's;
* RST from a connection the emulation did not reset: the application
  aborted it (SO_LINGER 0, or close() with unread data): it is removed;
* UDP from a port without a socket: an implicit bind (inet_autobind).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import tcp_delack, tcp_rtx
from .matching import first_difference, tsval_offset
from .sockets import V4_ANY, V6_ANY, Proto, Socket, TcpState
from .tcp_output import ms_clock, select_window
from .tcp_segment import ACK, FIN, MOD32, RST, SYN
from .tcp_tcb import Tcb
from .verdict import Transmission
from .wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    format_endpoint,
    ip_datagram,
)

if TYPE_CHECKING:
    from .kernel import Kernel

_TCP = struct.Struct("!HHIIBBH")
_ID_FRAG = struct.Struct("!HH")
#: ICMP types the kernel sends on its own: echo reply, errors, timestamp reply.
_ICMP4_KERNEL_TYPES = frozenset({0, 3, 4, 5, 11, 12, 14})
_ICMP6_KERNEL_TYPES = frozenset({1, 2, 3, 4, 129})
#: Neighbour discovery and MLD: kernel traffic outside the emulation.
_ICMP6_NOT_EMULATED = frozenset(range(130, 144))


class _Out:
    """The parsed IP header of an outgoing packet (``frag``: the IPv4
    fragment offset field and MF bit, 0 for a whole datagram)."""

    __slots__ = ("dst", "frag", "ip_id", "l4", "proto", "src", "version")

    def __init__(self, version: int, src: bytes, dst: bytes, proto: int, l4: int, ip_id: int,
                 frag: int = 0) -> None:
        self.version, self.src, self.dst, self.proto, self.l4, self.ip_id = version, src, dst, proto, l4, ip_id
        self.frag = frag


def _parse(packet: bytes) -> _Out | None:
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl:
            return None
        ip_id, frag = _ID_FRAG.unpack_from(packet, 4)
        return _Out(4, packet[12:16], packet[16:20], packet[9], ihl, ip_id, frag & 0x3FFF)
    if version == 6 and len(packet) >= 40:
        return _Out(6, packet[8:24], packet[24:40], packet[6], 40, 0)
    return None


def transmit(kernel: Kernel, packet: bytes, now: float) -> Transmission:
    """What the emulation makes of ``packet``, sent by the host at ``now``.

    Args:
        kernel: the emulated host.
        packet: the IPv4/IPv6 packet from its IP header.
        now: capture time, seconds since the epoch.

    Never raises for malformed input (an unparsable packet gives
    ``matched=None`` with a note).
    """
    kernel.now = max(kernel.now, now)
    sent = kernel.sent
    sent.prune(kernel.now)
    # A short frame's link padding is not the host's: a padded pure ACK is no data.
    packet = ip_datagram(packet)
    out = _parse(packet)
    if out is None:
        return _NOT_IP
    proto = out.proto
    if out.frag:
        # The kernel fragments only what a socket sends (ip_fragment); its
        # own replies fit the MTU.  The transport header may be cut or absent.
        return Transmission(None, "send", note=f"IPv4 fragment at offset {(out.frag & 0x1FFF) << 3}"
                            f"{', more follow' if out.frag & 0x2000 else ''}: sent by an application")
    if proto == PROTO_TCP and len(packet) >= out.l4 + 20:
        return _tcp(kernel, packet, out)
    if proto == PROTO_UDP and len(packet) >= out.l4 + 8:
        return _udp(kernel, packet, out)
    if (proto == PROTO_ICMP or proto == PROTO_ICMPV6) and len(packet) > out.l4:
        return _icmp(kernel, packet, out)
    return Transmission(None, note=f"IP protocol {proto}: not emulated")


_NOT_IP = Transmission(None, note="not an IPv4/IPv6 packet")


def _unmatched(kernel: Kernel, packet: bytes, what: str) -> str:
    closest = kernel.sent.closest(packet)
    if closest is None:
        return f"{what} the emulation did not send (nothing pending for that peer)"
    return f"{what} differs from the emulation's: {first_difference(packet, closest)}"


def _icmp(kernel: Kernel, packet: bytes, out: _Out) -> Transmission:
    icmp_type = packet[out.l4]
    if out.proto == PROTO_ICMPV6 and icmp_type in _ICMP6_NOT_EMULATED:
        return Transmission(None, note=f"ICMPv6 type {icmp_type} (neighbour discovery/MLD): not emulated")
    kernel_kinds = _ICMP4_KERNEL_TYPES if out.proto == PROTO_ICMP else _ICMP6_KERNEL_TYPES
    if icmp_type not in kernel_kinds:
        return Transmission(None, "send", note=f"ICMP type {icmp_type} sent by an application")
    if kernel.sent.take(packet):
        return Transmission(True, "reply", note=f"ICMP type {icmp_type} as the emulation sent it")
    return Transmission(False, "reply", note=_unmatched(kernel, packet, f"ICMP type {icmp_type}"))


def _udp(kernel: Kernel, packet: bytes, out: _Out) -> Transmission:
    sport = struct.unpack_from("!H", packet, out.l4)[0]
    on_port = getattr(kernel.udp, "on_port", None)
    insert = getattr(kernel.udp, "insert", None)
    if on_port is None or insert is None:
        return Transmission(None, "send", note="UDP table not available")
    owners = [s for s in on_port(sport) if s.family == out.version or s.family == 6]
    if owners:
        return Transmission(None, "send", tuple(owners[:1]))
    sock = Socket(Proto.UDP, out.version, V4_ANY if out.version == 4 else V6_ANY, sport)
    insert(sock)
    kernel.sockets.append(sock)
    return Transmission(None, "implicit bind", (sock,), f"UDP from port {sport} without a socket: implicit bind")


def _tcp(kernel: Kernel, packet: bytes, out: _Out) -> Transmission:
    sport, dport, seq, ack, off, flags, window = _TCP.unpack_from(packet, out.l4)
    payload_len = len(packet) - out.l4 - (off >> 4) * 4
    sock = kernel.tcp.established.get((out.src, sport, out.dst, dport))
    if flags & (SYN | ACK) == SYN | ACK:
        return _synack(kernel, packet, out, sock, seq, kernel.sent.take(packet))
    if flags & SYN:
        return _connect(kernel, packet, out, sock, seq, window)
    socks = (sock,) if sock is not None else ()
    if flags & RST:
        if kernel.sent.take(packet):
            return Transmission(True, "reply", socks, "RST as the emulation sent it")
        if sock is not None and _aborted(kernel, sock):
            return Transmission(None, "close", socks, "RST from the connection: the application aborted it "
                                "(SO_LINGER 0, or close() with unread data); connection removed")
        return Transmission(False, "reply", socks, _unmatched(kernel, packet, "RST"))
    resent_fin = False
    if sock is not None:
        if sock.tcb.__class__ is Tcb:
            resent_fin = bool(flags & FIN) and not payload_len and sock.tcb.fin_sent
            _follow(kernel, packet, out, sock, seq, ack, flags, payload_len)
        else:
            _learn(kernel, packet, out, sock, seq, ack, flags, payload_len)
    if resent_fin:
        tcp_rtx.fin_resent_by_host(kernel, sock.tcb)  # type: ignore[union-attr]
        if kernel.sent.take(packet):
            return Transmission(True, "reply", socks, "FIN retransmitted as the emulation retransmitted it")
        return Transmission(False, "reply", socks, _unmatched(kernel, packet, "FIN retransmission"))
    if payload_len or flags & FIN:
        # Data and FIN come from the application: the emulation never sends them.
        action = "close" if flags & FIN else "send"
        return Transmission(None, action, socks, f"{payload_len} bytes" + (" and FIN" if flags & FIN else ""))
    if kernel.sent.take(packet):
        return Transmission(True, "reply", socks, "ACK as the emulation sent it")
    return Transmission(False, "reply", socks, _unmatched(kernel, packet, "ACK"))


def _synack(kernel: Kernel, packet: bytes, out: _Out, req: Socket | None, isn: int, matched: bool) -> Transmission:
    """A SYN-ACK from the host: adopt its ISN and TSval offset into the request."""
    if req is not None and req.state is TcpState.SYN_RECV and isinstance(req.tcb, Tcb):
        tcb = req.tcb
        tcb.iss = isn
        tcb.snd_una = tcb.snd_nxt = (isn + 1) & MOD32
        if not tcp_rtx.state(tcb).hs_retrans:
            tcp_rtx.handshake_sent(kernel, tcb)  # the SYN-ACK's time as the capture shows it
        ts = _tsval(packet, out)
        if ts is not None:
            tcb.ts_offset = (ts - ms_clock(kernel)) & MOD32
    socks = (req,) if req is not None else ()
    if matched:
        return Transmission(True, "reply", socks, "SYN-ACK as the emulation sent it (ISN adopted)")
    return Transmission(False, "reply", socks, _unmatched(kernel, packet, "SYN-ACK"))


def _connect(kernel: Kernel, packet: bytes, out: _Out, sock: Socket | None, isn: int, window: int) -> Transmission:
    """The host's SYN: connect() creates a SYN_SENT socket (a retransmitted SYN changes nothing)."""
    from .tcp_options import parse_options

    sport, dport = struct.unpack_from("!HH", packet, out.l4)
    if sock is not None and sock.state is TcpState.SYN_SENT and sock.tcb.iss == isn:
        tcp_rtx.handshake_resent(sock.tcb)
        return Transmission(None, "connect", (sock,), "SYN retransmitted")
    if sock is not None and sock.state is TcpState.SYN_SENT and kernel.sent.take(packet):
        _adopt_syn(kernel, packet, out, sock.tcb, isn)
        return Transmission(None, "connect", (sock,), "SYN as the emulation's connect() sent it (ISN adopted)")
    if sock is not None:
        kernel.tcp.remove_established(sock)
    doff = (packet[out.l4 + 12] >> 4) * 4
    opts = parse_options(packet, out.l4 + 20, out.l4 + doff, True)
    mss = opts.mss or 536
    tcb = Tcb(
        iss=isn, snd_una=isn, snd_nxt=(isn + 1) & MOD32, rcv_wnd=window, mss=mss, rcv_mss=mss,
        rcv_wscale=opts.wscale or 0, wscale_ok=opts.wscale is not None, ts_ok=opts.tsval is not None,
        ts_offset=((opts.tsval or 0) - ms_clock(kernel)) & MOD32, sack_ok=opts.sack_ok,
        ip_id=(out.ip_id + 1) & 0xFFFF, tos=packet[1] if out.version == 4 else 0,
    )
    tcp_rtx.handshake_sent(kernel, tcb)
    sock = Socket(Proto.TCP, out.version, out.src, sport, out.dst, dport, TcpState.SYN_SENT, tcb=tcb)
    kernel.tcp.insert_established(sock)
    kernel.tcp.own(sock)
    return Transmission(None, "connect", (sock,), f"connect() to {format_endpoint(out.dst, dport)}: SYN_SENT")


def _adopt_syn(kernel: Kernel, packet: bytes, out: _Out, tcb: Tcb, isn: int) -> None:
    """The emulation's connect() sent this SYN with its own random ISN,
    TSval offset and IPv4 ID: take the host's, so that what follows (the
    third ACK, a RST's seq = SEG.ACK) is the host's."""
    tcb.iss = tcb.snd_una = isn
    tcb.snd_nxt = (isn + 1) & MOD32
    tcp_rtx.handshake_sent(kernel, tcb)
    ts = _tsval(packet, out)
    if ts is not None and tcb.ts_ok:
        tcb.ts_offset = (ts - ms_clock(kernel)) & MOD32
    if out.version == 4:
        tcb.ip_id = (out.ip_id + 1) & 0xFFFF


def _follow(kernel: Kernel, packet: bytes, out: _Out, sock: Socket, seq: int, ack: int, flags: int,
            payload_len: int) -> None:
    """Keep a connection in step with what the host really sent."""
    tcb: Tcb = sock.tcb
    end = (seq + payload_len + (1 if flags & FIN else 0)) & MOD32
    if payload_len:
        tcp_rtx.data_sent(kernel, tcb, seq, end)
    if (end - tcb.snd_nxt) & 0x80000000 == 0:
        tcb.snd_nxt = end
    if out.version == 4:
        tcb.ip_id = (out.ip_id + 1) & 0xFFFF
        tcb.tos = packet[1]
    else:
        tcb.tos = (struct.unpack_from("!I", packet)[0] >> 20) & 0xFF
    ts = _tsval(packet, out)
    if ts is not None and tcb.ts_ok:
        tcb.ts_offset = (ts - ms_clock(kernel)) & MOD32
    if tcb.synced and flags & ACK and ack == tcb.rcv_nxt:
        if payload_len:
            tcp_delack.data_sent(kernel, tcb)  # tcp_event_data_sent: a reply within ato: pingpong
        tcp_delack.ack_sent(tcb)  # tcp_event_ack_sent: the host ACKed, a pending delayed ACK goes with it
    if payload_len or flags & FIN:
        _accepted(sock)
        if tcb.synced:  # the host's kernel chose this segment's window: RCV.WUP and the offer move (tcp_select_window)
            select_window(kernel, tcb)
    if flags & FIN and not tcb.fin_sent and sock.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
        from .tcp_conn import close

        close(kernel, sock, from_host=True, bare=not payload_len)


#: States in which the application's abortive close sends a RST (tcp_need_reset).
_ABORTABLE = (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT1, TcpState.CLOSING, TcpState.LAST_ACK)


def _aborted(kernel: Kernel, sock: Socket) -> bool:
    """The host reset a connection the emulation holds open: the
    application's abortive close (tcp_disconnect, tcp_close with unread
    data); the socket leaves every table as after close()."""
    tcb = sock.tcb
    if tcb.__class__ is not Tcb or not tcb.synced:
        return False
    if sock.state not in _ABORTABLE and not (sock.state is TcpState.FIN_WAIT2 and tcb.shut_wr):
        return False
    from .bind import close

    kernel.tcp.remove_established(sock)
    close(kernel, sock)
    return True


def _learn(kernel: Kernel, packet: bytes, out: _Out, sock: Socket, seq: int, ack: int, flags: int,
           payload_len: int) -> None:
    """A host-file connection's first packet: its numbers become the TCB."""
    from .tcp_conn import learn_from_host

    learn_from_host(kernel, sock, seq, ack if flags & ACK else 0, _tsval(packet, out), out.ip_id)
    _follow(kernel, packet, out, sock, seq, ack, flags, payload_len)


def _accepted(sock: Socket) -> None:
    """A child that sends was accept()ed: it leaves the listener's accept queue."""
    queue = getattr(sock.parent, "tcb", None) if sock.parent is not None else None
    accept_queue = getattr(queue, "accept_queue", None)
    if accept_queue is not None and sock in accept_queue:
        accept_queue.remove(sock)


def _tsval(packet: bytes, out: _Out) -> int | None:
    offset = tsval_offset(packet, out.l4)
    return struct.unpack_from("!I", packet, offset)[0] if offset is not None else None
