"""Ephemeral ports: which local port bind(port 0), listen() and connect() pick (spec §8).

Linux draws the start of each search at random; here the draws come from
:class:`~pktdemux.entropy.Entropy`, so a seeded kernel picks the same ports
every run.  What is reproduced exactly is the search itself: parity, the
SO_REUSEADDR half split, which ports count as taken, and when the range is
exhausted.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .addrtype import is_v4_mapped
from .conflicts import port_owners, tcp_bind_conflict, udp_port_in_use
from .errors import SocketError
from .sockets import Proto, Socket, TcpState
from .wire import format_endpoint

if TYPE_CHECKING:
    from .kernel import Kernel

#: RFC 6056 §3.3.4 algorithm 4 ("double hash"): the kernel's perturbation
#: slot values are 32-bit (net/ipv4/inet_hashtables.c table_perturb)
_SLOT_BITS = 32
#: after a successful connect() the slot moves on by at least 2·random(0..7)
_CONNECT_JITTER = 8


@dataclass(slots=True)
class PortState:
    """The kernel's ephemeral-port memory, one per :class:`~pktdemux.kernel.Kernel`.

    Attributes:
        perturb: per destination (local address, remote address, remote
            port), the RFC 6056 perturbation value that decides where the
            next connect() search starts (table_perturb in
            net/ipv4/inet_hashtables.c; Linux indexes it by a keyed hash).
        connect_bound: sockets whose port connect() chose.  A port held only
            by such sockets may serve other destinations; a port that any
            bind() holds may not (inet_bind_bucket fastreuse == -1).
    """

    perturb: dict[tuple[bytes, bytes, int], int] = field(default_factory=dict)
    connect_bound: set[Socket] = field(default_factory=set)


def local_port_range(kernel: Kernel) -> tuple[int, int]:
    """``net.ipv4.ip_local_port_range`` as (low, high), both inclusive."""
    low, high = kernel.sysctls.tuple("net.ipv4.ip_local_port_range")
    return low, high


def tcp_bind_port(kernel: Kernel, sock: Socket) -> int:
    """The port bind(port 0) or listen() on an unbound TCP socket picks.

    Source: net/ipv4/inet_connection_sock.c:inet_csk_find_open_port.  A random
    odd offset, then steps of 2 (odd ports first: connect() gets the even
    ones), then the other parity.  With SO_REUSEADDR the lower half of the
    range is searched before the upper half.  A port is free when no owner
    conflicts with the sharing exceptions switched off; with
    ``net.ipv4.ip_autobind_reuse`` a second round allows SO_REUSEADDR sharing.

    Raises:
        SocketError: EADDRINUSE when every port is taken (spec §8.2).
    """
    rounds = (False, True) if kernel.sysctls.int("net.ipv4.ip_autobind_reuse") else (False,)
    for relax in rounds:
        halves = (1, 2) if sock.reuseaddr else (0,)
        for half in halves:
            port = _scan_bind_range(kernel, sock, half, relax)
            if port is not None:
                return port
    low, high = local_port_range(kernel)
    raise SocketError(errno.EADDRINUSE, f"no free {sock.proto} port in {low}-{high}",
                      rule="spec §8.2")


def _scan_bind_range(kernel: Kernel, sock: Socket, half: int, relax: bool) -> int | None:
    low, high = local_port_range(kernel)
    high += 1
    if high - low >= 4 and half:
        middle = low + (((high - low) >> 2) << 1)
        low, high = (low, middle) if half == 1 else (middle, high)
    remaining = _even(high - low)
    offset = kernel.entropy.choice_range(remaining) | 1
    for start in (offset, offset - 1):
        for _, port in _walk(low, high, remaining, start, 2):
            owners = port_owners(kernel.sockets, Proto.TCP, port, sock)
            if not tcp_bind_conflict(sock, owners, relax=relax, reuseport_ok=False):
                return port
    return None


def tcp_connect_port(kernel: Kernel, sock: Socket, saddr: bytes, daddr: bytes, dport: int) -> int:
    """The port connect() on an unbound TCP socket picks for (saddr → daddr:dport).

    Source: net/ipv4/inet_hashtables.c:__inet_hash_connect.  The search starts
    at an even offset taken from this destination's perturbation value and
    walks the ports of ``low``'s parity in steps of 2, then the other parity.
    A port that bind() holds is skipped; a port held only by other
    connect()ed sockets is taken if no socket already has the same 4-tuple
    (__inet_check_established), so one port serves many destinations.  The
    perturbation value then moves on by max(steps, 2·random(0..7)) + 2.

    Raises:
        SocketError: EADDRNOTAVAIL when no port is left for this destination
            (spec §8.1).
    """
    low, high = local_port_range(kernel)
    high += 1
    remaining = _even(high - low)
    key = (saddr, daddr, dport)
    slot = kernel.ports.perturb.get(key)
    if slot is None:
        slot = kernel.entropy.choice_range(1 << _SLOT_BITS)
    offset = (slot % remaining) & ~1
    for start in (offset, offset + 1):
        for i, port in _walk(low, high, remaining, start, 2):
            if _connect_may_use(kernel, sock, port, saddr, daddr, dport):
                step = max(i, 2 * kernel.entropy.choice_range(_CONNECT_JITTER))
                kernel.ports.perturb[key] = (slot + step + 2) % (1 << _SLOT_BITS)
                return port
        if remaining <= 1:
            break
    raise SocketError(errno.EADDRNOTAVAIL,
                      f"no free port in {low}-{high - 1} towards {format_endpoint(daddr, dport)}",
                      rule="spec §8.1")


def _connect_may_use(kernel: Kernel, sock: Socket, port: int, saddr: bytes, daddr: bytes, dport: int) -> bool:
    owners = port_owners(kernel.sockets, Proto.TCP, port, sock)
    if any(s not in kernel.ports.connect_bound for s in owners):
        return False
    return not four_tuple_in_use(owners, saddr, port, daddr, dport)


def four_tuple_in_use(sockets: list[Socket], saddr: bytes, sport: int, daddr: bytes, dport: int) -> Socket | None:
    """The connected TCP socket (TIME_WAIT included) already using this 4-tuple, or None.

    Source: net/ipv4/inet_hashtables.c:__inet_check_established.  A v4-mapped
    address equals its IPv4 address.
    """
    want = (_plain(saddr), sport, _plain(daddr), dport)
    for s in sockets:
        if s.proto is not Proto.TCP or s.remote_addr is None or s.state is TcpState.CLOSE:
            continue
        if (_plain(s.local_addr), s.local_port, _plain(s.remote_addr), s.remote_port) == want:
            return s
    return None


def udp_bind_port(kernel: Kernel, sock: Socket) -> int:
    """The port an unbound UDP socket gets at bind(port 0) or its first connect().

    Source: net/ipv4/udp.c:udp_lib_get_port.  Linux starts at a random port
    and walks the hash table in odd strides, so any parity comes out; here
    the walk is sequential from a random start.  A port is taken only if an
    owner with an overlapping address refuses to share it (§7.3); there is no
    per-destination sharing for UDP.

    Raises:
        SocketError: EADDRINUSE when every port is taken (spec §8.3).
    """
    low, high = local_port_range(kernel)
    count = high - low + 1
    first = kernel.entropy.choice_range(count)
    for k in range(count):
        port = low + (first + k) % count
        if udp_port_in_use(sock, port_owners(kernel.sockets, Proto.UDP, port, sock)) is None:
            return port
    raise SocketError(errno.EADDRINUSE, f"no free udp port in {low}-{high}", rule="spec §8.3")


def _walk(low: int, high: int, remaining: int, offset: int, step: int):  # type: ignore[no-untyped-def]
    """(i, port) pairs of one parity pass: from low+offset by ``step``, wrapping below ``high``."""
    port = low + offset
    for i in range(0, remaining, step):
        if port >= high:
            port -= remaining
        yield i, port
        port += step


def _even(n: int) -> int:
    """The search length: the range size rounded down to even (when above 1)."""
    return n & ~1 if n > 1 else n


def _plain(addr: bytes) -> bytes:
    return addr[12:] if is_v4_mapped(addr) else addr
