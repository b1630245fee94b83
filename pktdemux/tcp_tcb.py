"""Per-connection TCP state (``Socket.tcb``) and per-listener queue state.

A :class:`Tcb` serves the three kinds of entry in the established table:
request sockets (SYN_RECV, net/ipv4/tcp_minisocks.c struct tcp_request_sock),
full sockets (struct tcp_sock) and TIME_WAIT mini-sockets (struct
tcp_timewait_sock).  Names follow RFC 9293 §3.3.1 (SND.UNA, SND.NXT, RCV.NXT)
in the kernel's spelling.  Sequence numbers are 32-bit, host order; times are
seconds since the epoch (capture time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .sockets import Socket


@dataclass(slots=True)
class Tcb:
    """Sequence and option state of one connection.

    Attributes:
        iss: our initial sequence number (snt_isn).
        irs: the peer's initial sequence number (rcv_isn).
        snd_una, snd_nxt: oldest unacknowledged / next sequence number to send.
        rcv_nxt: next sequence number expected from the peer.
        rcv_wup: RCV.NXT when the last window was advertised (tcp_sock.rcv_wup).
        rcv_wnd: the receive window advertised last, in bytes (it may pass
            65535 without window scaling: tcp_select_window stores it unclamped).
        rcvbuf: a full socket's receive buffer, which the window follows
            (:class:`pktdemux.tcp_rcvbuf.RcvBuffer`), set up with the first
            segment it sends or receives; None before.
        mss: our MSS (the SYN-ACK's MSS option).
        rcv_mss: our effective segment size (MSS minus 12 with timestamps).
        rcv_wscale: our window-scale shift (0 without window scaling).
        snd_wscale: the peer's shift.
        snd_wnd, max_window: the peer's last and largest window (bytes).
        bytes_acked: bytes of ours the peer acknowledged (tcp_sock.bytes_acked).
        ts_ok: timestamps negotiated.
        ts_offset: added to the ms clock to make TSval (tcp_sock.tsoffset).
        ts_recent: last TSval accepted from the peer (TSecr to send).
        wscale_ok, sack_ok, ecn_ok: window scaling / SACK / ECN negotiated.
        ip_id: next IPv4 ID of a full socket (inet_sock.inet_id).
        last_oow_ack_time: time of the last rate-limited reply, or None.
        synced: False while SND.NXT/RCV.NXT are unknown (a host-file
            connection before its first segment).
        deadline: when a request or TIME_WAIT entry expires.
        acked: a request whose final ACK was dropped on accept-queue overflow.
        tos: the TOS of the packets this end sends (SYN-ACK: 0, or the SYN's
            DSCP with tcp_reflect_tos; full socket: IP_TOS as the host's
            packets show it).
        ofo: out-of-order segments held: (seq, end_seq, fin) tuples.
        fin_sent: our FIN has been sent (SND.NXT counts it).
        shut_wr: the FIN came from shutdown(SHUT_WR): the application still
            holds the socket, which keeps receiving and is no orphan (FIN_WAIT2
            is the socket's own state, not a TIME_WAIT-substate entry).
        ip_options: IPv4 options the connection's packets carry, echoed from
            the SYN (tcp_v4_save_options).
        synack_timer: a request's armed SYN-ACK timer
            (:class:`pktdemux.timers.Timer`, :mod:`pktdemux.reqsk_timer`), or None.
        num_timeout: how many times that timer fired (request_sock.num_timeout);
            for a connecting socket, how many times its SYN was retransmitted
            (icsk_retransmits).
        rtx_timer: the armed retransmission timer (icsk_retransmit_timer): a
            connecting socket's SYN (:mod:`pktdemux.tcp_synsent`), a closing
            connection's FIN (:mod:`pktdemux.tcp_rtx`), or None.
        rtt: the RTT estimate, RTO and retransmission state
            (:class:`pktdemux.tcp_rtx.Rtt`), None until first needed.
        delack: when received data is ACKed (quick ACKs, the delayed-ACK
            timer: :class:`pktdemux.tcp_delack.DelAck`), None until first needed.
    """

    iss: int = 0
    irs: int = 0
    snd_una: int = 0
    snd_nxt: int = 0
    rcv_nxt: int = 0
    rcv_wup: int = 0
    rcv_wnd: int = 0
    mss: int = 536
    rcv_mss: int = 536
    rcv_wscale: int = 0
    snd_wscale: int = 0
    snd_wnd: int = 0
    max_window: int = 0
    bytes_acked: int = 0
    ts_ok: bool = False
    ts_offset: int = 0
    ts_recent: int = 0
    wscale_ok: bool = False
    sack_ok: bool = False
    ecn_ok: bool = False
    ip_id: int = 0
    last_oow_ack_time: float | None = None
    synced: bool = True
    deadline: float = 0.0
    acked: bool = False
    tos: int = 0
    ofo: list[tuple[int, int, bool]] = field(default_factory=list)
    fin_sent: bool = False
    shut_wr: bool = False
    ip_options: bytes = b""
    synack_timer: Any = field(default=None, compare=False, repr=False)
    num_timeout: int = 0
    rtx_timer: Any = field(default=None, compare=False, repr=False)
    rtt: Any = field(default=None, compare=False, repr=False)
    rcvbuf: Any = field(default=None, compare=False, repr=False)
    delack: Any = field(default=None, compare=False, repr=False)

    def receive_window(self) -> int:
        """Bytes the peer may still send beyond RCV.NXT (tcp_receive_window)."""
        win = (self.rcv_wup + self.rcv_wnd - self.rcv_nxt) & 0xFFFFFFFF
        return 0 if win & 0x80000000 else win


@dataclass(slots=True)
class ListenQueue:
    """A listener's queues (``Socket.tcb`` of a LISTEN socket).

    Attributes:
        requests: pending request sockets (SYN_RECV), the SYN queue length
            (inet_csk_reqsk_queue_len).
        accept_queue: established children not yet accept()ed, oldest first.
        last_overflow: time of the last SYN-queue overflow (SYN cookies sent),
            or None (tcp_synq_overflow / tcp_synq_no_recent_overflow).
    """

    requests: int = 0
    accept_queue: list[Socket] = field(default_factory=list)
    last_overflow: float | None = None
