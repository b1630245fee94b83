"""UDP socket lookup tables (net/ipv4/udp.c, net/ipv6/udp.c; spec §4.2, §4.3).

Two views of the bound UDP sockets, as in the kernel's udp_table:

* the secondary buckets keyed by (bound address, port) — hash2 — walked for
  unicast lookups: first the packet's destination address, then the
  wildcard.  0.0.0.0 and ``::`` share the wildcard bucket and a v4-mapped
  IPv6 bind shares the IPv4 address's bucket, because the kernel's
  ipv4_portaddr_hash and ipv6_portaddr_hash agree on them;
* the primary chain per port, walked for broadcast and multicast fan-out.

New sockets go to the head of both (udp_lib_get_port), except AF_INET6
SO_REUSEPORT sockets, which go to the tail of their secondary bucket.
SO_REUSEPORT groups are :class:`~pktdemux.reuseport.ReuseportGroup`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .reuseport import ReuseportGroup, same_group
from .sockets import V4_MAPPED_PREFIX, Socket, TcpState
from .wire import format_endpoint

ANY = b""  # the wildcard bucket's key

_ESTABLISHED = TcpState.ESTABLISHED


def bucket_key(addr: bytes) -> bytes:
    """The secondary-bucket key of a bound address: b"" for 0.0.0.0 and ``::``,
    the IPv4 address for a v4-mapped one, else the address itself."""
    if not any(addr):
        return ANY
    if len(addr) == 16 and addr.startswith(V4_MAPPED_PREFIX):
        return addr[12:]
    return addr


def peer_addr4(sock: Socket) -> bytes | None:
    """The connected peer as an IPv4 address (inet_daddr), None when the peer
    is a native IPv6 address (which never matches an IPv4 datagram)."""
    peer = sock.remote_addr
    if peer is None or len(peer) == 4:
        return peer
    return peer[12:] if peer.startswith(V4_MAPPED_PREFIX) else None


class UdpTable:
    """The bound UDP sockets of one host, with the kernel's lookup order."""

    __slots__ = ("_buckets", "_groups", "_keys", "_ports")

    def __init__(self) -> None:
        self._buckets: dict[tuple[bytes, int], list[Socket]] = {}
        self._ports: dict[int, list[Socket]] = {}
        self._keys: dict[Socket, tuple[bytes, int]] = {}
        self._groups: dict[Socket, ReuseportGroup] = {}

    # -- registration --------------------------------------------------------

    def insert(self, sock: Socket) -> None:
        """Hash a bound socket (udp_lib_get_port): head of its buckets; join
        the SO_REUSEPORT group of a compatible socket already bound there
        (udp_reuseport_add_sock) or start one.

        Raises:
            ValueError: if ``sock`` is already in the table.
        """
        if sock in self._keys:
            raise ValueError(f"{sock!r} is already hashed")
        key = (bucket_key(sock.local_addr), sock.local_port)
        bucket = self._buckets.setdefault(key, [])
        if sock.reuseport:
            mate = next((s for s in bucket if s in self._groups and same_group(s, sock)), None)
            group = self._groups[mate] if mate is not None else ReuseportGroup()
            group.add(sock)
            self._groups[sock] = group
        if sock.reuseport and sock.family == 6:
            bucket.append(sock)
        else:
            bucket.insert(0, sock)
        self._ports.setdefault(sock.local_port, []).insert(0, sock)
        self._keys[sock] = key

    def remove(self, sock: Socket) -> None:
        """Unhash a socket (udp_lib_unhash), leaving its SO_REUSEPORT group.

        Raises:
            KeyError: if ``sock`` is not in the table.
        """
        key = self._keys.pop(sock)
        bucket = self._buckets[key]
        bucket.remove(sock)
        if not bucket:
            del self._buckets[key]
        chain = self._ports[key[1]]
        chain.remove(sock)
        if not chain:
            del self._ports[key[1]]
        group = self._groups.pop(sock, None)
        if group is not None:
            group.remove(sock)

    def rehash(self, sock: Socket) -> None:
        """Move a socket whose bound address changed (connect() on a wildcard
        bind, udp_lib_rehash) to the head of its new bucket; it leaves its
        SO_REUSEPORT group.

        Raises:
            KeyError: if ``sock`` is not in the table.
        """
        old = self._keys[sock]
        group = self._groups.pop(sock, None)
        if group is not None:
            group.remove(sock)
        new = (bucket_key(sock.local_addr), sock.local_port)
        if new != old:
            self._buckets[old].remove(sock)
            if not self._buckets[old]:
                del self._buckets[old]
            self._buckets.setdefault(new, []).insert(0, sock)
            self._keys[sock] = new

    def group_of(self, sock: Socket) -> ReuseportGroup | None:
        """The SO_REUSEPORT group ``sock`` belongs to, if any."""
        return self._groups.get(sock)

    def on_port(self, port: int) -> list[Socket]:
        """The sockets bound to ``port``, primary-chain order (most recent first)."""
        return list(self._ports.get(port, ()))

    def __iter__(self) -> Iterator[Socket]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, sock: object) -> bool:
        return sock in self._keys

    # -- unicast lookup ------------------------------------------------------

    def lookup4(self, saddr: bytes, sport: int, daddr: bytes, dport: int, device: str,
                flow_hash: Callable[[], int], trace: list[str] | None = None) -> Socket | None:
        """The socket for an IPv4 unicast datagram (__udp4_lib_lookup, spec §4.2).

        Args:
            saddr, sport, daddr, dport: the datagram's 4-tuple (packed
                addresses, host-order ports).
            device: ingress device.
            flow_hash: returns the 32-bit SO_REUSEPORT flow hash (udp_ehashfn);
                called only when a group is consulted.
            trace: when a list, one line per bucket probed, candidate
                scored and pick made is appended (Kernel.trace).
        """
        def score(sk: Socket, want: bytes) -> int:
            if sk.rcv_saddr4 != want:
                return -1
            points = 2 if sk.family == 4 else 1
            if sk.remote_addr is not None:
                if peer_addr4(sk) != saddr:
                    return -1
                points += 4
            if sk.remote_port:
                if sk.remote_port != sport:
                    return -1
                points += 4
            if sk.device is not None:
                if sk.device != device:
                    return -1
                points += 4
            return points

        bucket = self._buckets.get((daddr, dport))
        if trace is not None:
            _trace_bucket(trace, daddr, dport, bucket)
        if bucket:
            result = self._lookup2(bucket, lambda sk: score(sk, daddr), 0, flow_hash, trace)
            if result is not None:
                return result
        bucket = self._buckets.get((ANY, dport))
        if trace is not None:
            _trace_bucket(trace, bytes(4), dport, bucket)
        if bucket:
            return self._lookup2(bucket, lambda sk: score(sk, bytes(4)), 0, flow_hash, trace)
        return None

    def lookup6(self, saddr: bytes, sport: int, daddr: bytes, dport: int, device: str,
                flow_hash: Callable[[], int], trace: list[str] | None = None) -> Socket | None:
        """The socket for an IPv6 unicast datagram (__udp6_lib_lookup; IPv6
        compute_score: AF_INET6 only, +1 each for connected port, connected
        address, bound device).  Arguments as :meth:`lookup4`."""
        def score(sk: Socket, want: bytes) -> int:
            if sk.family != 6 or sk.local_addr != want:
                return -1
            points = 0
            if sk.remote_port:
                if sk.remote_port != sport:
                    return -1
                points += 1
            if sk.remote_addr is not None and any(sk.remote_addr):
                if sk.remote_addr != saddr:
                    return -1
                points += 1
            if sk.device is not None:
                if sk.device != device:
                    return -1
                points += 1
            return points

        bucket = self._buckets.get((bucket_key(daddr), dport))
        if trace is not None:
            _trace_bucket(trace, daddr, dport, bucket)
        if bucket:
            result = self._lookup2(bucket, lambda sk: score(sk, daddr), -1, flow_hash, trace)
            if result is not None:
                return result
        bucket = self._buckets.get((ANY, dport))
        if trace is not None:
            _trace_bucket(trace, bytes(16), dport, bucket)
        if bucket:
            return self._lookup2(bucket, lambda sk: score(sk, bytes(16)), -1, flow_hash, trace)
        return None

    def _lookup2(self, bucket: list[Socket], score: Callable[[Socket], int], badness: int,
                 flow_hash: Callable[[], int], trace: list[str] | None = None) -> Socket | None:
        """udp4_lib_lookup2 / udp6_lib_lookup2: the best strictly-higher score
        from the head; an unconnected SO_REUSEPORT winner returns its group's
        pick at once unless the group has connected members (then scoring
        goes on with the pick as the current result)."""
        result = None
        for sk in bucket:
            points = score(sk)
            if trace is not None:
                trace.append(f"candidate {sk.display_name}: "
                             f"{'no match' if points < 0 else f'score {points}'}"
                             f"{'' if points < 0 or points > badness else ', not above the best'} "
                             "(compute_score)")
            if points <= badness:
                continue
            badness = points
            group = self._groups.get(sk) if sk.reuseport else None
            if sk.state is _ESTABLISHED or group is None:
                result = sk
                continue
            pick = group.select(flow_hash())
            if trace is not None:
                trace.append(f"SO_REUSEPORT group of {len(group.members)}: the flow hash picks "
                             f"{pick.display_name} (reuseport_select_sock)")
            if not any(m.state is _ESTABLISHED for m in group.members):
                return pick
            result = pick
        if trace is not None and result is not None:
            trace.append(f"winner: {result.display_name} (udp_lib_lookup2)")
        return result

    # -- broadcast / multicast --------------------------------------------

    def multicast4(self, saddr: bytes, sport: int, daddr: bytes, dport: int, device: str,
                   multicast: bool) -> list[Socket]:
        """Every socket that gets a copy of an IPv4 broadcast/multicast datagram,
        in delivery order (__udp4_lib_mcast_deliver, __udp_is_mcast_sock).

        The walk is the port's primary chain; the kernel gives clones to the
        later matches first and the original to the first match last.
        """
        hits = []
        for sk in self._ports.get(dport, ()):
            rcv = sk.rcv_saddr4
            if rcv is None or (any(rcv) and rcv != daddr):
                continue
            if sk.remote_addr is not None and peer_addr4(sk) != saddr:
                continue
            if sk.remote_port and sk.remote_port != sport:
                continue
            if sk.device is not None and sk.device != device:
                continue
            if multicast and daddr not in sk.mc_groups and not sk.multicast_all:
                continue  # ip_mc_sf_allow
            hits.append(sk)
        return hits[1:] + hits[:1]

    def multicast6(self, saddr: bytes, sport: int, daddr: bytes, dport: int, device: str,
                   zero_checksum: bool) -> list[Socket]:
        """Every socket that gets a copy of an IPv6 multicast datagram, in
        delivery order (__udp6_lib_mcast_deliver, __udp_v6_is_mcast_sock);
        with a zero checksum only sockets with UDP_NO_CHECK6_RX."""
        hits = []
        for sk in self._ports.get(dport, ()):
            if sk.family != 6:
                continue
            if sk.remote_port and sk.remote_port != sport:
                continue
            if sk.remote_addr is not None and any(sk.remote_addr) and sk.remote_addr != saddr:
                continue
            if sk.device is not None and sk.device != device:
                continue
            if any(sk.local_addr) and sk.local_addr != daddr:
                continue
            if daddr not in sk.mc_groups and not sk.multicast_all:
                continue  # inet6_mc_check
            if zero_checksum and not sk.no_check6_rx:
                continue
            hits.append(sk)
        return hits[1:] + hits[:1]


def _trace_bucket(trace: list[str], addr: bytes, port: int, bucket: list[Socket] | None) -> None:
    where = format_endpoint(addr, port)
    count = len(bucket) if bucket else 0
    trace.append(f"secondary hash bucket {where}: {count} socket(s) (udp_lib_lookup2, hash2; spec §4.2)")
