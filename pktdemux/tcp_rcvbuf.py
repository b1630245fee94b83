"""The receive buffer behind a full socket's advertised window, as Linux 6.18
keeps it (net/ipv4/tcp_input.c, include/net/tcp.h).

The window a socket offers (:func:`pktdemux.tcp_output.select_window`,
__tcp_select_window) is the free space of its receive buffer, capped by
``rcv_ssthresh``, which grows as data arrives.  Both are counted in
*memory*, not payload: every queued packet costs its skb's ``truesize``,
and memory becomes window through ``scaling_ratio`` (payload per byte of
memory, in 1/256: tcp_win_from_space).  The rules modelled here:

* tcp_init_buffer_space (at establishment): sk_rcvbuf = tcp_rmem[1];
  window_clamp = tcp_full_space() less one advmss ("force reservation of
  one segment", tcp_app_win); rcv_ssthresh = min(rcv_wnd, window_clamp);
  rcvq_space = min(rcv_ssthresh, rcv_wnd, 10 * advmss);
  icsk_ack.rcv_mss = min(advmss, rcv_wnd / 2, 536) (tcp_initialize_rcv_mss).
* tcp_queue_rcv / tcp_try_coalesce: an in-order segment joins the tail skb
  when its payload fits in the tail's tailroom (skb_try_coalesce, no memory
  charged), else it is queued and charged its truesize (sk_rmem_alloc).
* tcp_event_data_recv: tcp_measure_rcv_mss (a segment of at least
  rcv_mss bytes of a new size sets scaling_ratio = len * 256 / truesize
  and, when that changed, window_clamp = tcp_win_from_space(sk_rcvbuf)
  through tcp_set_window_clamp), tcp_rcv_rtt_measure (for DRS), then for
  128 bytes or more tcp_grow_window: rcv_ssthresh grows by 2 * advmss when
  the skb's truesize in window terms fits its payload, else by 2 * rcv_mss
  when __tcp_grow_window finds it fits at some halving, never past
  min(window_clamp, tcp_space()).
* Out-of-order segments are charged their truesize while held and grow
  rcv_ssthresh only with SACK (tcp_data_queue_ofo, ``adjust`` false).
* The application's read (tcp_recvmsg): each skb read frees its truesize;
  tcp_rcv_space_adjust (DRS) doubles the copied bytes of the last RTT into
  sk_rcvbuf (tcp_rcvbuf_grow, up to tcp_rmem[2]) with window_clamp
  following; tcp_cleanup_rbuf then sends a window update when the offered
  window was at most half the clamp and the new one is at least twice it.

What the model assumes:

* The skb truesize of a received packet depends on the receiving
  device's driver: :data:`RX_PROFILES`, by ``Interface.rx_skb``.  The only
  profile so far, ``"linear"``, is a kmalloc'ed head per packet, as the
  TUN device of pktdemux.oracle makes them (tun_alloc_skb), measured on
  6.18 (ss -tm's skmem r): 832 bytes up to 192 bytes of IP packet, 1280 up
  to 640, 2304 up to 1664.  It stands for every device, loopback included
  (whose skbs are the sender's: not measured).
* The application reads at once what arrives, after the ACK is sent
  (``Kernel.autoread``); with autoread off, data waits until
  :meth:`pktdemux.kernel.Kernel.recv`, as the oracle's applications do.
* The socket lock is never held by the application when a segment
  arrives (no backlog, no skb_condense); memory pressure, SO_RCVBUF and
  SO_RESERVE_MEM are not modelled; tcp_mstamp is the time of the last
  segment received.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .kernel import Kernel
    from .tcp_segment import Segment
    from .tcp_tcb import Tcb

#: Memory to window: window = space * scaling_ratio >> 8 (TCP_RMEM_TO_WIN_SCALE).
TCP_RMEM_TO_WIN_SCALE = 8
#: 50 % until a segment is measured (TCP_DEFAULT_SCALING_RATIO).
DEFAULT_SCALING_RATIO = 1 << (TCP_RMEM_TO_WIN_SCALE - 1)
TCP_INIT_CWND = 10
TCP_MSS_DEFAULT = 536
TCP_MIN_MSS = 88
#: SOCK_MIN_RCVBUF / 2 = (2048 + SKB_DATA_ALIGN(sizeof(struct sk_buff))) / 2:
#: the smallest window_clamp tcp_set_window_clamp sets.
MIN_WINDOW_CLAMP = (2048 + 256) // 2
#: tcp_event_data_recv grows the window only for segments this long.
GROW_MIN_LEN = 128
_TCP_APP_WIN = 31  # net.ipv4.tcp_app_win

# x86-64 sizes of 6.18: SKB_DATA_ALIGN(sizeof(struct skb_shared_info)),
# SKB_DATA_ALIGN(sizeof(struct sk_buff)), SKB_SMALL_HEAD_CACHE_SIZE, NET_SKB_PAD.
_SHINFO, _SKB, _SMALL_HEAD, _NET_SKB_PAD = 320, 256, 576, 64


def linear_skb(ip_len: int) -> tuple[int, int]:
    """(truesize, tailroom) of a packet of ``ip_len`` bytes copied into a
    kmalloc'ed head with NET_SKB_PAD headroom (tun_alloc_skb → __alloc_skb:
    the small-head cache up to 576 bytes, else a power-of-two kmalloc)."""
    need = -(-(_NET_SKB_PAD + ip_len) // 64) * 64 + _SHINFO
    size = _SMALL_HEAD if need <= _SMALL_HEAD else 1 << (need - 1).bit_length()
    return size + _SKB, size - _SHINFO - _NET_SKB_PAD - ip_len


#: How the receiving device's driver builds skbs: profile name → function of
#: the IP packet's length giving (truesize, tailroom).
RX_PROFILES: dict[str, Callable[[int], tuple[int, int]]] = {
    "linear": linear_skb,
}
DEFAULT_RX_PROFILE = "linear"


def win_from_space(ratio: int, space: int) -> int:
    """tcp_win_from_space: payload that ``space`` bytes of memory hold."""
    return (space * ratio) >> TCP_RMEM_TO_WIN_SCALE


def space_from_win(ratio: int, win: int) -> int:
    """tcp_space_from_win: memory that ``win`` bytes of payload need."""
    return (win << TCP_RMEM_TO_WIN_SCALE) // ratio


@dataclass(slots=True)
class RcvBuffer:
    """A full socket's receive-buffer state (struct tcp_sock, struct sock).

    Attributes:
        rcvbuf: sk_rcvbuf, bytes of memory.
        window_clamp, rcv_ssthresh: tp->window_clamp, tp->rcv_ssthresh.
        scaling_ratio: tp->scaling_ratio (payload per 256 bytes of memory).
        advmss: tp->advmss; rcv_mss: icsk_ack.rcv_mss, the peer's segment
            size as guessed from what arrives.
        rmem_alloc: sk_rmem_alloc, the truesize of the skbs held.
        queue: unread skbs, oldest first: [end_seq, truesize] (FIN counted).
        ofo: out-of-order skbs held, by seq: [end_seq, truesize, tailroom, length].
        tailroom: free bytes after the last queued skb's data.
        copied_seq: the next byte the application reads.
        rtt_us, rtt_seq, rtt_time: tp->rcv_rtt_est (rtt_us scaled by 8).
        last_tsecr: tp->rcv_rtt_last_tsecr.
        space, space_seq, space_time: tp->rcvq_space.
        mstamp: tp->tcp_mstamp, µs (the time of the last segment received).
    """

    rcvbuf: int
    window_clamp: int
    rcv_ssthresh: int
    advmss: int
    rcv_mss: int
    space: int
    copied_seq: int
    space_seq: int
    mstamp: int
    space_time: int
    scaling_ratio: int = DEFAULT_SCALING_RATIO
    rmem_alloc: int = 0
    queue: list[list[int]] = field(default_factory=list)
    ofo: dict[int, list[int]] = field(default_factory=dict)
    tailroom: int = 0
    rtt_us: int = 0
    rtt_seq: int = 0
    rtt_time: int = 0
    last_tsecr: int = 0

    def tcp_space(self) -> int:
        """tcp_space: the free memory in window terms."""
        return win_from_space(self.scaling_ratio, self.rcvbuf - self.rmem_alloc)

    def full_space(self) -> int:
        """tcp_full_space: the whole buffer in window terms."""
        return win_from_space(self.scaling_ratio, self.rcvbuf)


def buffer(kernel: Kernel, tcb: Tcb) -> RcvBuffer:
    """The connection's receive buffer, set up on first use as
    tcp_init_buffer_space does when the connection is established."""
    buf = tcb.rcvbuf
    if buf is None:
        buf = tcb.rcvbuf = _init_buffer_space(kernel, tcb)
    return buf


def _init_buffer_space(kernel: Kernel, tcb: Tcb) -> RcvBuffer:
    rcvbuf = kernel.ip_sysctls.tcp_rmem[1]
    advmss = tcb.rcv_mss  # tp->advmss: the MSS we offered, less 12 with timestamps
    maxwin = win_from_space(DEFAULT_SCALING_RATIO, rcvbuf)
    clamp = min(0xFFFF << tcb.rcv_wscale, maxwin)  # tcp_select_initial_window, then tcp_init_buffer_space
    if clamp >= maxwin > 4 * advmss:
        clamp = max(maxwin - (maxwin >> _TCP_APP_WIN), 4 * advmss)
    if clamp > 2 * advmss and clamp + advmss > maxwin:  # force reservation of one segment
        clamp = max(2 * advmss, maxwin - advmss)
    ssthresh = min(tcb.rcv_wnd, clamp)
    rcv_mss = max(min(advmss, tcb.rcv_wnd // 2, TCP_MSS_DEFAULT), TCP_MIN_MSS)
    now = _usec(kernel)
    return RcvBuffer(
        rcvbuf=rcvbuf, window_clamp=clamp, rcv_ssthresh=ssthresh, advmss=advmss, rcv_mss=rcv_mss,
        space=min(ssthresh, tcb.rcv_wnd, TCP_INIT_CWND * advmss), copied_seq=tcb.rcv_nxt,
        space_seq=tcb.rcv_nxt, mstamp=now, space_time=now,
    )


def _usec(kernel: Kernel) -> int:
    return round(kernel.now * 1_000_000)


def _skb(kernel: Kernel, ip_len: int, device: str) -> tuple[int, int]:
    profile = next((iface.rx_skb for iface in kernel.interfaces if iface.name == device), DEFAULT_RX_PROFILE)
    return RX_PROFILES[profile](ip_len)


def data_queued(kernel: Kernel, tcb: Tcb, seg: Segment, *, coalesce: bool = True) -> bool:
    """``seg``, in order, joined the receive queue (RCV.NXT already at its
    end): charge its memory (tcp_queue_rcv; a segment that began before
    RCV.NXT is never coalesced), then tcp_event_data_recv when it carries
    data, after tcp_rcv_rtt_measure_ts for its TSecr."""
    buf = buffer(kernel, tcb)
    buf.mstamp = _usec(kernel)
    length = seg.payload_len
    if tcb.ts_ok and seg.options.tsecr is not None and length:
        _rtt_measure_ts(kernel, tcb, buf, length, seg.options.tsecr)
    truesize, tailroom = _skb(kernel, len(seg.pkt.raw), seg.pkt.device)
    if coalesce and buf.queue and length <= buf.tailroom:  # skb_try_coalesce: copied into the tail
        buf.tailroom -= length
        buf.queue[-1][0] = seg.end_seq
    else:
        buf.queue.append([seg.end_seq, truesize])
        buf.rmem_alloc += truesize
        buf.tailroom = tailroom
    if length:
        _measure_rcv_mss(tcb, buf, length, truesize)
        _rtt_measure(tcb, buf)
        if length >= GROW_MIN_LEN:
            return grow_window(kernel, buf, length, truesize)
    return False


def ofo_held(kernel: Kernel, tcb: Tcb, seg: Segment) -> bool:
    """``seg`` is held out of order (tcp_data_queue_ofo): charged its
    truesize; with SACK it may grow rcv_ssthresh (no truesize adjustment).
    Overlaps and coalescing within the out-of-order queue are not modelled."""
    buf = buffer(kernel, tcb)
    buf.mstamp = _usec(kernel)
    if seg.seq in buf.ofo:
        return False
    truesize, tailroom = _skb(kernel, len(seg.pkt.raw), seg.pkt.device)
    buf.ofo[seg.seq] = [seg.end_seq, truesize, tailroom, seg.payload_len]
    buf.rmem_alloc += truesize
    if tcb.sack_ok:
        return grow_window(kernel, buf, seg.payload_len, truesize)
    return False


def ofo_drained(tcb: Tcb, seq: int, useful: bool) -> None:
    """A held segment reached RCV.NXT (tcp_ofo_queue): freed when it brings
    nothing new, else coalesced into the tail skb when it fits, else queued."""
    buf = tcb.rcvbuf
    if buf is None or seq not in buf.ofo:
        return
    end_seq, truesize, tailroom, length = buf.ofo.pop(seq)
    if useful and buf.queue and length <= buf.tailroom:
        buf.tailroom -= length
        buf.queue[-1][0] = end_seq
        useful = False
    if not useful:
        buf.rmem_alloc -= truesize
        return
    buf.queue.append([end_seq, truesize])
    buf.tailroom = tailroom


def _measure_rcv_mss(tcb: Tcb, buf: RcvBuffer, length: int, truesize: int) -> None:
    """tcp_measure_rcv_mss: the scaling ratio and the clamp follow a segment
    of a new size of at least rcv_mss bytes (small segments' PSH accounting
    only decides ACK timing, not modelled)."""
    if length < buf.rcv_mss:
        return
    if length != buf.rcv_mss:
        old = buf.scaling_ratio
        buf.scaling_ratio = ((length << TCP_RMEM_TO_WIN_SCALE) // truesize) or 1
        if buf.scaling_ratio != old:
            set_window_clamp(buf, win_from_space(buf.scaling_ratio, buf.rcvbuf), tcb.rcv_wnd)
            buf.space = min(buf.space, buf.window_clamp)
    buf.rcv_mss = min(length, buf.advmss)


def set_window_clamp(buf: RcvBuffer, val: int, rcv_wnd: int) -> None:
    """tcp_set_window_clamp: a smaller clamp pulls rcv_ssthresh down
    (__tcp_adjust_rcv_ssthresh, no reserved memory); a larger one lifts it
    to min(rcv_wnd, clamp), ``rcv_wnd`` being the window offered last."""
    new = max(MIN_WINDOW_CLAMP, val)
    old = buf.window_clamp
    if new == old:
        return
    buf.window_clamp = new
    if new < old:
        buf.rcv_ssthresh = min(buf.rcv_ssthresh, new)
    else:
        buf.rcv_ssthresh = max(min(rcv_wnd, new), buf.rcv_ssthresh)


def grow_window(kernel: Kernel, buf: RcvBuffer, length: int, truesize: int) -> bool:
    """tcp_grow_window (check #2 and __tcp_grow_window; no memory pressure).
    True when rcv_ssthresh grew: the kernel then asks for a quick ACK
    (icsk_ack.quick |= 1, :mod:`pktdemux.tcp_delack`)."""
    room = min(buf.window_clamp, buf.tcp_space()) - buf.rcv_ssthresh
    if room <= 0:
        return False
    ratio = buf.scaling_ratio
    if win_from_space(ratio, truesize) <= length:
        incr = 2 * buf.advmss
    else:
        incr = 0
        half = win_from_space(ratio, truesize) >> 1
        window = win_from_space(ratio, kernel.ip_sysctls.tcp_rmem[2]) >> 1
        while buf.rcv_ssthresh <= window:
            if half <= length:
                incr = 2 * buf.rcv_mss
                break
            half >>= 1
            window >>= 1
    if incr:
        buf.rcv_ssthresh += min(room, max(incr, 2 * length))
    return bool(incr)


def _rtt_measure(tcb: Tcb, buf: RcvBuffer) -> None:
    """tcp_rcv_rtt_measure: without timestamps, the time one window of data
    takes to arrive."""
    if buf.rtt_time:
        if ((tcb.rcv_nxt - buf.rtt_seq) & 0xFFFFFFFF) & 0x80000000:
            return
        _rtt_update(tcb, buf, max(buf.mstamp - buf.rtt_time, 1), True)
    buf.rtt_seq = (tcb.rcv_nxt + tcb.rcv_wnd) & 0xFFFFFFFF
    buf.rtt_time = buf.mstamp


def _rtt_measure_ts(kernel: Kernel, tcb: Tcb, buf: RcvBuffer, length: int, tsecr: int) -> None:
    """tcp_rcv_rtt_measure_ts: our TSval echoed by a full-sized segment."""
    if tsecr == buf.last_tsecr:
        return
    buf.last_tsecr = tsecr
    if length >= buf.rcv_mss:
        from .tcp_output import ms_clock

        delta = (ms_clock(kernel) - ((tsecr - tcb.ts_offset) & 0xFFFFFFFF)) & 0xFFFFFFFF
        if 0 < delta < 0x7FFFFFFF // 1000:
            _rtt_update(tcb, buf, delta * 1000, False)


def _rtt_update(tcb: Tcb, buf: RcvBuffer, sample: int, win_dep: bool) -> None:
    """tcp_rcv_rtt_update: the minimum with a window-based sample, else a
    moving average while the queue is empty."""
    m = sample << 3
    if buf.rtt_us == 0 or m < buf.rtt_us:
        buf.rtt_us = m
    elif not win_dep and tcb.rcv_nxt == buf.copied_seq:
        buf.rtt_us = buf.rtt_us - (buf.rtt_us >> 3) + sample


def app_reads(kernel: Kernel, tcb: Tcb, fin_received: bool) -> bool:
    """The application reads everything queued (tcp_recvmsg): skb by skb,
    tcp_rcv_space_adjust then the skb's memory freed; returns True when
    tcp_cleanup_rbuf sends a window update (never after the peer's FIN:
    RCV_SHUTDOWN, nor when only the FIN was read)."""
    buf = tcb.rcvbuf
    if buf is None or not buf.queue:
        return False
    before = tcb.receive_window()
    copied = (buf.queue[-1][0] - buf.copied_seq) & 0xFFFFFFFF
    while buf.queue:
        end_seq, truesize = buf.queue.pop(0)
        buf.copied_seq = end_seq
        _rcv_space_adjust(kernel, tcb, buf)
        buf.rmem_alloc -= truesize
    buf.tailroom = 0
    if fin_received or not copied or 2 * before > buf.window_clamp:
        return False
    from .tcp_output import free_window

    new = free_window(tcb, buf)
    return bool(new) and new >= 2 * before


def _rcv_space_adjust(kernel: Kernel, tcb: Tcb, buf: RcvBuffer) -> None:
    """tcp_rcv_space_adjust and tcp_rcvbuf_grow (DRS, Linux 6.16+)."""
    if not buf.rtt_us:
        return
    if buf.mstamp - buf.space_time < buf.rtt_us >> 3:
        return
    copied = ((buf.copied_seq - buf.space_seq) & 0xFFFFFFFF) - ((tcb.rcv_nxt - buf.copied_seq) & 0xFFFFFFFF)
    if copied > buf.space:
        buf.space = copied
        rcvwin = copied << 1
        if buf.ofo:
            rcvwin += (buf.ofo[max(buf.ofo)][0] - tcb.rcv_nxt) & 0xFFFFFFFF
        rcvbuf = min(space_from_win(buf.scaling_ratio, rcvwin), kernel.ip_sysctls.tcp_rmem[2])
        if rcvbuf > buf.rcvbuf:
            buf.rcvbuf = rcvbuf
            buf.window_clamp = win_from_space(buf.scaling_ratio, rcvbuf)
    buf.space_seq = buf.copied_seq
    buf.space_time = buf.mstamp
