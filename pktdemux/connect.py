"""connect() of the emulated kernel: a TCP connection or a connected UDP socket.

A TCP connect() here yields an ESTABLISHED connection at once (a host file
describes a snapshot; the handshake itself is not replayed) with unknown
sequence numbers (``sock.tcb`` stays None; :mod:`pktdemux.tcp` learns them
from the first segment).  With ``handshake=True`` it is the active open
instead: the socket is SYN_SENT and its SYN is sent
(:func:`pktdemux.tcp_synsent.start`).  A UDP connect() sets the peer.  In both cases a
wildcard bound address becomes the source address routing picks for the
peer (spec §4.2 "connect() changes the bound address"), and an unbound
socket gets an ephemeral port (spec §8).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .addrtype import (
    connect_source,
    is_broadcast,
    is_broadcast_or_multicast,
    is_v4_mapped,
    v4_mapped,
)
from .bind import hash_bound, packed_address
from .errors import SocketError
from .ports import four_tuple_in_use, tcp_connect_port, udp_bind_port
from .sockets import Proto, Socket, TcpState
from .wire import format_addr, format_endpoint

if TYPE_CHECKING:
    from .kernel import Kernel


def connect(kernel: Kernel, sock: Socket, addr: str | bytes, port: int, *,
            handshake: bool = False) -> tuple[bytes, ...]:
    """connect() ``sock`` to ``addr``:``port``.

    For an AF_INET6 socket an IPv4 ``addr`` is taken as its v4-mapped form
    (a dual-stack socket talking IPv4).

    Returns:
        The packets the kernel sends: with ``handshake`` (TCP), the SYN;
        else none.

    Raises:
        SocketError: EISCONN (TCP socket already connected or listening),
            EAFNOSUPPORT (IPv6 peer for an AF_INET socket), ENETUNREACH (IPv4
            peer for a V6ONLY socket, no route, TCP to a broadcast or multicast
            address), EACCES (UDP to a broadcast address without
            SO_BROADCAST), EADDRNOTAVAIL (TCP: no port left for this
            destination, or the 4-tuple is taken), EAGAIN (UDP: no port to
            autobind).
        ValueError: for a malformed address or a port outside 0..65535.
    """
    dst = packed_address(addr)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} outside 0..65535")
    if sock.proto is Proto.TCP and sock.state is not TcpState.CLOSE:
        raise SocketError(errno.EISCONN, f"{sock.label} is {sock.state.name}", rule="inet_stream_connect")
    dst = _peer_in_family(sock, dst)
    src = _route(kernel, sock, dst)
    if sock.proto is Proto.TCP:
        return _connect_tcp(kernel, sock, src, dst, port, handshake)
    _connect_udp(kernel, sock, src, dst, port)
    return ()


def _peer_in_family(sock: Socket, dst: bytes) -> bytes:
    """Source: tcp_v4_connect / tcp_v6_connect, ip4_datagram_connect / __ip6_datagram_connect."""
    if sock.family == 4:
        if len(dst) != 4:
            raise SocketError(errno.EAFNOSUPPORT, "an IPv6 peer for an AF_INET socket", rule="tcp_v4_connect")
        return dst
    if len(dst) == 4:
        dst = v4_mapped(dst)
    if is_v4_mapped(dst) and sock.v6only:
        raise SocketError(errno.ENETUNREACH, "an IPv4 peer for a V6ONLY socket", rule="tcp_v6_connect")
    return dst


def _route(kernel: Kernel, sock: Socket, dst: bytes) -> bytes:
    """The source address for ``dst``, after the route-type checks of the connect path."""
    dst4 = dst[12:] if is_v4_mapped(dst) else dst if len(dst) == 4 else None
    if dst4 is not None and any(dst4):
        if sock.proto is Proto.TCP and is_broadcast_or_multicast(kernel.routing, dst4):
            raise SocketError(errno.ENETUNREACH, "TCP to a broadcast or multicast address", rule="tcp_v4_connect")
        if sock.proto is Proto.UDP and is_broadcast(kernel.routing, dst4):
            raise SocketError(errno.EACCES, "UDP to a broadcast address without SO_BROADCAST",
                              rule="ip4_datagram_connect")
    src = connect_source(kernel.routing, dst, sock.device or kernel.default_device)
    if src is None:
        raise SocketError(errno.ENETUNREACH, f"no route to {format_addr(dst)}", rule="ip_route_connect")
    return src


def _connect_tcp(kernel: Kernel, sock: Socket, src: bytes, dst: bytes, dport: int,
                 handshake: bool) -> tuple[bytes, ...]:
    """Source: net/ipv4/tcp_ipv4.c:tcp_v4_connect, inet_hashtables.c:inet_hash_connect."""
    local = src if sock.is_wildcard else sock.local_addr
    if sock.local_port == 0:
        sport = tcp_connect_port(kernel, sock, local, dst, dport)
    else:
        sport = sock.local_port
        taken = four_tuple_in_use(kernel.sockets, local, sport, dst, dport)
        if taken is not None and taken is not sock:
            raise SocketError(errno.EADDRNOTAVAIL, f"{format_endpoint(local, sport)} → "
                              f"{format_endpoint(dst, dport)} is in use", rule="__inet_check_established")
    autobind = sock.local_port == 0
    sock.local_addr, sock.local_port = local, sport
    sock.remote_addr, sock.remote_port = dst, dport
    sock.state = TcpState.ESTABLISHED
    if autobind:
        kernel.sockets.append(sock)
        kernel.ports.connect_bound.add(sock)
    if not handshake:
        kernel.tcp.insert_established(sock)
        return ()
    from . import tcp_synsent

    packet = tcp_synsent.start(kernel, sock)
    kernel.tcp.insert_established(sock)
    if autobind:
        kernel.tcp.own(sock)  # the port goes with the connection (tcp_set_state CLOSE: inet_put_port)
    return (packet,)


def _connect_udp(kernel: Kernel, sock: Socket, src: bytes, dst: bytes, dport: int) -> None:
    """Source: net/ipv4/af_inet.c:inet_dgram_connect, net/ipv4/datagram.c:__ip4_datagram_connect."""
    if sock.local_port == 0:
        try:
            sock.local_port = udp_bind_port(kernel, sock)
        except SocketError as err:
            raise SocketError(errno.EAGAIN, err.detail, rule="inet_autobind") from None
        hash_bound(kernel, sock)
    sock.remote_addr, sock.remote_port = dst, dport
    sock.state = TcpState.ESTABLISHED
    if sock.is_wildcard:
        # pinned to the route's source: the socket moves to that bucket (udp_lib_rehash)
        sock.local_addr = src
        kernel.udp.rehash(sock)
