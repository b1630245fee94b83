"""Explanation steps of the TCP receive path, for ``kernel.trace``.

Each step is one string, "what happened (source)".  The receive path calls
these only when ``kernel.trace`` is a list, so an untraced packet pays
nothing for them.
"""

from __future__ import annotations

from .dropreason import DropReason
from .sockets import Socket, TcpState
from .tcp_segment import ACK, RST, SYN, Segment
from .verdict import Verdict
from .wire import format_endpoint

#: What each state's handler is, and its source.
_STATE_SOURCES = {
    TcpState.LISTEN: "tcp_v4_do_rcv → tcp_rcv_state_process, TCP_LISTEN; RFC 9293 §3.10.7.2",
    TcpState.SYN_RECV: "tcp_check_req; RFC 9293 §3.10.7.4",
    TcpState.TIME_WAIT: "tcp_timewait_state_process; RFC 9293 §3.10.7.4",
    TcpState.FIN_WAIT2: "tcp_timewait_state_process, FIN_WAIT2 substate",
    TcpState.SYN_SENT: "tcp_rcv_synsent_state_process; RFC 9293 §3.10.7.3",
}
_SYNCED_SOURCE = "tcp_rcv_established / tcp_rcv_state_process; RFC 9293 §3.10.7.4"

#: RFC 5961 section of a challenge ACK, by the drop reason of the segment.
_CHALLENGE_SOURCES = {
    DropReason.TCP_RESET: "RFC 5961 §3.2",
    DropReason.TCP_INVALID_SYN: "RFC 5961 §4.2",
    DropReason.TCP_TOO_OLD_ACK: "RFC 5961 §5.2",
    DropReason.TCP_ACK_UNSENT_DATA: "RFC 5961 §5.2",
}


def endpoints(seg: Segment) -> str:
    """``10.0.0.1:80 <- 10.0.0.2:40000``: the local end, then the peer."""
    pkt = seg.pkt
    return f"{format_endpoint(pkt.dst, seg.dport)} <- {format_endpoint(pkt.src, seg.sport)}"


def established_hit(sock: Socket, seg: Segment) -> str:
    return (f"TCP lookup: established 4-tuple {endpoints(seg)} -> '{sock.display_name}' {sock.state.name} "
            "(__inet_lookup_established; spec §2.1)")


def established_miss(seg: Segment) -> str:
    return f"TCP lookup: no established 4-tuple {endpoints(seg)} (__inet_lookup_established; spec §2.1)"


def no_listener(seg: Segment) -> str:
    return (f"TCP lookup: no listener on port {seg.dport} for {format_endpoint(seg.pkt.dst, seg.dport)} "
            "(__inet_lookup_listener; spec §2.2)")


def state_step(sock: Socket) -> str:
    """The handler the socket's state hands the segment to."""
    source = _STATE_SOURCES.get(sock.state, _SYNCED_SOURCE)
    return f"state {sock.state.name}: segment handed to its handler ({source})"


def outcome(verdict: Verdict) -> str:
    """Why the kernel answered as it did: a RST, a SYN-ACK, a challenge ACK,
    an ACK, or nothing."""
    note = verdict.note or verdict.handler
    if not verdict.replies:
        return f"no reply: {note} ({verdict.handler}; RFC 9293 §3.10.7)"
    kinds = [reply_kind(packet) for packet in verdict.replies]
    if "RST" in kinds:
        if verdict.handler == "tcp no socket":
            source = "tcp_v4_send_reset; RFC 9293 §3.10.7.1"
        elif verdict.handler == "tcp listen":
            source = "tcp_v4_send_reset; RFC 9293 §3.10.7.2"
        else:
            source = "tcp_v4_send_reset / tcp_reset; RFC 9293 §3.10.7.4"
        return f"RST sent: {note} ({source})"
    if "SYN-ACK" in kinds:
        return f"SYN-ACK sent: {note} (tcp_conn_request → tcp_v4_send_synack; RFC 9293 §3.10.7.2)"
    if "challenge" in note:
        source = _CHALLENGE_SOURCES.get(verdict.reason, "RFC 5961")  # type: ignore[arg-type]
        return f"challenge ACK sent: {note} (tcp_send_challenge_ack; {source})"
    return f"ACK sent: {note} (tcp_send_ack; RFC 9293 §3.10.7.4)"


def reply_kind(packet: bytes) -> str:
    """``RST``, ``SYN-ACK`` or ``ACK`` for a TCP reply without IPv6 extension headers."""
    l4 = 40 if packet[0] >> 4 == 6 else (packet[0] & 0x0F) * 4
    flags = packet[l4 + 13] if len(packet) > l4 + 13 else 0
    if flags & RST:
        return "RST"
    if flags & SYN and flags & ACK:
        return "SYN-ACK"
    return "ACK"
