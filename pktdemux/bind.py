"""socket(), bind(), listen() and close() of the emulated kernel (spec §7).

Each call checks what Linux checks, in Linux's order, and raises
:class:`~pktdemux.errors.SocketError` with the errno Linux returns.  A
successful call updates the socket and registers it: ``kernel.sockets`` (every
socket holding a port, in bind order), ``kernel.udp`` for bound UDP sockets,
``kernel.tcp`` for listeners and connections.  connect() lives in
:mod:`pktdemux.connect`, port choice in :mod:`pktdemux.ports`, the conflict
rules in :mod:`pktdemux.conflicts`.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import TYPE_CHECKING

from .addrtype import ipv4_bindable, ipv6_bindable, is_v4_mapped
from .conflicts import explain, port_owners, tcp_bind_conflict, udp_port_in_use
from .errors import SocketError
from .ports import tcp_bind_port, udp_bind_port
from .sockets import Proto, Socket, TcpState

if TYPE_CHECKING:
    from .kernel import Kernel

MAX_PORT = 65535


def new_socket(
    kernel: Kernel,
    proto: Proto | str,
    family: int,
    *,
    reuseaddr: bool = False,
    reuseport: bool = False,
    v6only: bool | None = None,
    device: str | None = None,
    uid: int = 0,
    name: str = "",
    process: str | None = None,
    pid: int | None = None,
) -> Socket:
    """socket() then the setsockopt() calls for the options given; unbound, not registered.

    Args:
        proto: TCP or UDP (``"tcp"``/``"udp"`` accepted).
        family: 4 (AF_INET) or 6 (AF_INET6).
        v6only: IPV6_V6ONLY; None leaves the default, ``net.ipv6.bindv6only``.
        device: SO_BINDTODEVICE; must name one of the kernel's interfaces.
        uid: owner; anything but 0 lacks CAP_NET_BIND_SERVICE.

    Raises:
        SocketError: EAFNOSUPPORT for another family, EPROTONOSUPPORT for
            another protocol (net/socket.c:__sock_create); ENOPROTOOPT for
            IPV6_V6ONLY on an AF_INET socket (net/ipv4/ip_sockglue.c); ENODEV
            for an unknown device (net/core/sock.c:sock_bindtoindex).
    """
    if family not in (4, 6):
        raise SocketError(errno.EAFNOSUPPORT, f"address family {family}", rule="net/socket.c:__sock_create")
    try:
        proto = Proto[proto.upper()] if isinstance(proto, str) else Proto(proto)
    except (KeyError, ValueError):
        raise SocketError(errno.EPROTONOSUPPORT, f"protocol {proto!r}", rule="net/ipv4/af_inet.c:inet_create") from None
    if family == 4 and v6only is not None:
        raise SocketError(errno.ENOPROTOOPT, "IPV6_V6ONLY on an AF_INET socket", rule="IPPROTO_IPV6 options")
    if device is not None and device not in {i.name for i in kernel.interfaces}:
        raise SocketError(errno.ENODEV, f"SO_BINDTODEVICE {device}: no such device",
                          rule="net/core/sock.c:sock_bindtoindex")
    if family == 6 and v6only is None:
        v6only = bool(kernel.sysctls.int("net.ipv6.bindv6only"))
    return Socket(
        proto=proto, family=family, local_addr=bytes(4 if family == 4 else 16),
        name=name, v6only=bool(v6only), reuseaddr=reuseaddr, reuseport=reuseport,
        device=device, uid=uid, process=process, pid=pid,
    )


def packed_address(addr: str | bytes) -> bytes:
    """The packed form of ``addr``: text (``"10.0.0.1"``, ``"::"``) or 4/16 bytes as is.

    Raises:
        ValueError: for text that is not an IP address, or bytes of another length.
    """
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"an address is 4 or 16 bytes, not {len(addr)}")
        return addr
    return ipaddress.ip_address(addr).packed


def bind(kernel: Kernel, sock: Socket, addr: str | bytes, port: int) -> None:
    """bind(): give ``sock`` its local address and port (port 0 picks one, spec §8.2).

    Checks, in the kernel's order (spec §7.1): for AF_INET
    (net/ipv4/af_inet.c:__inet_bind) EAFNOSUPPORT, EADDRNOTAVAIL, EACCES,
    EINVAL (already bound), EADDRINUSE; for AF_INET6
    (net/ipv6/af_inet6.c:__inet6_bind) EAFNOSUPPORT, EINVAL (multicast on
    TCP), EACCES, EINVAL (already bound), EINVAL (v4-mapped on V6ONLY, or
    link-local without a device), EADDRNOTAVAIL, EADDRINUSE.  Binding a
    specific native IPv6 address sets V6ONLY, as Linux does.

    Raises:
        SocketError: as above.
        ValueError: for a malformed address or a port outside 0..65535.
    """
    packed = packed_address(addr)
    if not 0 <= port <= MAX_PORT:
        raise ValueError(f"port {port} outside 0..{MAX_PORT}")
    if sock.family == 4:
        _check_bind4(kernel, sock, packed, port)
    else:
        _check_bind6(kernel, sock, packed, port)
    saved = sock.local_addr, sock.v6only
    sock.local_addr = packed
    if sock.family == 6 and any(packed) and not is_v4_mapped(packed):
        sock.v6only = True
    try:
        sock.local_port = get_port(kernel, sock, port)
    except SocketError:
        sock.local_addr, sock.v6only = saved
        raise
    hash_bound(kernel, sock)


def _check_bind4(kernel: Kernel, sock: Socket, addr: bytes, port: int) -> None:
    if len(addr) != 4:
        raise SocketError(errno.EAFNOSUPPORT, "an IPv6 address for an AF_INET socket",
                          rule="spec §7.1 (__inet_bind)")
    _check_v4_address(kernel, addr)
    _check_privileged(kernel, sock, port)
    _check_unbound(sock)


def _check_bind6(kernel: Kernel, sock: Socket, addr: bytes, port: int) -> None:
    if len(addr) != 16:
        raise SocketError(errno.EAFNOSUPPORT, "an IPv4 address for an AF_INET6 socket",
                          rule="spec §7.1 (__inet6_bind)")
    ip = ipaddress.IPv6Address(addr)
    if ip.is_multicast and sock.proto is Proto.TCP:
        raise SocketError(errno.EINVAL, "a multicast address for a TCP socket", rule="__inet6_bind")
    _check_privileged(kernel, sock, port)
    _check_unbound(sock)
    if is_v4_mapped(addr):
        if sock.v6only:
            raise SocketError(errno.EINVAL, "a v4-mapped address on a V6ONLY socket", rule="__inet6_bind")
        _check_v4_address(kernel, addr[12:])
    elif any(addr):
        if _needs_scope_id(addr) and sock.device is None:
            raise SocketError(errno.EINVAL, "a link-local address needs SO_BINDTODEVICE", rule="__inet6_bind")
        if not (ip.is_multicast or kernel.sysctls.int("net.ipv6.ip_nonlocal_bind")
                or ipv6_bindable(kernel.routing, addr, sock.device)):
            raise SocketError(errno.EADDRNOTAVAIL, f"{ip} is not an address of this host",
                              rule="spec §7.1 (ipv6_chk_addr)")


def _needs_scope_id(addr: bytes) -> bool:
    """Link-local unicast, or interface/link-local multicast (include/net/ipv6.h:__ipv6_addr_needs_scope_id)."""
    if addr[0] == 0xFF:
        return addr[1] & 0x0F in (1, 2)
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


def _check_v4_address(kernel: Kernel, addr: bytes) -> None:
    """Step 2 of spec §7.1: local, broadcast, multicast or 0.0.0.0, unless ip_nonlocal_bind."""
    if kernel.sysctls.int("net.ipv4.ip_nonlocal_bind"):
        return
    if not ipv4_bindable(kernel.routing, addr):
        raise SocketError(errno.EADDRNOTAVAIL, f"{ipaddress.IPv4Address(addr)} is not an address of this host",
                          rule="spec §7.1 (inet_addr_valid_or_nonlocal)")


def _check_privileged(kernel: Kernel, sock: Socket, port: int) -> None:
    """Step 3 of spec §7.1: ports below ip_unprivileged_port_start need uid 0."""
    start = kernel.sysctls.int("net.ipv4.ip_unprivileged_port_start")
    if port and port < start and sock.uid != 0:
        raise SocketError(errno.EACCES, f"port {port} < net.ipv4.ip_unprivileged_port_start {start} "
                          f"for uid {sock.uid}", rule="spec §7.1 (inet_port_requires_bind_service)")


def _check_unbound(sock: Socket) -> None:
    """Step 4 of spec §7.1: a socket binds once, and only while CLOSE."""
    if sock.local_port or sock.state is not TcpState.CLOSE:
        raise SocketError(errno.EINVAL, f"already bound to {sock.label}", rule="spec §7.1")


def get_port(kernel: Kernel, sock: Socket, port: int) -> int:
    """The protocol's get_port: ``port`` if no owner refuses it, or a free one for 0.

    Sources: net/ipv4/inet_connection_sock.c:inet_csk_get_port (TCP, spec
    §7.2), net/ipv4/udp.c:udp_lib_get_port (UDP, spec §7.3).

    Raises:
        SocketError: EADDRINUSE.
    """
    if sock.proto is Proto.TCP:
        if port == 0:
            return tcp_bind_port(kernel, sock)
        other = tcp_bind_conflict(sock, port_owners(kernel.sockets, Proto.TCP, port, sock))
        rule = "spec §7.2"
    else:
        if port == 0:
            return udp_bind_port(kernel, sock)
        other = udp_port_in_use(sock, port_owners(kernel.sockets, Proto.UDP, port, sock))
        rule = "spec §7.3"
    if other is not None:
        raise SocketError(errno.EADDRINUSE, explain(sock, other), rule=rule)
    return port


def hash_bound(kernel: Kernel, sock: Socket) -> None:
    """Record a socket that just got its port: ``kernel.sockets``, and the UDP table."""
    kernel.sockets.append(sock)
    if sock.proto is Proto.UDP:
        kernel.udp.insert(sock)


def listen(kernel: Kernel, sock: Socket, backlog: int) -> None:
    """listen(): make a TCP socket a LISTEN socket (spec §7.2 last rule).

    An unbound socket first gets an ephemeral port (odd first, spec §8.2).
    The port check runs again with the socket in LISTEN state, so of two
    SO_REUSEADDR sockets sharing an address only the first can listen.  A
    second listen() only changes the backlog.  The backlog is capped at
    ``net.core.somaxconn`` (net/socket.c:__sys_listen).

    Source: net/ipv4/af_inet.c:inet_listen, inet_connection_sock.c:inet_csk_listen_start.

    Raises:
        SocketError: EOPNOTSUPP for UDP; EINVAL for a connected socket;
            EADDRINUSE.
    """
    if sock.proto is not Proto.TCP:
        raise SocketError(errno.EOPNOTSUPP, "listen() on a UDP socket", rule="net/core/sock.c:sock_no_listen")
    if sock.state not in (TcpState.CLOSE, TcpState.LISTEN) or sock.remote_addr is not None:
        raise SocketError(errno.EINVAL, f"listen() on a {sock.state.name} socket", rule="inet_listen")
    somaxconn = kernel.sysctls.int("net.core.somaxconn")
    capped = somaxconn if backlog < 0 or backlog > somaxconn else backlog
    if sock.state is TcpState.LISTEN:
        sock.backlog = capped
        return
    autobind = sock.local_port == 0
    sock.state = TcpState.LISTEN
    try:
        port = get_port(kernel, sock, sock.local_port)
    except SocketError:
        sock.state = TcpState.CLOSE
        raise
    sock.backlog = capped
    if autobind:
        sock.local_port = port
        kernel.sockets.append(sock)
    kernel.tcp.listen(sock)


def close(kernel: Kernel, sock: Socket) -> None:
    """close(): the socket leaves every table at once (as with SO_LINGER 0).

    No FIN, no TIME_WAIT: a host-file socket table is a snapshot, and the TCP
    state machine (:mod:`pktdemux.tcp`) owns any orderly shutdown.  Closing
    twice is harmless.
    """
    if sock.proto is Proto.TCP:
        if sock.state is TcpState.LISTEN:
            kernel.tcp.unlisten(sock)
        elif sock.remote_addr is not None and sock.state is not TcpState.CLOSE:
            kernel.tcp.remove_established(sock)
    elif sock in kernel.udp:
        kernel.udp.remove(sock)
    if sock in kernel.sockets:
        kernel.sockets.remove(sock)
    kernel.ports.connect_bound.discard(sock)
    sock.state = TcpState.CLOSE
