"""When two sockets may not share a port: the bind-conflict rules (spec §7.2, §7.3).

Pure predicates over :class:`~pktdemux.sockets.Socket` values.  The callers
(:mod:`pktdemux.bind`, :mod:`pktdemux.ports`) pass the sockets that already
own the port, in bind order, and raise the errno.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .addrtype import is_v4_mapped
from .sockets import Proto, Socket, TcpState

V4_ANY = bytes(4)
V6_ANY = bytes(16)
#: the IPv4 receive address the kernel stores for a socket bound to a native
#: IPv6 address (include/net/ipv6.h LOOPBACK4_IPV6, 127.0.0.6): never 0.0.0.0
LOOPBACK4_IPV6 = bytes([127, 0, 0, 6])


def port_owners(sockets: Iterable[Socket], proto: Proto, port: int, exclude: Socket) -> list[Socket]:
    """The sockets of ``proto`` holding ``port``, in bind order, without ``exclude``.

    This is the kernel's bind bucket (struct inet_bind_bucket ``owners`` for
    TCP, the UDP primary hash slot): every bound socket, listener, connection
    and TIME_WAIT socket on that port.
    """
    return [s for s in sockets if s.proto is proto and s.local_port == port and s is not exclude]


def devices_overlap(a: Socket, b: Socket) -> bool:
    """Either socket is not bound to a device, or both to the same one (spec §7.2)."""
    return a.device is None or b.device is None or a.device == b.device


def addresses_overlap(sk: Socket, sk2: Socket) -> bool:
    """Whether the bound addresses collide, wildcards matching (spec §7.2).

    Source: net/ipv4/inet_connection_sock.c:inet_rcv_saddr_equal with
    match_wildcard=true, i.e. ipv6_rcv_saddr_equal / ipv4_rcv_saddr_equal.
    0.0.0.0 overlaps every IPv4 address and every dual-stack IPv6 socket on
    ``::`` or a v4-mapped address; ``::`` overlaps everything unless V6ONLY
    (then IPv6 only); a v4-mapped address counts as its IPv4 address.
    """
    if sk.family == 6:
        return _ipv6_rcv_saddr_equal(sk, sk2)
    return _ipv4_rcv_saddr_equal(_v4_rcv_saddr(sk), _v4_rcv_saddr(sk2), sk2.v6only)


def _v4_rcv_saddr(sock: Socket) -> bytes:
    """inet_rcv_saddr: the IPv4 address a socket is hashed under for IPv4."""
    if sock.family == 4:
        return sock.local_addr
    if sock.local_addr == V6_ANY:
        return V4_ANY
    if is_v4_mapped(sock.local_addr):
        return sock.local_addr[12:]
    return LOOPBACK4_IPV6


def _ipv4_rcv_saddr_equal(a: bytes, b: bytes, b_v6only: bool) -> bool:
    if b_v6only:
        return False
    return a == b or a == V4_ANY or b == V4_ANY


def _ipv6_rcv_saddr_equal(sk: Socket, sk2: Socket) -> bool:
    addr = sk.local_addr
    mapped = is_v4_mapped(addr)
    # an AF_INET sk2 compares as a v4-mapped address
    addr2 = sk2.local_addr if sk2.family == 6 else None
    mapped2 = addr2 is None or is_v4_mapped(addr2)
    if mapped and mapped2:
        return _ipv4_rcv_saddr_equal(_v4_rcv_saddr(sk), _v4_rcv_saddr(sk2), sk2.v6only)
    any1, any2 = addr == V6_ANY, addr2 == V6_ANY
    if any1 and any2:
        return True
    if any2 and not (sk2.v6only and mapped):
        return True
    if any1 and not (sk.v6only and mapped2):
        return True
    return addr2 is not None and addr == addr2


def tcp_pair_conflicts(sk: Socket, sk2: Socket, *, relax: bool, reuseport_ok: bool) -> bool:
    """Whether ``sk`` may not share the port with owner ``sk2``, before the address test.

    Source: net/ipv4/inet_connection_sock.c:inet_bind_conflict.  Devices must
    overlap; then the SO_REUSEADDR exception (both set, ``sk2`` not LISTEN)
    applies when ``relax``; otherwise the SO_REUSEPORT exception (both set,
    same uid or ``sk2`` in TIME_WAIT) applies when ``reuseport_ok``.  An
    explicit bind() or listen() passes relax=reuseport_ok=True; an ephemeral
    bind(0) passes both False, so neither exception helps it.
    """
    if not devices_overlap(sk, sk2):
        return False
    if sk.reuseaddr and sk2.reuseaddr and sk2.state is not TcpState.LISTEN:
        if not relax:
            return True
        return (not reuseport_ok and _reuseport_shares(sk, sk2))
    return not (reuseport_ok and _reuseport_shares(sk, sk2))


def _reuseport_shares(sk: Socket, sk2: Socket) -> bool:
    return sk.reuseport and sk2.reuseport and (sk2.state is TcpState.TIME_WAIT or sk.uid == sk2.uid)


def tcp_bind_conflict(
    sk: Socket, owners: Sequence[Socket], *, relax: bool = True, reuseport_ok: bool = True,
) -> Socket | None:
    """The first owner of the port that refuses ``sk``, or None (spec §7.2).

    Source: net/ipv4/inet_connection_sock.c:inet_csk_bind_conflict.
    """
    for sk2 in owners:
        if tcp_pair_conflicts(sk, sk2, relax=relax, reuseport_ok=reuseport_ok) and addresses_overlap(sk, sk2):
            return sk2
    return None


def udp_port_in_use(sk: Socket, owners: Sequence[Socket]) -> Socket | None:
    """The UDP owner that refuses ``sk``, or None (spec §7.3).

    Source: net/ipv4/udp.c:udp_lib_lport_inuse.  Owners that both set
    SO_REUSEADDR are skipped; every other owner with an overlapping device
    and address must share SO_REUSEPORT with ``sk`` under the same uid.  The
    kernel this project is checked against (6.18.44) refuses the bind when
    any one of them does not, whatever its place in the hash slot: a
    wildcard bind over a SO_REUSEPORT socket and a plain one fails.  The
    newest refusing owner is reported, as the slot is walked newest first.
    """
    for sk2 in reversed(owners):
        if sk.reuseaddr and sk2.reuseaddr:
            continue
        if not (devices_overlap(sk, sk2) and addresses_overlap(sk, sk2)):
            continue
        if sk.reuseport and sk2.reuseport and sk.uid == sk2.uid:
            continue
        return sk2
    return None


def explain(sk: Socket, sk2: Socket) -> str:
    """A short phrase on why ``sk2`` blocks ``sk``, e.g. ``overlaps "web" tcp://[::]:80 (dual-stack)``."""
    notes = []
    if sk.family != sk2.family:
        notes.append("dual-stack")
    if sk2.state is TcpState.TIME_WAIT:
        notes.append("TIME_WAIT")
    elif sk2.state is TcpState.LISTEN and sk.reuseaddr and sk2.reuseaddr:
        notes.append("listening: SO_REUSEADDR does not apply")
    if sk.reuseport and sk2.reuseport and sk.uid != sk2.uid:
        notes.append(f"SO_REUSEPORT needs the same uid, not {sk.uid} and {sk2.uid}")
    if sk.device != sk2.device and devices_overlap(sk, sk2):
        notes.append("one is not bound to a device")
    who = sk2.label if not sk2.name or sk2.name == sk2.label else f'"{sk2.name}" {sk2.label}'
    return f"overlaps {who}" + (f" ({', '.join(notes)})" if notes else "")
