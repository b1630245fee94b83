"""TCP socket lookup: the established table and the listener buckets (spec §2).

* Established table: exact 4-tuple → socket, holding connected sockets, SYN_RECV
  request sockets and TIME_WAIT entries (inet_hashtables.c:
  __inet_lookup_established).  A connection of a dual-stack AF_INET6 socket
  with IPv4 peers is keyed by the embedded IPv4 addresses.
* Listener buckets keyed by (address, port), searched exact address first,
  then the wildcard (__inet_lookup_listener); inside a bucket the walk starts
  at the head, a strictly higher compute_score wins, and an SO_REUSEPORT
  socket that wins returns a member of its group at once
  (inet_lhash2_lookup, spec §2.2–2.3).

IPv4 buckets are keyed by :attr:`Socket.rcv_saddr4`, so ``[::]:p`` sits with
``0.0.0.0:p`` and ``[::ffff:a.b.c.d]:p`` with ``a.b.c.d:p`` (spec §2.2 "bucket
identity"); IPv6 buckets hold AF_INET6 sockets only.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .reuseport import ReuseportGroup, same_group
from .sockets import V4_ANY, V4_MAPPED_PREFIX, V6_ANY, Socket, TcpState
from .tcp_tcb import ListenQueue
from .wire import format_endpoint

if TYPE_CHECKING:
    from .entropy import Entropy
    from .packet import IpPacket

PROTO_TCP = 6

EstablishedKey = tuple[bytes, int, bytes, int]


def _v4(addr: bytes) -> bytes:
    """The IPv4 address embedded in a v4-mapped IPv6 address, else ``addr``."""
    if len(addr) == 16 and addr.startswith(V4_MAPPED_PREFIX):
        return addr[12:]
    return addr


def established_key(sock: Socket) -> EstablishedKey:
    """(local address, local port, remote address, remote port) of a connection.

    Raises:
        ValueError: if ``sock`` has no peer.
    """
    if sock.remote_addr is None:
        raise ValueError(f"{sock!r} is not connected")
    return (_v4(sock.local_addr), sock.local_port, _v4(sock.remote_addr), sock.remote_port)


class TcpTable:
    """Every TCP socket the receive path can find."""

    __slots__ = ("_expiry", "_groups", "_listen4", "_listen6", "_order", "_owned", "bound", "established")

    def __init__(self, bound: list[Socket] | None = None) -> None:
        #: 4-tuple → socket (connections, requests, TIME_WAIT)
        self.established: dict[EstablishedKey, Socket] = {}
        #: the kernel's bound sockets (``Kernel.sockets``), where :meth:`own`
        #: registers connections the receive path makes; None: not tracked
        self.bound = bound
        #: sockets registered by :meth:`own`, which leave ``bound`` with the table
        self._owned: set[Socket] = set()
        self._listen4: dict[tuple[bytes, int], list[Socket]] = {}
        self._listen6: dict[tuple[bytes, int], list[Socket]] = {}
        self._groups: dict[Socket, ReuseportGroup] = {}
        #: heap of (deadline, insertion number, socket); stale entries are skipped
        self._expiry: list[tuple[float, int, Socket]] = []
        self._order = itertools.count()

    # -- registration -----------------------------------------------------

    def listen(self, sock: Socket) -> None:
        """Hash a listening socket into its bucket(s) (inet_hashtables.c:__inet_hash).

        Head insertion, except AF_INET6 SO_REUSEPORT sockets at the tail; joins
        the SO_REUSEPORT group of an identical listener in the bucket
        (inet_reuseport_add_sock).  Sets the state to LISTEN and gives the
        socket its queues (``sock.tcb``).
        """
        sock.state = TcpState.LISTEN
        if not isinstance(sock.tcb, ListenQueue):
            sock.tcb = ListenQueue()
        for table, addr in self._buckets_of(sock):
            bucket = table.setdefault((addr, sock.local_port), [])
            if sock in bucket:
                continue
            if sock.reuseport and sock not in self._groups:
                self._join_group(sock, bucket)
            if sock.family == 6 and sock.reuseport:
                bucket.append(sock)
            else:
                bucket.insert(0, sock)

    def unlisten(self, sock: Socket) -> None:
        """Unhash a listener; its pending requests go with it (inet_csk_listen_stop)."""
        for table, addr in self._buckets_of(sock):
            bucket = table.get((addr, sock.local_port))
            if bucket and sock in bucket:
                bucket.remove(sock)
                if not bucket:
                    del table[(addr, sock.local_port)]
        group = self._groups.pop(sock, None)
        if group is not None:
            group.remove(sock)
        orphans = [s for s in self.established.values() if s.parent is sock and s.state is TcpState.SYN_RECV]
        for req in orphans:
            self.remove_established(req)

    def insert_established(self, sock: Socket) -> None:
        """Add a connection, request or TIME_WAIT entry under its 4-tuple.

        A request or TIME_WAIT entry whose ``tcb.deadline`` is set is also
        queued for expiry (:meth:`expire`).

        Raises:
            ValueError: if ``sock`` has no peer.
        """
        self.established[established_key(sock)] = sock
        if getattr(sock.tcb, "deadline", 0.0):
            self.schedule(sock)

    def schedule(self, sock: Socket) -> None:
        """Queue ``sock`` for expiry at its (new) ``tcb.deadline``."""
        heapq.heappush(self._expiry, (sock.tcb.deadline, next(self._order), sock))

    def own(self, sock: Socket) -> None:
        """Put a connection the kernel made (an accepted child, a connect()
        seen in a capture or made with its handshake) into the bind bucket,
        ``bound``, until it leaves the established table: as a connection
        and then as a TIME_WAIT entry it holds its port for bind() and its
        4-tuple for connect() (__inet_inherit_port, inet_twsk_hashdance;
        spec §7.2).  A socket already in ``bound`` (a host-file connection
        the application closed) stays there once, and leaves with the table."""
        if self.bound is not None and sock not in self._owned:
            self._owned.add(sock)
            if sock not in self.bound:
                self.bound.append(sock)

    def remove_established(self, sock: Socket) -> None:
        """Remove ``sock`` from the established table (no error if absent).

        Removing a pending request frees its slot in the listener's SYN queue;
        a connection's retransmission timer stops (tcp_done:
        tcp_clear_xmit_timers); a socket registered by :meth:`own` leaves
        the bind bucket (inet_put_port, inet_twsk_bind_unhash).
        """
        if sock.remote_addr is None:
            return
        key = established_key(sock)
        if self.established.get(key) is sock:
            del self.established[key]
            if sock.state is TcpState.SYN_RECV:
                release_request_slot(sock)
            timer = getattr(sock.tcb, "rtx_timer", None)
            if timer is not None:
                timer.cancel()
                sock.tcb.rtx_timer = None
        if sock in self._owned:
            self._owned.discard(sock)
            if self.bound is not None and sock in self.bound:
                self.bound.remove(sock)

    def expire(self, now: float) -> list[Socket]:
        """Drop requests and TIME_WAIT entries whose deadline passed; return them."""
        expired = []
        queue = self._expiry
        while queue and queue[0][0] <= now:
            scheduled, _, sock = heapq.heappop(queue)
            deadline = getattr(sock.tcb, "deadline", 0.0)
            if deadline != scheduled:
                continue  # rescheduled (a later entry exists) or no longer timed
            if sock.state in (TcpState.SYN_RECV, TcpState.TIME_WAIT, TcpState.FIN_WAIT2):
                self.remove_established(sock)
                expired.append(sock)
        return expired

    # -- lookup -------------------------------------------------------------

    def lookup_established(self, pkt: IpPacket, sport: int, dport: int) -> Socket | None:
        """The connection for this 4-tuple, or None (__inet_lookup_established).

        A socket bound to a device matches only packets from that device.
        """
        sock = self.established.get((pkt.dst, dport, pkt.src, sport))
        if sock is not None and sock.device is not None and sock.device != pkt.device:
            return None
        return sock

    def lookup_listener(self, entropy: Entropy, pkt: IpPacket, sport: int, dport: int,
                        trace: list[str] | None = None) -> Socket | None:
        """The listener that gets this segment, or None (__inet_lookup_listener).

        Exact-address bucket first, then the wildcard bucket; SO_REUSEPORT
        members are picked with ``entropy.reuseport_hash`` (spec §2.3).
        With ``trace`` (a list), one step per bucket probed is appended.
        """
        if pkt.version == 4:
            table, wildcard = self._listen4, V4_ANY
        else:
            table, wildcard = self._listen6, V6_ANY
        for addr in (pkt.dst, wildcard):
            bucket = table.get((addr, dport))
            if bucket:
                found = self._best_in_bucket(bucket, entropy, pkt, sport, dport, trace)
                if found is not None:
                    return found
            elif trace is not None:
                trace.append(f"TCP lookup: listener bucket {format_endpoint(addr, dport)} empty "
                             "(inet_lhash2_lookup; spec §2.2)")
            if addr == wildcard:
                break
        return None

    def listeners(self) -> Iterator[Socket]:
        """Every listening socket once (IPv4 buckets first)."""
        seen: set[int] = set()
        for table in (self._listen4, self._listen6):
            for bucket in table.values():
                for sock in bucket:
                    if id(sock) not in seen:
                        seen.add(id(sock))
                        yield sock

    def group_of(self, sock: Socket) -> ReuseportGroup | None:
        """The SO_REUSEPORT group a listener belongs to, if any."""
        return self._groups.get(sock)

    # -- internals ------------------------------------------------------------

    def _best_in_bucket(
        self, bucket: list[Socket], entropy: Entropy, pkt: IpPacket, sport: int, dport: int,
        trace: list[str] | None = None,
    ) -> Socket | None:
        """inet_lhash2_lookup over one bucket with compute_score (spec §2.2)."""
        best = None
        best_score = 0
        device = pkt.device
        ipv4 = pkt.version == 4
        for sock in bucket:
            bound = sock.device
            if bound is not None and bound != device:
                if trace is not None:
                    trace.append(f"TCP lookup: '{sock.display_name}' bound to {bound}, packet on {device}: "
                                 "skipped (compute_score)")
                continue
            score = 1 + (bound is not None) + (ipv4 and sock.family == 4)
            if trace is not None:
                trace.append(f"TCP lookup: bucket {format_endpoint(sock.local_addr, dport)} -> "
                             f"'{sock.display_name}' score {score} (compute_score; spec §2.2)")
            if score <= best_score:
                continue
            if sock.reuseport:
                group = self._groups.get(sock)
                if group is not None:
                    member = group.select(entropy.reuseport_hash(pkt.src, sport, pkt.dst, dport, PROTO_TCP))
                    if trace is not None:
                        trace.append(f"TCP lookup: SO_REUSEPORT group of {len(group)} -> '{member.display_name}' "
                                     "picked by the flow hash, early return (reuseport_select_sock; spec §2.3)")
                    return member
            best, best_score = sock, score
        if trace is not None and best is not None:
            trace.append(f"TCP lookup: listener '{best.display_name}' wins with score {best_score} "
                         "(inet_lhash2_lookup; spec §2.2)")
        return best

    def _buckets_of(self, sock: Socket) -> list[tuple[dict[tuple[bytes, int], list[Socket]], bytes]]:
        buckets = []
        addr4 = sock.rcv_saddr4
        if addr4 is not None:
            buckets.append((self._listen4, addr4))
        if sock.family == 6:
            buckets.append((self._listen6, sock.local_addr))
        return buckets

    def _join_group(self, sock: Socket, bucket: list[Socket]) -> None:
        for other in bucket:
            if other.state is TcpState.LISTEN and same_group(other, sock):
                group = self._groups[other]
                break
        else:
            group = ReuseportGroup()
        group.add(sock)
        self._groups[sock] = group


def release_request_slot(req: Socket) -> None:
    """Count a request out of its listener's SYN queue (inet_csk_reqsk_queue_removed)
    and stop its SYN-ACK timer (reqsk_queue_unlink: del_timer)."""
    timer = getattr(req.tcb, "synack_timer", None)
    if timer is not None:
        timer.cancel()
        req.tcb.synack_timer = None
    queue = req.parent.tcb if req.parent is not None else None
    if isinstance(queue, ListenQueue) and queue.requests > 0:
        queue.requests -= 1
