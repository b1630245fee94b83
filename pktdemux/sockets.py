"""Emulated kernel sockets: what a socket is bound to, its options and state.

Lookup structures live with their protocol (:mod:`pktdemux.tcp_table`,
:mod:`pktdemux.udp_table`); the bind()/listen() rules in :mod:`pktdemux.bind`.
Addresses are packed bytes in network order: 4 bytes for an AF_INET socket,
16 for an AF_INET6 one (a v4-mapped bind is stored as ``::ffff:a.b.c.d``).
Ports are host byte order; 0 means "not bound" / "not connected".
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

from .wire import format_addr

V4_ANY = bytes(4)
V6_ANY = bytes(16)
V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"

_socket_ids = itertools.count(1)


class Proto(enum.IntEnum):
    """Transport protocol, by IP protocol number."""

    TCP = 6
    UDP = 17

    def __str__(self) -> str:
        return self.name.lower()


class TcpState(enum.Enum):
    """TCP states as ``ss`` names them (include/net/tcp_states.h, RFC 9293 §3.3.2)."""

    CLOSE = "UNCONN"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECV = "SYN-RECV"
    ESTABLISHED = "ESTAB"
    FIN_WAIT1 = "FIN-WAIT-1"
    FIN_WAIT2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


@dataclass(eq=False, slots=True)
class Socket:
    """One socket of the emulated host.

    Identity is the object (``eq=False``): two sockets bound alike are still
    two sockets.  ``sid`` is a stable small integer for display.

    Attributes:
        proto: TCP or UDP.
        family: 4 (AF_INET) or 6 (AF_INET6).
        local_addr: bound address; all zeros for the wildcard.
        local_port: bound port, 0 when unbound.
        remote_addr: connected peer address, or None.
        remote_port: connected peer port, 0 when not connected.
        state: TCP state; for UDP, CLOSE (unconnected) or ESTABLISHED (connected).
        name: shown in every output; defaults to the host file's label.
        v6only: IPV6_V6ONLY (AF_INET6 only).
        reuseaddr, reuseport: SO_REUSEADDR, SO_REUSEPORT.
        device: SO_BINDTODEVICE device name, or None.
        uid: owner's user id (0 = root, CAP_NET_BIND_SERVICE).
        process, pid: owner as ``ss -p`` shows it, or None.
        backlog: listen() backlog for a LISTEN socket, else None.
        parent: for a connection accepted from a listener, that listener.
        tcb: TCP sequence state of a connected TCP socket (see :mod:`pktdemux.tcp`).
        inbox: delivered payloads, when the owner keeps them (REPL), else None.
        rx_packets, rx_bytes: what was delivered to this socket (datagrams or
            segments, and payload bytes).
        mc_groups: multicast groups (packed addresses) the socket joined
            (IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP).
        multicast_all: IP_MULTICAST_ALL / IPV6_MULTICAST_ALL (default on):
            receive every group some socket of the host joined.
        no_check6_rx: UDP_NO_CHECK6_RX: accept IPv6 UDP with checksum 0.
        so_error: the pending socket error (sk_err), an errno value or 0:
            e.g. ECONNREFUSED after a refused connect(); reading SO_ERROR
            clears it (:meth:`pktdemux.kernel.Kernel.so_error`).
    """

    proto: Proto
    family: int
    local_addr: bytes
    local_port: int = 0
    remote_addr: bytes | None = None
    remote_port: int = 0
    state: TcpState = TcpState.CLOSE
    name: str = ""
    v6only: bool = False
    reuseaddr: bool = False
    reuseport: bool = False
    device: str | None = None
    uid: int = 0
    process: str | None = None
    pid: int | None = None
    backlog: int | None = None
    parent: Socket | None = None
    tcb: Any = None
    inbox: list[bytes] | None = None
    rx_packets: int = 0
    rx_bytes: int = 0
    mc_groups: set[bytes] = field(default_factory=set)
    multicast_all: bool = True
    no_check6_rx: bool = False
    so_error: int = 0
    sid: int = field(default_factory=lambda: next(_socket_ids))

    @property
    def is_wildcard(self) -> bool:
        """Bound to 0.0.0.0 or ``::``."""
        return not any(self.local_addr)

    @property
    def rcv_saddr4(self) -> bytes | None:
        """The IPv4 address this socket receives on, for IPv4 lookups.

        The bound IPv4 address of an AF_INET socket; the embedded IPv4 of a
        v4-mapped AF_INET6 bind; 0.0.0.0 for a dual-stack ``::`` bind; None when
        the socket never receives IPv4 (V6ONLY, or a native IPv6 address).
        Source: include/net/inet_sock.h inet_rcv_saddr, ipv6_addr_v4mapped.
        """
        if self.family == 4:
            return self.local_addr
        if self.v6only:
            return None
        if self.local_addr == V6_ANY:
            return V4_ANY
        if self.local_addr.startswith(V4_MAPPED_PREFIX):
            return self.local_addr[12:]
        return None

    @property
    def display_name(self) -> str:
        """The name for output: the listener's name for an accepted connection."""
        if self.parent is not None:
            return self.parent.display_name
        return self.name or self.label

    @property
    def label(self) -> str:
        """``proto://address:port`` as in the host file."""
        addr = format_addr(self.local_addr)
        if self.family == 6:
            addr = f"[{addr}]"
        return f"{self.proto}://{addr}:{self.local_port}"

    def __repr__(self) -> str:
        peer = ""
        if self.remote_addr is not None:
            r = format_addr(self.remote_addr)
            peer = f" peer={'[' + r + ']' if self.family == 6 else r}:{self.remote_port}"
        return f"<Socket #{self.sid} {self.display_name!r} {self.label}{peer} {self.state.value}>"
