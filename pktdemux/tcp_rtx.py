"""The retransmission timeout of a connection and the retransmission of its
FIN (net/ipv4/tcp_input.c: tcp_rtt_estimator, tcp_set_rto,
tcp_ack_update_rtt, tcp_synack_rtt_meas, tcp_clean_rtx_queue;
net/ipv4/tcp_metrics.c: tcp_init_metrics; net/ipv4/tcp_output.c:
tcp_schedule_loss_probe, tcp_send_loss_probe, tcp_rearm_rto;
net/ipv4/tcp_timer.c: tcp_retransmit_timer, tcp_write_timeout,
retransmits_timed_out, tcp_orphan_retries, tcp_write_err; tcp_fin_time).

Times are in jiffies where the kernel counts in jiffies, at HZ=250 (the
kernel the oracle runs, and Debian's): TCP_RTO_MIN is 50 jiffies (200 ms),
TCP_TIMEOUT_INIT 250 (1 s), and an RTO of 200 ms + a few µs rounds up to
51 jiffies (204 ms).

RTT samples (:func:`sample`, Karn's rule: never from a retransmitted
segment, then from the timestamps option's TSecr when negotiated):

* the handshake: a request's SYN-ACK to the final ACK, unless the SYN-ACK
  was sent again; a connect()'s SYN to the SYN-ACK, unless the SYN was sent
  again; without a sample the RTO is TCP_TIMEOUT_FALLBACK, 3 s
  (tcp_init_metrics);
* ACKs of what the host sent: its data as a capture shows it (out packets,
  :mod:`pktdemux.transmit`; the application's answers of
  :mod:`pktdemux.apps`) and its FIN.

A connection whose handshake the emulation did not see (a host-file
connection) starts with TCP_TIMEOUT_INIT (1 s) until its first sample.

The FIN (close(), shutdown(SHUT_WR), or the host's FIN in a capture) is
retransmitted, with the same sequence number and the ACK, window, TSval and
IPv4 ID of the moment, while it is the only thing unacknowledged:

* with SACK negotiated (and tcp_early_retrans 3 or 4), the tail loss probe
  first: min(2·SRTT + TCP_RTO_MIN, the RTO) after the FIN (1 s without an
  RTT sample), then the RTO timer again from the probe;
* the RTO timer: before each retransmission tcp_write_timeout decides the
  connection's death, by the time since the first retransmission against
  tcp_model_timeout(retries, TCP_RTO_MIN) (retries: tcp_retries2, or for an
  orphan tcp_orphan_retries, whose 0 means 8 while the RTO is below
  tcp_rto_max_ms and 0 once it reached it); then the FIN again, the RTO
  doubled (at most tcp_rto_max_ms).
* Death is silent (tcp_write_err, tcp_done): the connection leaves the
  tables, a socket the application still holds gets ETIMEDOUT in SO_ERROR.

An ACK of new data resets the retransmission count and re-arms the timer
from now when the FIN is still unacknowledged; an ACK of the FIN stops it.

Not modelled: retransmission of data (while data of the host is
unacknowledged, the FIN is not retransmitted either), fast retransmit on
duplicate ACKs, RACK, the zero-window probe timer, TCP_USER_TIMEOUT,
TCP_LINGER2, the soft errors of ICMP (sk_err_soft), the orphan limits of
tcp_out_of_resources, the per-destination metrics cache (which can seed a
new connection's RTO from an earlier one's RTT), and the timer wheel's
rounding (a timer of 2 s to 16 s fires up to 256 ms late on Linux, one of
16 s to 2 min up to 2 s late; the emulation fires timers on time).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .sockets import Socket, TcpState
from .tcp_segment import ACK, FIN, MOD32, seq_after, seq_before

if TYPE_CHECKING:
    from .kernel import Kernel
    from .tcp_segment import Segment
    from .tcp_tcb import Tcb

#: Timer ticks per second of the emulated kernel (CONFIG_HZ).
HZ = 250
_US_PER_JIFFY = 1_000_000 // HZ
#: TCP_RTO_MIN: the base of tcp_model_timeout, jiffies (HZ / 5).
RTO_MIN = HZ // 5
#: TCP_TIMEOUT_INIT: the RTO before any RTT sample, jiffies.
TIMEOUT_INIT = HZ
#: TCP_TIMEOUT_FALLBACK: the RTO after a handshake without an RTT sample, jiffies.
TIMEOUT_FALLBACK = 3 * HZ
#: TCP_TIMEWAIT_LEN, jiffies.
TIMEWAIT_LEN = 60 * HZ
#: TCP_TIMEOUT_MIN_US: the tail loss probe's margin when several segments are out.
_TIMEOUT_MIN_US = 2000
#: Timer names in timer rows.
WHAT_RTO = "tcp_retransmit_timer"
WHAT_TLP = "tcp_send_loss_probe"
#: At most this many unacknowledged segments are remembered per connection.
_QUEUE_MAX = 256
_CLOSING = (TcpState.FIN_WAIT1, TcpState.CLOSING, TcpState.LAST_ACK)


def usecs_to_jiffies(us: int) -> int:
    """usecs_to_jiffies: microseconds to jiffies, rounded up."""
    return -(-us // _US_PER_JIFFY) if us > 0 else 0


def jiffies_to_usecs(jiffies: int) -> int:
    return jiffies * _US_PER_JIFFY


@dataclass(slots=True)
class Rtt:
    """A connection's RTT estimate and retransmission state (``Tcb.rtt``).

    Attributes:
        srtt_us: smoothed RTT, µs × 8 (tcp_sock.srtt_us); 0 before a sample.
        mdev_us, mdev_max_us, rttvar_us, rtt_seq: the variance estimator
            (tcp_sock fields of the same names).
        rto: the retransmission timeout, jiffies (icsk_rto).
        backoff: icsk_backoff (reset by a valid RTT sample).
        retransmits: retransmissions since the last ACK of new data
            (icsk_retransmits).
        retrans_stamp: the ms clock of the first of them (tp->retrans_stamp).
        hs_at: when the handshake's SYN-ACK (passive) or SYN (active) was
            sent; ``hs_retrans``: it was sent again (no RTT sample then).
        queue: what the host sent and the peer has not acknowledged, oldest
            first: [start, end, last sent at, retransmitted] per segment.
        fin: the last queue entry is a bare FIN, which the timer retransmits.
        tlp_high_seq: SND.NXT when a tail loss probe went out, else None.
        loss: an RTO fired since everything was last acknowledged
            (TCP_CA_Loss: no tail loss probe).
    """

    srtt_us: int = 0
    mdev_us: int = jiffies_to_usecs(TIMEOUT_INIT)
    mdev_max_us: int = 0
    rttvar_us: int = 0
    rtt_seq: int = 0
    rto: int = TIMEOUT_INIT
    backoff: int = 0
    retransmits: int = 0
    retrans_stamp: int | None = None
    hs_at: float | None = None
    hs_retrans: bool = False
    queue: list[list] = field(default_factory=list)  # type: ignore[type-arg]
    fin: bool = False
    tlp_high_seq: int | None = None
    loss: bool = False


def state(tcb: Tcb) -> Rtt:
    """The connection's :class:`Rtt`, made on first use."""
    rtt = tcb.rtt
    if rtt is None:
        rtt = tcb.rtt = Rtt()
    return rtt  # type: ignore[no-any-return]


# -- sysctls, per socket in the kernel (icsk_rto_min, icsk_rto_max from tcp_init_sock)

def rto_max(kernel: Kernel) -> int:
    """tcp_rto_max(sk): net.ipv4.tcp_rto_max_ms in jiffies."""
    return -(-kernel.ip_sysctls.tcp_rto_max_ms * HZ // 1000)


def _rto_min_us(kernel: Kernel) -> int:
    """tcp_rto_min_us(sk): net.ipv4.tcp_rto_min_us, rounded up to jiffies."""
    return jiffies_to_usecs(usecs_to_jiffies(kernel.ip_sysctls.tcp_rto_min_us))


# -- the estimator

def sample(kernel: Kernel, tcb: Tcb, rtt_us: int) -> None:
    """One valid RTT measurement (tcp_ack_update_rtt): tcp_rtt_estimator,
    tcp_set_rto, and the backoff reset."""
    rtt = state(tcb)
    m = max(rtt_us, 0)
    srtt = rtt.srtt_us
    if srtt:
        m -= srtt >> 3
        srtt += m
        if m < 0:
            m = -m - (rtt.mdev_us >> 2)
            if m > 0:
                m >>= 3
        else:
            m -= rtt.mdev_us >> 2
        rtt.mdev_us += m
        if rtt.mdev_us > rtt.mdev_max_us:
            rtt.mdev_max_us = rtt.mdev_us
            rtt.rttvar_us = max(rtt.rttvar_us, rtt.mdev_max_us)
        if seq_after(tcb.snd_una, rtt.rtt_seq):
            if rtt.mdev_max_us < rtt.rttvar_us:
                rtt.rttvar_us -= (rtt.rttvar_us - rtt.mdev_max_us) >> 2
            rtt.rtt_seq = tcb.snd_nxt
            rtt.mdev_max_us = _rto_min_us(kernel)
    else:
        srtt = m << 3
        rtt.mdev_us = m << 1
        rtt.rttvar_us = max(rtt.mdev_us, _rto_min_us(kernel))
        rtt.mdev_max_us = rtt.rttvar_us
        rtt.rtt_seq = tcb.snd_nxt
    rtt.srtt_us = max(1, srtt)
    rtt.rto = min(usecs_to_jiffies((rtt.srtt_us >> 3) + rtt.rttvar_us), rto_max(kernel))
    rtt.backoff = 0


def seed(kernel: Kernel, tcb: Tcb, rtt_us: int) -> None:
    """A connection whose handshake took ``rtt_us`` (its one RTT sample), as
    a kernel's report of it gives it (TCP_INFO's tcpi_rtt)."""
    tcb.rtt = Rtt()
    sample(kernel, tcb, rtt_us)


def _ts_sample(kernel: Kernel, tcb: Tcb, seg: Segment) -> int | None:
    """tcp_rtt_tsopt_us: the RTT from the echoed TSval, at least 1 ms."""
    from .tcp_output import tsval

    tsecr = seg.options.tsecr
    if not tcb.ts_ok or seg.options.tsval is None or not tsecr:
        return None
    delta = (tsval(kernel, tcb) - tsecr) & MOD32
    if delta >= 0x7FFFFFFF // 1000:
        return None
    return max(delta, 1) * 1000


# -- the handshake

def handshake_sent(kernel: Kernel, tcb: Tcb) -> None:
    """A request's first SYN-ACK, or a connect()'s SYN, goes out now."""
    rtt = state(tcb)
    rtt.hs_at = kernel.now
    rtt.hs_retrans = False


def handshake_resent(tcb: Tcb) -> None:
    """The SYN-ACK or SYN went out again: the handshake gives no RTT sample
    (req->num_retrans, TCPCB_RETRANS)."""
    state(tcb).hs_retrans = True


def handshake_done(kernel: Kernel, tcb: Tcb, seg: Segment) -> None:
    """The connection is established by ``seg`` (the final ACK, or the
    SYN-ACK of a connect()): the handshake's RTT sample, else the TSecr's
    (tcp_synack_rtt_meas, tcp_ack_update_rtt), else the RTO falls back to
    3 s (tcp_init_metrics)."""
    rtt = state(tcb)
    if not rtt.srtt_us:
        m = None
        if rtt.hs_at is not None and not rtt.hs_retrans:
            m = round((kernel.now - rtt.hs_at) * 1_000_000)
        if m is None:
            m = _ts_sample(kernel, tcb, seg)
        if m is not None:
            sample(kernel, tcb, m)
    if not rtt.srtt_us:
        rtt.mdev_us = rtt.mdev_max_us = rtt.rttvar_us = jiffies_to_usecs(TIMEOUT_FALLBACK)
        rtt.rto = TIMEOUT_FALLBACK
    rtt.hs_at = None


# -- what the host sends

def data_sent(kernel: Kernel, tcb: Tcb, seq: int, end: int) -> None:
    """The host sends [seq, end) (data, a FIN with it): new data is queued
    for its ACK's RTT sample, a retransmission marks what it covers."""
    rtt = state(tcb)
    queue = rtt.queue
    snd_nxt = tcb.snd_nxt
    resent_end = snd_nxt if seq_after(end, snd_nxt) else end
    if seq_before(seq, resent_end):
        for entry in queue:
            if seq_before(entry[0], resent_end) and seq_after(entry[1], seq):
                entry[2], entry[3] = kernel.now, True
    if seq_after(end, snd_nxt):
        if len(queue) >= _QUEUE_MAX:
            del queue[0]
        queue.append([snd_nxt if seq_before(seq, snd_nxt) else seq, end, kernel.now, False])
        rtt.fin = False


def fin_sent(kernel: Kernel, sock: Socket, tcb: Tcb) -> None:
    """Our bare FIN went out (SND.NXT counts it): queued, and its timer
    armed when nothing else is unacknowledged (tcp_event_new_data_sent →
    tcp_rearm_rto, then tcp_schedule_loss_probe)."""
    rtt = state(tcb)
    queue = rtt.queue
    while queue and not seq_after(queue[0][1], tcb.snd_una):
        del queue[0]
    queue.append([(tcb.snd_nxt - 1) & MOD32, tcb.snd_nxt, kernel.now, False])
    rtt.fin = True
    if len(queue) == 1:
        _set_xmit_timer(kernel, sock, tcb, rtt, advancing_rto=False)


def fin_resent_by_host(kernel: Kernel, tcb: Tcb) -> None:
    """The host's own retransmission of its FIN (a capture's out packet)."""
    rtt = state(tcb)
    if rtt.fin and rtt.queue:
        rtt.queue[-1][2], rtt.queue[-1][3] = kernel.now, True


# -- the peer's ACKs

def acked(kernel: Kernel, sock: Socket, tcb: Tcb, seg: Segment) -> None:
    """``seg`` acknowledged new data (SND.UNA already moved to SEG.ACK):
    the RTT sample (tcp_clean_rtx_queue, tcp_ack_update_rtt), then the
    retransmission timer stopped, or re-armed from now for a FIN still
    unacknowledged (tcp_set_xmit_timer)."""
    rtt = tcb.rtt
    if rtt is None:
        if not tcb.ts_ok:
            return
        rtt = state(tcb)
    queue = rtt.queue
    done = 0
    while done < len(queue) and not seq_after(queue[done][1], tcb.snd_una):
        done += 1
    newly, rtt.queue = queue[:done], queue[done:]
    m = None
    if newly and not any(entry[3] for entry in newly):
        m = round((kernel.now - newly[0][2]) * 1_000_000)
    if m is None:
        m = _ts_sample(kernel, tcb, seg)
    if m is not None:
        sample(kernel, tcb, m)
    rtt.retransmits = 0
    rtt.retrans_stamp = None
    if rtt.tlp_high_seq is not None and seq_after(tcb.snd_una, rtt.tlp_high_seq):
        rtt.tlp_high_seq = None
    if not rtt.queue:
        rtt.fin = False
        rtt.loss = False
        rtt.tlp_high_seq = None
        _stop(tcb)
    elif rtt.fin and len(rtt.queue) == 1:
        _set_xmit_timer(kernel, sock, tcb, rtt, advancing_rto=True)


# -- the timers

def _stop(tcb: Tcb) -> None:
    timer = tcb.rtx_timer
    if timer is not None:
        timer.cancel()
        tcb.rtx_timer = None


def _arm(kernel: Kernel, sock: Socket, jiffies: int, probe: bool) -> None:
    tcb = sock.tcb
    _stop(tcb)
    what = WHAT_TLP if probe else WHAT_RTO
    tcb.rtx_timer = kernel.timers.arm(kernel.now + jiffies / HZ, what,
                                      lambda now: _fire(kernel, sock, probe))


def _set_xmit_timer(kernel: Kernel, sock: Socket, tcb: Tcb, rtt: Rtt, *, advancing_rto: bool) -> None:
    """tcp_schedule_loss_probe, else tcp_rearm_rto: the FIN alone is out."""
    if (kernel.ip_sysctls.tcp_early_retrans in (3, 4) and tcb.sack_ok and not rtt.loss
            and rtt.tlp_high_seq is None):
        if rtt.srtt_us:
            extra = _rto_min_us(kernel) if len(rtt.queue) == 1 else _TIMEOUT_MIN_US
            timeout = usecs_to_jiffies((rtt.srtt_us >> 2) + extra)
        else:
            timeout = TIMEOUT_INIT
        if advancing_rto:
            delta_us = jiffies_to_usecs(rtt.rto)
        else:
            delta_us = round((rtt.queue[0][2] - kernel.now) * 1_000_000) + jiffies_to_usecs(rtt.rto)
        if delta_us > 0:
            timeout = min(timeout, usecs_to_jiffies(delta_us))
        _arm(kernel, sock, timeout, True)
        return
    _arm(kernel, sock, rtt.rto, False)


def _retransmitting(kernel: Kernel, sock: Socket) -> bool:
    """The connection is still there with its FIN alone unacknowledged."""
    from .tcp_table import established_key

    tcb = sock.tcb
    rtt = tcb.rtt
    return (sock.state in _CLOSING and rtt is not None and rtt.fin and len(rtt.queue) == 1
            and seq_before(tcb.snd_una, tcb.snd_nxt)
            and kernel.tcp.established.get(established_key(sock)) is sock)


def _fire(kernel: Kernel, sock: Socket, probe: bool) -> list[bytes]:
    tcb = sock.tcb
    tcb.rtx_timer = None
    if not _retransmitting(kernel, sock):
        return []
    rtt: Rtt = tcb.rtt
    if probe:
        return _loss_probe(kernel, sock, tcb, rtt)
    return _retransmit_timer(kernel, sock, tcb, rtt)


def _loss_probe(kernel: Kernel, sock: Socket, tcb: Tcb, rtt: Rtt) -> list[bytes]:
    """tcp_send_loss_probe: the FIN again (not a retransmission for Karn's
    rule), then the RTO timer from now."""
    packet = _fin(kernel, sock, tcb)
    rtt.queue[-1][2] = kernel.now
    rtt.tlp_high_seq = tcb.snd_nxt
    _arm(kernel, sock, rtt.rto, False)
    return [packet]


def _retransmit_timer(kernel: Kernel, sock: Socket, tcb: Tcb, rtt: Rtt) -> list[bytes]:
    """tcp_retransmit_timer: death (tcp_write_timeout), or the FIN again and
    the RTO doubled."""
    rtt.loss = True
    if _write_timeout(kernel, sock, tcb, rtt):
        return []
    rtt.retransmits += 1
    packet = _fin(kernel, sock, tcb)
    entry = rtt.queue[0]
    entry[2], entry[3] = kernel.now, True
    if rtt.retrans_stamp is None:
        rtt.retrans_stamp = _ms(kernel)
    rtt.backoff += 1
    rtt.rto = min(rtt.rto << 1, rto_max(kernel))
    _arm(kernel, sock, rtt.rto, False)
    return [packet]


def orphan_retries(kernel: Kernel, alive: bool) -> int:
    """tcp_orphan_retries: the sysctl, whose 0 means 8 while the RTO is
    below its maximum."""
    retries = kernel.ip_sysctls.tcp_orphan_retries
    return 8 if retries == 0 and alive else retries


def model_timeout(kernel: Kernel, boundary: int) -> int:
    """tcp_model_timeout(boundary, TCP_RTO_MIN), milliseconds: how long
    ``boundary`` retransmissions take from an RTO of 200 ms, doubling up to
    tcp_rto_max_ms."""
    top = rto_max(kernel)
    linear = (top // RTO_MIN).bit_length() - 1
    if boundary <= linear:
        timeout = ((2 << boundary) - 1) * RTO_MIN
    else:
        timeout = ((2 << linear) - 1) * RTO_MIN + (boundary - linear) * top
    return timeout * 1000 // HZ


def _write_timeout(kernel: Kernel, sock: Socket, tcb: Tcb, rtt: Rtt) -> bool:
    """tcp_write_timeout: True when the connection died (tcp_write_err)."""
    retries = kernel.ip_sysctls.tcp_retries2
    if not tcb.shut_wr:  # SOCK_DEAD: close() made it an orphan
        retries = orphan_retries(kernel, rtt.rto < rto_max(kernel))
    if not rtt.retransmits or rtt.retrans_stamp is None:
        return False
    elapsed = (_ms(kernel) - rtt.retrans_stamp) & MOD32
    if elapsed & 0x80000000 or elapsed < model_timeout(kernel, retries):
        return False
    sock.so_error = errno.ETIMEDOUT
    _stop(tcb)
    kernel.tcp.remove_established(sock)
    sock.state = TcpState.CLOSE
    return True


def _ms(kernel: Kernel) -> int:
    """tcp_time_stamp_ms: the ms clock."""
    return int(kernel.now * 1000) & MOD32


def _fin(kernel: Kernel, sock: Socket, tcb: Tcb) -> bytes:
    """The FIN again: its sequence number, the ACK and window of the moment."""
    return segment_at(kernel, sock, tcb, (tcb.snd_nxt - 1) & MOD32, FIN | ACK)


def segment_at(kernel: Kernel, sock: Socket, tcb: Tcb, seq: int, flags: int) -> bytes:
    """A segment of the full socket (tcp_transmit_skb) with sequence number ``seq``."""
    from .tcp_output import RequestOrigin, socket_segment

    saved = tcb.snd_nxt
    tcb.snd_nxt = seq
    try:
        return socket_segment(kernel, RequestOrigin(sock), tcb, flags)  # type: ignore[arg-type]
    finally:
        tcb.snd_nxt = saved


# -- FIN_WAIT2 of an orphan

def fin_time(kernel: Kernel, tcb: Tcb) -> int:
    """tcp_fin_time: net.ipv4.tcp_fin_timeout, at least 3.5 RTO, jiffies."""
    rto = state(tcb).rto
    return max(kernel.ip_sysctls.tcp_fin_timeout * HZ, (rto << 2) - (rto >> 1))


def fin_wait2_lifetime(kernel: Kernel, tcb: Tcb) -> float:
    """Seconds an orphaned FIN_WAIT2 connection lives once our FIN is
    acknowledged (tcp_rcv_state_process, tcp_close): tcp_fin_time as a
    FIN_WAIT2 timewait socket (tcp_time_wait); beyond TCP_TIMEWAIT_LEN the
    full socket first waits tcp_fin_time − 60 s (the keepalive timer), then
    the timewait socket as long again, at least 3.5 RTO
    (tcp_keepalive_timer)."""
    tmo = fin_time(kernel, tcb)
    if tmo <= TIMEWAIT_LEN:
        return tmo / HZ
    rto = state(tcb).rto
    return ((tmo - TIMEWAIT_LEN) + max(tmo - TIMEWAIT_LEN, (rto << 2) - (rto >> 1))) / HZ
