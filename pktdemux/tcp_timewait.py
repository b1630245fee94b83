"""A segment for a TIME_WAIT entry, or an orphaned FIN_WAIT2 connection kept
as a TIME_WAIT entry in its FIN_WAIT2 substate (net/ipv4/tcp_minisocks.c:
tcp_timewait_state_process; tcp_v4_rcv ``do_time_wait``; spec §3.7).

Replies come from the control socket (tcp_v4_timewait_ack): seq = SND.NXT,
ack = RCV.NXT, DF, IPv4 ID 0, TOS 0.  PAWS is not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import tcp_listen
from .dropreason import DropReason
from .sockets import Socket, TcpState
from .tcp_conn import enter_timewait
from .tcp_output import control_ack, send_reset
from .tcp_ratelimit import oow_rate_limited
from .tcp_request import in_window
from .tcp_segment import ACK, FIN, MOD32, RST, SYN, Segment, seq_after, seq_before
from .tcp_tcb import Tcb
from .tcp_verdict import tcp_drop
from .verdict import Verdict

if TYPE_CHECKING:
    from .kernel import Kernel

HANDLER = "tcp time_wait"
#: A new connection in place of a TIME_WAIT entry starts this far above its
#: SND.NXT (tcp_timewait_state_process: tw_snd_nxt + 65535 + 2).
TW_ISN_GAP = 65537


def receive(kernel: Kernel, sock: Socket, seg: Segment) -> Verdict:
    """Process ``seg`` for a TIME_WAIT (or FIN_WAIT2-substate) entry."""
    tcb: Tcb = sock.tcb
    if sock.state is TcpState.FIN_WAIT2:
        return _fin_wait2(kernel, sock, tcb, seg)
    flags = seg.flags
    if seg.seq == tcb.rcv_nxt and (seg.seq == seg.end_seq or flags & RST):
        if flags & RST and not kernel.ip_sysctls.tcp_rfc1337:
            kernel.tcp.remove_established(sock)
            sock.state = TcpState.CLOSE
            return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, "RST at RCV.NXT: TIME_WAIT entry removed")
        _reschedule(kernel, sock, tcb)
        return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, "in-window ACK/RST for a TIME_WAIT entry: ignored")
    if flags & SYN and not flags & (RST | ACK) and seq_after(seg.seq, tcb.rcv_nxt):
        return _new_syn(kernel, sock, tcb, seg)
    if flags & RST:
        return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, "RST for a TIME_WAIT entry: ignored")
    if flags & ACK:
        _reschedule(kernel, sock, tcb)
    return _ack(kernel, tcb, seg, "old or out-of-window segment for a TIME_WAIT entry")


def _ack(kernel: Kernel, tcb: Tcb, seg: Segment, what: str) -> Verdict:
    if oow_rate_limited(kernel, tcb, seg):
        return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, f"{what}: ACK suppressed (tcp_invalid_ratelimit)")
    return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, f"{what}: ACK", (control_ack(kernel, seg, tcb, tos=0),),
                    ("tcp_timewait_state_process → TCP_TW_ACK (tcp_v4_timewait_ack)",))


def _reschedule(kernel: Kernel, sock: Socket, tcb: Tcb) -> None:
    from .tcp_conn import TIMEWAIT_LEN

    tcb.deadline = kernel.now + TIMEWAIT_LEN
    kernel.tcp.schedule(sock)


def _new_syn(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> Verdict:
    """TCP_TW_SYN: a listener gets the SYN with ISN = SND.NXT + 65537."""
    isn = (tcb.snd_nxt + TW_ISN_GAP) & MOD32 or 1
    listener = kernel.tcp.lookup_listener(kernel.entropy, seg.pkt, seg.sport, seg.dport)
    if listener is None:
        replies = (control_ack(kernel, seg, tcb, tos=0),)
        return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, "new SYN for a TIME_WAIT entry, no listener: ACK", replies)
    queue = tcp_listen.queues(listener)
    if queue.requests > tcp_listen.backlog(kernel, listener):
        return tcp_drop(DropReason.TCP_LISTEN_OVERFLOW, HANDLER,
                        f"new SYN for a TIME_WAIT entry but the SYN queue of {listener.display_name} is full")
    kernel.tcp.remove_established(sock)
    sock.state = TcpState.CLOSE
    return tcp_listen.receive(kernel, listener, seg, tw_isn=isn)


def _fin_wait2(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> Verdict:
    """The FIN_WAIT2 substate: repeats tcp_rcv_state_process's checks."""
    flags = seg.flags
    window_end = (tcb.rcv_nxt + tcb.receive_window()) & MOD32
    if not in_window(seg.seq, seg.end_seq, tcb.rcv_nxt, window_end):
        return _ack(kernel, tcb, seg, "segment outside the window in FIN_WAIT2")
    if flags & RST:
        kernel.tcp.remove_established(sock)
        sock.state = TcpState.CLOSE
        return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, "RST in FIN_WAIT2: connection removed")
    if flags & SYN and not seq_before(seg.seq, tcb.rcv_nxt):
        return _tw_reset(kernel, sock, seg, "SYN in FIN_WAIT2: RST")
    if not flags & ACK or not seq_after(seg.end_seq, tcb.rcv_nxt) or seg.end_seq == seg.seq:
        return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, "duplicate ACK in FIN_WAIT2: ignored")
    if not flags & FIN or seg.end_seq != (tcb.rcv_nxt + 1) & MOD32:
        return _tw_reset(kernel, sock, seg, "new data after close() in FIN_WAIT2: RST")
    tcb.rcv_nxt = tcb.rcv_wup = seg.end_seq  # tw_rcv_wnd stays: the ACK offers the same window
    if seg.options.tsval is not None:
        tcb.ts_recent = seg.options.tsval
    enter_timewait(kernel, sock, tcb, TcpState.TIME_WAIT)
    return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, "FIN in FIN_WAIT2: TIME_WAIT, ACK",
                    (control_ack(kernel, seg, tcb, tos=0),))


def _tw_reset(kernel: Kernel, sock: Socket, seg: Segment, note: str) -> Verdict:
    """TCP_TW_RST: tcp_v4_send_reset, then the entry is removed."""
    kernel.tcp.remove_established(sock)
    sock.state = TcpState.CLOSE
    return tcp_drop(DropReason.TCP_TIMEWAIT, HANDLER, note, send_reset(kernel, seg))
