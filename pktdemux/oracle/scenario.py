"""What to run on the real kernel: a host (addresses, sysctls, sockets) and
the packets to inject, with their time offsets.

The host follows the host-file model (``[host]``, ``[sysctl]``,
``[[sockets]]``).  It can be given as TOML text, as the parsed TOML mapping,
or as the parsed :class:`pktdemux.hostfile.HostSpec`, so that the oracle and
the emulation are set up from one source.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The device name used when the host does not name its interface.
DEFAULT_INTERFACE = "eth0"

_LABEL = re.compile(r"^(tcp|udp)://(?:\[([^\]]+)\]|([^:\[\]/]+)):(\d+)$")
_ENDPOINT = re.compile(r"^(?:\[([^\]]+)\]|([^:\[\]/]+)):(\d+)$")


def parse_endpoint(text: str) -> tuple[str, int, int]:
    """``"10.0.0.2:6000"`` or ``"[fd00::2]:6000"`` → (address, port, family 4 or 6).

    Raises:
        ValueError: if ``text`` is not an address and a port.
    """
    m = _ENDPOINT.match(text.strip())
    if not m:
        raise ValueError(f"not address:port: {text!r}")
    v6, v4, port = m.groups()
    addr = ipaddress.ip_address(v6 if v6 is not None else v4)
    if (v6 is not None) != (addr.version == 6):
        raise ValueError(f"IPv6 addresses go in brackets: {text!r}")
    return str(addr), int(port), 6 if v6 is not None else 4


@dataclass(frozen=True, slots=True)
class SocketSetup:
    """One ``[[sockets]]`` entry: a socket to create, in file order.

    Attributes:
        label: ``proto://address:port``; ``0.0.0.0`` and ``[::]`` are
            wildcards, ``[::ffff:a.b.c.d]`` is a v4-mapped AF_INET6 bind.
        name: unique display name (defaults to the label).
        listen: listen() backlog for TCP; None leaves the socket bound only.
        peer: ``address:port``: connect() for UDP; for TCP an ESTABLISHED
            connection made by the peer's handshake and accept().
        reuseport, reuseaddr: SO_REUSEPORT, SO_REUSEADDR.
        v6only: IPV6_V6ONLY for AF_INET6; None keeps the sysctl's default.
        device: SO_BINDTODEVICE device name, or None.
        uid: the socket is created and bound with this effective uid.
    """

    label: str
    name: str = ""
    listen: int | None = None
    peer: str | None = None
    reuseport: bool = False
    reuseaddr: bool = False
    v6only: bool | None = None
    device: str | None = None
    uid: int = 0

    def __post_init__(self) -> None:
        self.endpoint  # noqa: B018  (validates the label early)
        if self.peer is not None:
            parse_endpoint(self.peer)

    @property
    def endpoint(self) -> tuple[str, str, int, int]:
        """(proto ``"tcp"``/``"udp"``, address text, port, family 4 or 6)."""
        m = _LABEL.match(self.label.strip())
        if not m:
            raise ValueError(f"socket label must be proto://address:port: {self.label!r}")
        proto, v6, v4, port = m.groups()
        addr = ipaddress.ip_address(v6 if v6 is not None else v4)
        if (v6 is not None) != (addr.version == 6):
            raise ValueError(f"IPv6 addresses go in brackets: {self.label!r}")
        return proto, str(addr), int(port), 6 if v6 is not None else 4

    @property
    def display_name(self) -> str:
        """The name, or the label when unnamed."""
        return self.name or self.label

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the helper process's input)."""
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SocketSetup:
        """From a ``[[sockets]]`` table (unknown keys such as process/pid are ignored)."""
        listen = data.get("listen")
        return cls(
            label=str(data["label"]),
            name=str(data.get("name") or ""),
            listen=None if listen is None or listen is False else int(listen),
            peer=data.get("peer"),
            reuseport=bool(data.get("reuseport", False)),
            reuseaddr=bool(data.get("reuseaddr", False)),
            v6only=None if data.get("v6only") is None else bool(data["v6only"]),
            device=data.get("device"),
            uid=int(data.get("uid", 0) or 0),
        )


@dataclass(frozen=True, slots=True)
class HostSetup:
    """The namespace's configuration.

    Attributes:
        addresses: ``"10.0.0.1/24"``-style interface addresses, in order.
        interface: the TUN device's name.
        mtu: device MTU in bytes, or None for the default 1500.
        sysctls: sysctl name → value (int, or a sequence for multi-value ones).
        sockets: the sockets, created in this order.
        initrwnd: the initrwnd metric set on every route out of the device
            (``[host] initrwnd``), or None to leave the routes as made.
    """

    addresses: tuple[str, ...]
    interface: str = DEFAULT_INTERFACE
    mtu: int | None = None
    sysctls: Mapping[str, Any] = field(default_factory=dict)
    sockets: tuple[SocketSetup, ...] = ()
    initrwnd: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the helper process's input)."""
        return {
            "addresses": list(self.addresses),
            "interface": self.interface,
            "mtu": self.mtu,
            "sysctls": {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in self.sysctls.items()},
            "sockets": [s.to_json() for s in self.sockets],
            "initrwnd": self.initrwnd,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostSetup:
        """Inverse of :meth:`to_json`."""
        return cls(
            addresses=tuple(data["addresses"]),
            interface=data.get("interface") or DEFAULT_INTERFACE,
            mtu=data.get("mtu"),
            sysctls=dict(data.get("sysctls") or {}),
            sockets=tuple(SocketSetup(**s) for s in data.get("sockets") or ()),
            initrwnd=data.get("initrwnd"),
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> HostSetup:
        """From a parsed host file (``{"host": ..., "sysctl": ..., "sockets": [...]}``).

        Raises:
            ValueError: for a missing address list or a malformed socket entry.
        """
        host = data.get("host") or {}
        addresses = host.get("addresses")
        if not addresses:
            raise ValueError("[host] addresses is required")
        for a in addresses:
            ipaddress.ip_interface(a)
        return cls(
            addresses=tuple(str(a) for a in addresses),
            interface=str(host.get("interface") or DEFAULT_INTERFACE),
            mtu=None if host.get("mtu") is None else int(host["mtu"]),
            sysctls=dict(data.get("sysctl") or {}),
            sockets=tuple(SocketSetup.from_mapping(s) for s in data.get("sockets") or ()),
            initrwnd=int(host["initrwnd"]) if host.get("initrwnd") else None,
        )

    @classmethod
    def from_toml(cls, text: str) -> HostSetup:
        """From host-file TOML text.

        Raises:
            ValueError: for invalid TOML or a malformed host (tomllib.TOMLDecodeError
                is a ValueError).
        """
        return cls.from_mapping(tomllib.loads(text))

    @classmethod
    def from_spec(cls, spec: Any) -> HostSetup:
        """From a parsed host file (:class:`pktdemux.hostfile.HostSpec`), or
        from anything :meth:`from_mapping` or :meth:`from_toml` reads.

        Raises:
            ValueError: for a malformed host, or a spec with more than one
                non-loopback device.
        """
        if isinstance(spec, HostSetup):
            return spec
        if isinstance(spec, str):
            return cls.from_toml(spec)
        if isinstance(spec, Mapping):
            return cls.from_mapping(spec)
        from ..hostfile import host_to_dict

        return cls.from_mapping(host_to_dict(spec))


@dataclass(frozen=True, slots=True)
class Injection:
    """One packet to write into the TUN device.

    Attributes:
        offset: seconds after the first injection (non-decreasing).
        packet: the IPv4/IPv6 packet bytes, from the IP header.
        complete_handshake: when the packet is a SYN answered by a SYN-ACK,
            also send the peer's final ACK (seq = SYN.seq + 1, ack = ISN + 1)
            right away, so that a listener gets an accept()able connection.
        ack_from_isn: the packet's TCP ACK number counts from the ISN of the
            host's ESTABLISHED connection of the same 4-tuple (set up by the
            oracle, completed by an earlier ``complete_handshake`` injection
            or started by a ``connect`` call); the oracle adds that ISN
            before injecting.  The result shows the bytes really injected.
        quote_from_isn: the packet is an ICMP/ICMPv6 error quoting a TCP
            segment of the host: the quoted sequence number counts from the
            ISN of that connection (an ESTABLISHED one, or one a ``connect``
            call started); the oracle adds the ISN and fixes the checksum.
    """

    offset: float
    packet: bytes
    complete_handshake: bool = False
    ack_from_isn: bool = False
    quote_from_isn: bool = False


#: What a :class:`SocketCall` can do.
CALLS = ("close", "shutdown_wr", "connect", "recv", "status")


@dataclass(frozen=True, slots=True)
class SocketCall:
    """A socket operation the host's application makes between injections.

    Attributes:
        offset: seconds after the first injection; at an offset shared with
            an injection, the call comes after it.
        socket: the host socket's display name, or for ``connect`` the name
            the new socket gets.
        call: ``"close"`` (close()), ``"shutdown_wr"`` (shutdown(SHUT_WR)),
            ``"connect"`` (a new non-blocking TCP socket, unbound, connect()ed
            to ``peer``: the kernel picks the source port), ``"recv"`` (read
            what is queued, without blocking) or ``"status"`` (nothing done:
            the socket's SO_ERROR and TCP state are read).
        peer: ``address:port`` for ``connect``.

    Every call's result (:class:`~pktdemux.oracle.result.CallResult`) also
    holds the socket's TCP state afterwards; a ``status`` call's, the
    namespace's whole TCP table (reading it takes ~10 ms, during which the
    oracle reads no packet: leave time before the next step).
    """

    offset: float
    socket: str
    call: str
    peer: str | None = None

    def __post_init__(self) -> None:
        if self.call not in CALLS:
            raise ValueError(f"unknown socket call {self.call!r} (one of {', '.join(CALLS)})")
        if (self.call == "connect") != (self.peer is not None):
            raise ValueError("connect, and only connect, takes a peer")
        if self.peer is not None:
            parse_endpoint(self.peer)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the helper process's input)."""
        return {"offset": self.offset, "socket": self.socket, "call": self.call, "peer": self.peer}


@dataclass(frozen=True, slots=True)
class Scenario:
    """A host, the packets it receives and what its application does.

    Attributes:
        host: the namespace's configuration.
        packets: the injections, in time order.
        settle: seconds to keep listening after the last step.
        name: shown in reports.
        calls: socket operations between the injections, in time order.
    """

    host: HostSetup
    packets: tuple[Injection, ...]
    settle: float = 0.05
    name: str = ""
    calls: tuple[SocketCall, ...] = ()

    def __post_init__(self) -> None:
        for what, offsets in (("injection", [p.offset for p in self.packets]),
                              ("socket call", [c.offset for c in self.calls])):
            if any(b < a for a, b in itertools.pairwise(offsets)) or any(o < 0 for o in offsets):
                raise ValueError(f"{what} offsets must be non-negative and non-decreasing")

    def steps(self) -> list[tuple[str, int]]:
        """Injections and calls in the order they happen: ``("packet", i)``
        or ``("call", j)``, a call after the injections of its offset."""
        order = [(p.offset, 0, i) for i, p in enumerate(self.packets)]
        order += [(c.offset, 1, j) for j, c in enumerate(self.calls)]
        return [("call" if kind else "packet", index) for _, kind, index in sorted(order)]

    @property
    def duration(self) -> float:
        """Seconds from the first step to the last one."""
        return max([p.offset for p in self.packets[-1:]] + [c.offset for c in self.calls[-1:]] + [0.0])

    @classmethod
    def evenly_spaced(
        cls, host: Any, packets: Sequence[bytes], spacing: float = 0.003, *, settle: float = 0.05, name: str = ""
    ) -> Scenario:
        """Packets ``spacing`` seconds apart, the host given in any form
        :meth:`HostSetup.from_spec` accepts."""
        return cls(
            HostSetup.from_spec(host),
            tuple(Injection(i * spacing, bytes(p)) for i, p in enumerate(packets)),
            settle=settle,
            name=name,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the helper process's input); packets in hex."""
        return {
            "name": self.name,
            "settle": self.settle,
            "host": self.host.to_json(),
            "packets": [
                {"offset": p.offset, "hex": p.packet.hex(), "complete_handshake": p.complete_handshake,
                 "ack_from_isn": p.ack_from_isn, "quote_from_isn": p.quote_from_isn}
                for p in self.packets
            ],
            "calls": [c.to_json() for c in self.calls],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scenario:
        """Inverse of :meth:`to_json`."""
        return cls(
            HostSetup.from_json(data["host"]),
            tuple(
                Injection(float(p["offset"]), bytes.fromhex(p["hex"]), bool(p.get("complete_handshake")),
                          bool(p.get("ack_from_isn")), bool(p.get("quote_from_isn")))
                for p in data["packets"]
            ),
            settle=float(data.get("settle", 0.05)),
            name=str(data.get("name", "")),
            calls=tuple(SocketCall(**c) for c in data.get("calls") or ()),
        )
