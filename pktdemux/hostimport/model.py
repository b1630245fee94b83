"""What an importer saw of one socket, and the host file it leads to.

:class:`Observed` is one row of ``ss`` or /proc/net, or one socket inferred
from a capture, with what the source shows and nothing more (``None`` where
the source is silent).  :class:`Imported` is the result of an import: a
:class:`~pktdemux.hostfile.HostSpec` plus the comments that explain it, for
:mod:`pktdemux.hostimport.writer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hostfile import HostSpec
from ..sockets import Proto

#: Socket states by the names ``ss`` prints (iproute2 misc/ss.c, sstate_name);
#: /proc/net codes map onto them (:mod:`pktdemux.hostimport.procnet`).
LISTEN = "LISTEN"
ESTAB = "ESTAB"
UNCONN = "UNCONN"  # TCP_CLOSE: an unconnected UDP socket, a bound TCP socket that is not listening
SYN_SENT = "SYN-SENT"
SYN_RECV = "SYN-RECV"
TIME_WAIT = "TIME-WAIT"
#: TCP states of a connection an application still holds (or just closed).
CONNECTION_STATES = frozenset({ESTAB, "CLOSE-WAIT", "FIN-WAIT-1", "FIN-WAIT-2", "LAST-ACK", "CLOSING"})
SS_STATES = frozenset({LISTEN, UNCONN, SYN_SENT, SYN_RECV, TIME_WAIT, "UNKNOWN"}) | CONNECTION_STATES


@dataclass(slots=True)
class Observed:
    """One socket as a source shows it.

    Attributes:
        proto, family: TCP or UDP; 4 or 6 (the socket's family: a v4-mapped
            address belongs to an AF_INET6 socket).
        address, port: local address (packed, 4 or 16 bytes; zeros =
            wildcard) and port (host byte order).
        state: the ``ss`` name of the state (``LISTEN``, ``ESTAB``, ``UNCONN``...).
        peer: (packed address, port) for a connection, else None.
        backlog: a listener's backlog (ss: Send-Q of a LISTEN socket), None if unknown.
        v6only: IPV6_V6ONLY when the source shows it, else None.
        device: SO_BINDTODEVICE device name, None when unbound or unknown.
        process, pid: the first owner ``ss -p`` lists, else None.
        uid: owner's uid (``ss -e``, /proc's uid column), None if unknown.
        where: position in the source for comments and errors (``line 7``).
        notes: evidence and caveats, written as comments above the socket.
        flags: socket options the importer found necessary (``"reuseaddr"``,
            ``"reuseport"``).
        closed: capture time at which the socket was closed (the host file's
            ``closed``), None when it lives through the source.
    """

    proto: Proto
    family: int
    address: bytes
    port: int
    state: str
    peer: tuple[bytes, int] | None = None
    backlog: int | None = None
    v6only: bool | None = None
    device: str | None = None
    process: str | None = None
    pid: int | None = None
    uid: int | None = None
    where: str = ""
    notes: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    closed: float | None = None


@dataclass(frozen=True, slots=True)
class Imported:
    """A host file and its explanations.

    Attributes:
        spec: the host file's content.
        header: comment lines for the top of the file (sources, guesses,
            sockets left out and why).
        sysctl_notes: comment lines above ``[sysctl]`` (evidence per value).
        socket_notes: per socket of ``spec.sockets``, comment lines above it.
        host_notes: comment lines above ``[host]`` (evidence for its keys,
            such as ``mtu`` and ``initrwnd``).
    """

    spec: HostSpec
    header: tuple[str, ...] = ()
    sysctl_notes: tuple[str, ...] = ()
    socket_notes: tuple[tuple[str, ...], ...] = ()
    host_notes: tuple[str, ...] = ()
