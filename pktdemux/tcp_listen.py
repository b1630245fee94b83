"""A segment for a LISTEN socket (tcp_v4_do_rcv → tcp_rcv_state_process,
TCP_LISTEN case; tcp_conn_request; spec §3.2–3.5).

Flag rules, in the kernel's order: ACK → RST (seq = SEG.ACK) after the SYN
cookie check; RST → dropped; SYN+FIN → dropped; SYN → a request socket and a
SYN-ACK (or a SYN cookie, or a drop when the queues are full); anything else
→ dropped.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from . import tcp_cookies, tcp_rtx
from .dropreason import DropReason
from .errors import SocketError
from .packet import RouteType
from .sockets import V4_MAPPED_PREFIX, Proto, Socket, TcpState
from .tcp_output import (
    TS_ALIGNED,
    advertised_mss,
    echoed_ip_options,
    has_ecn_setup,
    ms_clock,
    send_reset,
    synack,
)
from .tcp_segment import ACK, FIN, MOD32, RST, SYN, Segment
from .tcp_tcb import ListenQueue, Tcb
from .tcp_verdict import tcp_deliver, tcp_drop
from .verdict import Verdict
from .wire import format_endpoint

if TYPE_CHECKING:
    from .kernel import Kernel

HANDLER = "tcp listen"
_ECN_MASK = 0x03


def receive(kernel: Kernel, listener: Socket, seg: Segment, tw_isn: int | None = None) -> Verdict:
    """Process ``seg`` on ``listener`` (tcp_rcv_state_process, TCP_LISTEN).

    ``tw_isn`` is set when a TIME_WAIT entry handed over a new SYN
    (tcp_timewait_state_process TCP_TW_SYN): the request then starts at that
    ISN and skips the SYN-queue limit.
    """
    flags = seg.flags
    if flags & ACK and not flags & (SYN | RST):
        cookie_verdict = _try_cookie(kernel, listener, seg)
        if cookie_verdict is not None:
            return cookie_verdict
    name = listener.display_name
    if flags & ACK:
        if flags & RST:
            return tcp_drop(DropReason.TCP_FLAGS, HANDLER, f"RST+ACK to listener {name}: dropped")
        replies = send_reset(kernel, seg)
        what = "RST seq=SEG.ACK" if replies else f"no RST to a {seg.pkt.route.value} destination"
        return tcp_drop(DropReason.TCP_FLAGS, HANDLER, f"ACK to listener {name}: {what}", replies,
                        ("LISTEN: an ACK is unacceptable (RFC 9293 §3.10.7.2)",))
    if flags & RST:
        return tcp_drop(DropReason.TCP_RESET, HANDLER, f"RST to listener {name}: dropped")
    if flags & SYN:
        if flags & FIN:
            return tcp_drop(DropReason.TCP_FLAGS, HANDLER, f"SYN+FIN to listener {name}: dropped")
        return conn_request(kernel, listener, seg, tw_isn)
    return tcp_drop(DropReason.TCP_FLAGS, HANDLER, f"segment without SYN/ACK/RST to listener {name}: dropped")


def accept(listener: Socket) -> Socket | None:
    """accept() on ``listener``: pop the oldest child of its accept queue
    (inet_csk_accept → reqsk_queue_remove), None when the queue is empty.

    Raises:
        SocketError: EINVAL when ``listener`` is not in LISTEN (inet_csk_accept).
    """
    if listener.proto is not Proto.TCP or listener.state is not TcpState.LISTEN:
        raise SocketError(errno.EINVAL, f"{listener.display_name} is not listening", rule="inet_csk_accept")
    queue = queues(listener).accept_queue
    return queue.pop(0) if queue else None


def backlog(kernel: Kernel, listener: Socket) -> int:
    """The effective listen() backlog: min(argument, net.core.somaxconn)."""
    requested = listener.backlog if listener.backlog is not None else kernel.ip_sysctls.somaxconn
    return max(0, min(requested, kernel.ip_sysctls.somaxconn))


def queues(listener: Socket) -> ListenQueue:
    """The listener's queues, created on first use."""
    if not isinstance(listener.tcb, ListenQueue):
        listener.tcb = ListenQueue()
    return listener.tcb


def conn_request(kernel: Kernel, listener: Socket, seg: Segment, tw_isn: int | None) -> Verdict:
    """A SYN to a listener (tcp_conn_request, spec §3.3–3.5)."""
    name = listener.display_name
    if seg.pkt.route is not RouteType.LOCAL:
        return tcp_drop(DropReason.NOT_SPECIFIED, HANDLER,
                        f"SYN to a {seg.pkt.route.value} address: never answered (tcp_v4_conn_request)")
    sysctls = kernel.ip_sysctls
    syncookies = sysctls.tcp_syncookies
    queue = queues(listener)
    limit = backlog(kernel, listener)
    want_cookie = False
    if tw_isn is None and (syncookies == 2 or queue.requests > limit):
        if not syncookies:
            return tcp_drop(DropReason.TCP_REQQFULLDROP, HANDLER,
                            f"SYN queue of {name} full and tcp_syncookies=0: SYN dropped")
        want_cookie = True
    if len(queue.accept_queue) > limit:
        return tcp_drop(DropReason.TCP_LISTEN_OVERFLOW, HANDLER,
                        f"accept queue of {name} full ({len(queue.accept_queue)} > {limit}): SYN dropped")
    if want_cookie:
        return _cookie_synack(kernel, listener, seg, queue)
    max_syn = sysctls.tcp_max_syn_backlog
    if tw_isn is None and not syncookies and max_syn - queue.requests < max_syn >> 2:
        return tcp_drop(DropReason.TCP_REQQFULLDROP, HANDLER,
                        f"SYN queue of {name} past 3/4 of tcp_max_syn_backlog: SYN from an unproven peer dropped")
    isn = tw_isn if tw_isn is not None else kernel.entropy.isn()
    req, tcb = new_request(kernel, listener, seg, isn)
    kernel.tcp.insert_established(req)
    queue.requests += 1
    reply = synack(kernel, seg, tcb)
    tcp_rtx.handshake_sent(kernel, tcb)
    return tcp_deliver(listener, HANDLER, f"SYN to {name}: request created, SYN-ACK sent", (reply,),
                       ("listener found (__inet_lookup_listener)", "request socket SYN_RECV (tcp_conn_request)",
                        "SYN-ACK (tcp_make_synack, spec §3.3)"))


def new_request(kernel: Kernel, listener: Socket, seg: Segment, isn: int) -> tuple[Socket, Tcb]:
    """A SYN_RECV request socket for ``seg`` and its TCB (inet_reqsk_alloc,
    tcp_openreq_init); options are taken only when offered and enabled."""
    sysctls = kernel.ip_sysctls
    opts = seg.options
    ts_ok = opts.tsval is not None and bool(sysctls.tcp_timestamps)
    wscale_ok = opts.wscale is not None and bool(sysctls.tcp_window_scaling)
    sack_ok = opts.sack_ok and bool(sysctls.tcp_sack)
    mss = advertised_mss(kernel, seg)
    rcv_mss = mss - TS_ALIGNED if ts_ok else mss
    rcv_wnd, rcv_wscale = initial_window(kernel, rcv_mss, wscale_ok, route_initrwnd(kernel, seg.pkt.device))
    tcb = Tcb(
        iss=isn, irs=seg.seq, snd_una=(isn + 1) & MOD32, snd_nxt=(isn + 1) & MOD32,
        rcv_nxt=(seg.seq + 1) & MOD32, rcv_wup=(seg.seq + 1) & MOD32, rcv_wnd=rcv_wnd,
        mss=mss, rcv_mss=rcv_mss, rcv_wscale=rcv_wscale, snd_wscale=min(opts.wscale or 0, 14) if wscale_ok else 0,
        snd_wnd=seg.window, max_window=seg.window,
        ts_ok=ts_ok, ts_offset=kernel.entropy.ts_offset() if ts_ok else 0, ts_recent=opts.tsval or 0,
        wscale_ok=wscale_ok, sack_ok=sack_ok, ecn_ok=_ecn_ok(kernel, seg), tos=_synack_tos(kernel, seg),
        deadline=kernel.now + request_lifetime(kernel), ip_options=echoed_ip_options(kernel, seg) or b"",
    )
    return child_socket(listener, seg, TcpState.SYN_RECV, tcb), tcb


def child_socket(listener: Socket, seg: Segment, state: TcpState, tcb: Tcb) -> Socket:
    """A connection socket of ``listener`` for ``seg``'s 4-tuple (inet_csk_clone_lock).

    A dual-stack AF_INET6 listener gets v4-mapped addresses for IPv4 peers.
    """
    local, remote = seg.pkt.dst, seg.pkt.src
    if listener.family == 6 and seg.pkt.version == 4:
        local, remote = V4_MAPPED_PREFIX + local, V4_MAPPED_PREFIX + remote
    return Socket(
        Proto.TCP, listener.family, local, seg.dport, remote, seg.sport, state,
        v6only=listener.v6only, reuseaddr=listener.reuseaddr, reuseport=listener.reuseport,
        device=listener.device, uid=listener.uid, process=listener.process, pid=listener.pid,
        parent=listener, tcb=tcb, inbox=[] if listener.inbox is not None else None,
    )


def initial_window(kernel: Kernel, mss: int, wscale_ok: bool, init_rcv_wnd: int = 0) -> tuple[int, int]:
    """(receive window, window-scale shift) of a new connection
    (tcp_select_initial_window over tcp_full_space, spec §3.3).

    The space is half of tcp_rmem[1] (the default scaling ratio), rounded
    down to a multiple of ``mss``; the window is that space (not capped at
    65535 since Linux 6.10: the SYN's or SYN-ACK's field is), at most
    ``init_rcv_wnd`` × ``mss`` when the route has an initrwnd
    (:func:`route_initrwnd`).  The shift makes the largest buffer
    (tcp_rmem[2], rmem_max) fit in 16 bits.
    """
    rmem = kernel.ip_sysctls.tcp_rmem
    space = rmem[1] // 2
    if space > mss > 0:
        space -= space % mss
    window = min(space, init_rcv_wnd * mss) if init_rcv_wnd else space
    wscale = 0
    if wscale_ok:
        largest = max(space, rmem[2], kernel.ip_sysctls.rmem_max)
        largest = min(largest, 0xFFFF << 14)
        wscale = min(max(largest.bit_length() - 1 - 15, 0), 14)
    return window, wscale


def route_initrwnd(kernel: Kernel, device: str) -> int:
    """dst_metric(dst, RTAX_INITRWND) of the route out of ``device``: the
    device's ``initrwnd`` (:class:`pktdemux.kernel.Interface`), 0 when unset."""
    initrwnd = getattr(kernel.routing, "initrwnd", None)
    return int(initrwnd(device)) if initrwnd is not None else 0


def request_lifetime(kernel: Kernel) -> float:
    """Seconds until an unanswered request is dropped: the SYN-ACK timer
    (1 s, doubling) runs tcp_synack_retries + 1 times (reqsk_timer_handler)."""
    retries = kernel.ip_sysctls.tcp_synack_retries
    return float((1 << (retries + 1)) - 1)


def _ecn_ok(kernel: Kernel, seg: Segment) -> bool:
    """tcp_ecn_create_request: the SYN asks for ECN (ECE+CWR), tcp_ecn allows
    it, and the SYN itself is not ECT-marked."""
    if not has_ecn_setup(seg) or not kernel.ip_sysctls.tcp_ecn:
        return False
    return seg.pkt.tos & _ECN_MASK == 0


def _synack_tos(kernel: Kernel, seg: Segment) -> int:
    """The listener's TOS (0), or the SYN's DSCP with tcp_reflect_tos=1."""
    if kernel.ip_sysctls.tcp_reflect_tos:
        return seg.pkt.tos & ~_ECN_MASK
    return 0


def _cookie_synack(kernel: Kernel, listener: Socket, seg: Segment, queue: ListenQueue) -> Verdict:
    """Answer a SYN with a cookie instead of a request (spec §3.5)."""
    queue.last_overflow = kernel.now
    _, tcb = new_request(kernel, listener, seg, tcp_cookies.cookie_isn(kernel, seg))
    if not tcb.ts_ok:
        # tcp_clear_options: without timestamps only the MSS survives.
        tcb.wscale_ok = tcb.sack_ok = tcb.ecn_ok = False
        tcb.rcv_wnd, tcb.rcv_wscale = initial_window(kernel, tcb.rcv_mss, False,
                                                     route_initrwnd(kernel, seg.pkt.device))
    else:
        peer_ws = tcb.snd_wscale if tcb.wscale_ok else None
        encoded = tcp_cookies.encode_tsval(ms_clock(kernel), peer_ws, tcb.sack_ok, tcb.ecn_ok)
        tcb.ts_offset = (encoded + tcp_cookies.ts_offset(kernel, seg) - ms_clock(kernel)) & MOD32
    reply = synack(kernel, seg, tcb)
    where = format_endpoint(seg.pkt.dst, seg.dport)
    return tcp_deliver(listener, HANDLER, f"SYN queue of {listener.display_name} over its backlog: "
                       f"SYN cookie sent (possible SYN flooding on port {where})", (reply,),
                       ("SYN queue full (inet_csk_reqsk_queue_is_full)", "SYN cookie (cookie_init_sequence)"))


def _try_cookie(kernel: Kernel, listener: Socket, seg: Segment) -> Verdict | None:
    """An ACK that may complete a cookie handshake (cookie_v4_check); None
    when it is no valid cookie (the listener then answers with a RST)."""
    queue = queues(listener)
    if not kernel.ip_sysctls.tcp_syncookies or queue.last_overflow is None:
        return None
    if kernel.now - queue.last_overflow > tcp_cookies.OVERFLOW_VALID:
        return None
    peer_mss = tcp_cookies.check_cookie(kernel, seg)
    if peer_mss is None:
        return None
    if len(queue.accept_queue) > backlog(kernel, listener):
        return tcp_drop(DropReason.TCP_LISTEN_OVERFLOW, HANDLER,
                        f"valid SYN cookie but the accept queue of {listener.display_name} is full: dropped")
    child = _cookie_child(kernel, listener, seg, peer_mss)
    if child is None:
        return None
    from . import tcp_conn

    kernel.tcp.insert_established(child)
    kernel.tcp.own(child)
    queue.accept_queue.append(child)
    tcp_rtx.handshake_done(kernel, child.tcb, seg)
    verdict = tcp_conn.receive(kernel, child, seg)
    return tcp_deliver(child, HANDLER, f"valid SYN cookie: connection to {listener.display_name} established; "
                       + verdict.note, verdict.replies, ("SYN cookie checked (cookie_v4_check)",) + verdict.steps)


def _cookie_child(kernel: Kernel, listener: Socket, seg: Segment, peer_mss: int) -> Socket | None:
    """The ESTABLISHED child rebuilt from a cookie ACK (cookie_tcp_reqsk_init)."""
    opts = seg.options
    ts_ok = opts.tsval is not None and bool(kernel.ip_sysctls.tcp_timestamps)
    snd_wscale: int | None = None
    sack_ok = ecn_ok = False
    ts_offset = 0
    if ts_ok:
        ts_offset = tcp_cookies.ts_offset(kernel, seg)
        snd_wscale, sack_ok, ecn_ok = tcp_cookies.decode_tsecr(((opts.tsecr or 0) - ts_offset) & MOD32)
        if snd_wscale is not None and (snd_wscale > 14 or not kernel.ip_sysctls.tcp_window_scaling):
            return None
    mss = advertised_mss(kernel, seg)
    rcv_wnd, rcv_wscale = initial_window(kernel, peer_mss, snd_wscale is not None,
                                         route_initrwnd(kernel, seg.pkt.device))
    tcb = Tcb(
        iss=(seg.ack - 1) & MOD32, irs=(seg.seq - 1) & MOD32, snd_una=seg.ack, snd_nxt=seg.ack,
        rcv_nxt=seg.seq, rcv_wup=seg.seq, rcv_wnd=rcv_wnd, mss=mss,
        rcv_mss=mss - TS_ALIGNED if ts_ok else mss, rcv_wscale=rcv_wscale, snd_wscale=snd_wscale or 0,
        ts_ok=ts_ok, ts_offset=ts_offset, ts_recent=opts.tsval or 0, wscale_ok=snd_wscale is not None,
        sack_ok=sack_ok, ecn_ok=ecn_ok,
        ip_id=kernel.entropy.socket_ip_id(),
    )
    return child_socket(listener, seg, TcpState.ESTABLISHED, tcb)
