"""What the real kernel did with a scenario: per injected packet the packets
it transmitted, and what the sockets received.

Times are seconds after the first injection.  Replies go with the step
(an injected packet or a socket call) they follow.  Addresses are text as the
kernel reports them (an AF_INET6 socket sees an IPv4 peer as
``::ffff:a.b.c.d``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class Reply:
    """One packet the kernel transmitted: ``at`` seconds, ``packet`` from its IP header."""

    at: float
    packet: bytes


@dataclass(frozen=True, slots=True)
class PacketResult:
    """The kernel's transmissions after one injected packet.

    Attributes:
        index: position of the injection in the scenario.
        sent_at: when it was written into the TUN device.
        packet: the injected bytes.
        replies: every packet transmitted after it and before the next
            injection (or before the settle time ran out), background noise
            removed, in order.
        followup: the final ACK the oracle sent for ``complete_handshake``
            (its replies are in ``replies`` too), or None.
    """

    index: int
    sent_at: float
    packet: bytes
    replies: tuple[Reply, ...]
    followup: bytes | None = None

    @property
    def reply_bytes(self) -> tuple[bytes, ...]:
        """The replies' bytes."""
        return tuple(r.packet for r in self.replies)


@dataclass(frozen=True, slots=True)
class Datagram:
    """A UDP datagram read from a socket: source address, port and payload."""

    src: str
    sport: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Accepted:
    """A connection accept()ed from a listener, and the data waiting on it."""

    peer: str
    pport: int
    local: str
    lport: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class SocketReport:
    """One host socket after the run.

    Attributes:
        index: position in the host's socket list.
        name: its display name.
        error: the errno name (``"EADDRINUSE"``) if creating it failed, else None.
        datagrams: UDP datagrams read with MSG_DONTWAIT, in arrival order.
        accepted: connections accept()ed from a TCP listener.
        data: bytes read from an ESTABLISHED TCP socket.
        recv_error: errno name reading gave (``"ECONNRESET"``), else None.
    """

    index: int
    name: str
    error: str | None = None
    datagrams: tuple[Datagram, ...] = ()
    accepted: tuple[Accepted, ...] = ()
    data: bytes = b""
    recv_error: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """An ESTABLISHED TCP socket made by the oracle, as the kernel left it.

    Give the emulation these numbers so that both hosts start from the same
    connection.  Sequence numbers are 32-bit, host order.

    Attributes:
        index: the socket's position in the host's socket list.
        local, lport, peer, pport: the 4-tuple (local side = the host).
        local_isn: the ISN of the kernel's SYN-ACK.
        peer_isn: the sequence number of the injected SYN.
        snd_nxt: local_isn + 1.
        rcv_nxt: peer_isn + 1.
        window: the window the SYN-ACK advertised (bytes, unscaled).
        mss: the MSS the peer's SYN offered.
        handshake: the SYN, the SYN-ACK and the final ACK, in order.
        rtt_us: the RTT the kernel measured from the handshake (TCP_INFO
            tcpi_rtt, µs: the SYN-ACK to the final ACK), 0 when unknown.
        rto_us: its retransmission timeout then (tcpi_rto, µs), 0 when unknown.
    """

    index: int
    local: str
    lport: int
    peer: str
    pport: int
    local_isn: int
    peer_isn: int
    snd_nxt: int
    rcv_nxt: int
    window: int
    mss: int
    handshake: tuple[bytes, ...]
    rtt_us: int = 0
    rto_us: int = 0


@dataclass(frozen=True, slots=True)
class CallResult:
    """What one :class:`~pktdemux.oracle.scenario.SocketCall` did.

    Attributes:
        index: position of the call in the scenario.
        at: when the call was made (seconds after the first injection).
        socket, call: as in the scenario.
        error: the errno name the call failed with (``"EINPROGRESS"`` for a
            connect), else None.
        state: the socket's TCP state afterwards (TCP_INFO, TcpState member
            names), or None when the application no longer has the socket
            (after close()).
        so_error: the errno name SO_ERROR held, read (so cleared) by a
            ``status`` call; None when it held 0 or for other calls.
        local: (address, port) of the socket after a connect.
        data: what a ``recv`` read (its ``error`` is ``"EOF"`` after the
            peer's FIN).
        isn: the ISN of the SYN a connect sent, else None.
        table: for a ``status`` call, the namespace's TCP table (listeners
            included), in /proc order; else empty.
        replies: what the kernel transmitted after the call and before the
            next step (or before the settle time ran out).
    """

    index: int
    at: float
    socket: str
    call: str
    error: str | None = None
    state: str | None = None
    so_error: str | None = None
    local: tuple[str, int] | None = None
    data: bytes = b""
    isn: int | None = None
    table: tuple[TableEntry, ...] = ()
    replies: tuple[Reply, ...] = ()

    @property
    def reply_bytes(self) -> tuple[bytes, ...]:
        """The replies' bytes."""
        return tuple(r.packet for r in self.replies)

    def entry(self, lport: int, rport: int) -> TableEntry | None:
        """The table line with these ports, or None when it has none."""
        return next((e for e in self.table if (e.lport, e.rport) == (lport, rport)), None)


class TableEntry(NamedTuple):
    """One line of the namespace's TCP table (/proc/net/tcp, /proc/net/tcp6):
    addresses as text (``::ffff:a.b.c.d`` shown as ``a.b.c.d``), the state
    in :class:`pktdemux.sockets.TcpState` member names (``"TIME_WAIT"``)."""

    local: str
    lport: int
    remote: str
    rport: int
    state: str


@dataclass(frozen=True, slots=True)
class OracleResult:
    """Everything the real kernel did with one scenario.

    Attributes:
        name: the scenario's name.
        interface: the TUN device's name.
        packets: one result per injection, in order.
        sockets: one report per host socket, in order.
        connections: the ESTABLISHED sockets the oracle set up.
        noise: how many background packets (MLD, router solicitation,
            neighbour discovery, IGMP) were discarded.
        early: packets the kernel sent while the sockets were being set up
            (before the first injection), other than handshake SYN-ACKs.
        setup_seconds, run_seconds: time spent creating the namespace and
            sockets, and injecting.
        calls: one result per socket call, in order.
    """

    name: str
    interface: str
    packets: tuple[PacketResult, ...]
    sockets: tuple[SocketReport, ...]
    connections: tuple[ConnectionState, ...]
    noise: int
    early: tuple[bytes, ...]
    setup_seconds: float
    run_seconds: float
    calls: tuple[CallResult, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OracleResult:
        """From the helper process's JSON output."""
        packets = tuple(
            PacketResult(
                index=p["index"],
                sent_at=p["sent_at"],
                packet=bytes.fromhex(p["hex"]),
                replies=tuple(Reply(r["at"], bytes.fromhex(r["hex"])) for r in p["replies"]),
                followup=bytes.fromhex(p["followup"]) if p.get("followup") else None,
            )
            for p in data["packets"]
        )
        sockets = tuple(
            SocketReport(
                index=s["index"],
                name=s["name"],
                error=s.get("error"),
                datagrams=tuple(Datagram(d["src"], d["sport"], bytes.fromhex(d["payload"])) for d in s["datagrams"]),
                accepted=tuple(
                    Accepted(a["peer"], a["pport"], a["local"], a["lport"], bytes.fromhex(a["data"]))
                    for a in s["accepted"]
                ),
                data=bytes.fromhex(s.get("data", "")),
                recv_error=s.get("recv_error"),
            )
            for s in data["sockets"]
        )
        connections = tuple(
            ConnectionState(**{**c, "handshake": tuple(bytes.fromhex(h) for h in c["handshake"])})
            for c in data["connections"]
        )
        calls = tuple(
            CallResult(
                index=c["index"], at=c["at"], socket=c["socket"], call=c["call"], error=c.get("error"),
                state=c.get("state"), so_error=c.get("so_error"),
                local=(c["local"][0], int(c["local"][1])) if c.get("local") else None,
                data=bytes.fromhex(c.get("data") or ""), isn=c.get("isn"),
                table=tuple(TableEntry(**e) for e in c.get("table") or ()),
                replies=tuple(Reply(r["at"], bytes.fromhex(r["hex"])) for r in c.get("replies") or ()),
            )
            for c in data.get("calls") or ()
        )
        return cls(
            name=data.get("name", ""),
            interface=data["interface"],
            packets=packets,
            sockets=sockets,
            connections=connections,
            noise=data["noise"],
            early=tuple(bytes.fromhex(h) for h in data.get("early", ())),
            setup_seconds=data["setup_seconds"],
            run_seconds=data["run_seconds"],
            calls=calls,
        )
