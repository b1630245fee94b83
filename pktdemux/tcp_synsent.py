"""A segment for a connecting socket, SYN_SENT (net/ipv4/tcp_input.c:
tcp_rcv_synsent_state_process; spec §3.8).

A SYN_SENT socket is made by :meth:`pktdemux.kernel.Kernel.transmit` when the
host's own SYN (a connect()) appears in a capture; its TCB holds the SYN's
ISN, options and window, so the emulation's third ACK is the host's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dropreason import DropReason
from .sockets import Socket, TcpState
from .tcp_output import TS_ALIGNED, send_reset, socket_segment
from .tcp_segment import ACK, MOD32, RST, SYN, Segment, seq_after
from .tcp_tcb import Tcb
from .tcp_verdict import tcp_deliver, tcp_drop
from .verdict import Verdict

if TYPE_CHECKING:
    from .kernel import Kernel

HANDLER = "tcp syn_sent"


def receive(kernel: Kernel, sock: Socket, seg: Segment) -> Verdict:
    """Process ``seg`` for ``sock`` in SYN_SENT."""
    tcb: Tcb = sock.tcb
    flags = seg.flags
    if flags & ACK:
        if not seq_after(seg.ack, tcb.snd_una) or seq_after(seg.ack, tcb.snd_nxt):
            replies = send_reset(kernel, seg)
            return tcp_drop(DropReason.TCP_INVALID_ACK_SEQUENCE, HANDLER,
                            "SYN-SENT: ACK of something other than our SYN: RST seq=SEG.ACK", replies)
        if flags & RST:
            kernel.tcp.remove_established(sock)
            sock.state = TcpState.CLOSE
            return tcp_deliver(sock, HANDLER, "connection refused (RST+ACK): ECONNREFUSED")
        if not flags & SYN:
            return tcp_drop(DropReason.TCP_FLAGS, HANDLER, "SYN-SENT: ACK without SYN")
        return _established(kernel, sock, tcb, seg)
    if flags & RST:
        return tcp_drop(DropReason.TCP_RESET, HANDLER, "SYN-SENT: RST without ACK ignored")
    return tcp_drop(DropReason.TCP_FLAGS, HANDLER, "SYN-SENT: segment without ACK (simultaneous open not modelled)")


def _established(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> Verdict:
    """A valid SYN-ACK: ESTABLISHED and the third ACK (tcp_finish_connect, tcp_send_ack)."""
    opts = seg.options
    tcb.irs = seg.seq
    tcb.rcv_nxt = tcb.rcv_wup = (seg.seq + 1) & MOD32
    tcb.snd_una = seg.ack
    tcb.ts_ok = tcb.ts_ok and opts.tsval is not None
    if tcb.ts_ok:
        tcb.ts_recent = opts.tsval or 0
        tcb.rcv_mss = tcb.mss - TS_ALIGNED
    tcb.wscale_ok = tcb.wscale_ok and opts.wscale is not None
    tcb.snd_wscale = min(opts.wscale or 0, 14) if tcb.wscale_ok else 0
    if not tcb.wscale_ok:
        tcb.rcv_wscale = 0
    tcb.sack_ok = tcb.sack_ok and opts.sack_ok
    tcb.snd_wnd = tcb.max_window = seg.window
    sock.state = TcpState.ESTABLISHED
    reply = socket_segment(kernel, seg, tcb)
    return tcp_deliver(sock, HANDLER, "SYN-ACK: connection established, third ACK", (reply,))
