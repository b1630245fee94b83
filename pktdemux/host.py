"""A friendly facade over :class:`~pktdemux.kernel.Kernel`, for people
learning ports and sockets, in a REPL, a notebook or a doctest.

>>> from pktdemux import Host
>>> host = Host(["10.0.0.1/24"])
>>> web = host.socket("tcp")
>>> web.bind("0.0.0.0", 80)
>>> web.listen()

``host.receive(IP(dst="10.0.0.1")/TCP(dport=81))`` then tells what the
kernel did, with the replies as Scapy packets.  Packets go in as Scapy
packets or bytes; Scapy is loaded only for Scapy packets and to show the
replies (see :mod:`pktdemux.shell`).

Time is explicit: ``host.clock`` (seconds) is the time every call uses; the
caller moves it (``host.clock += 1``, ``host.receive(..., at=5.0)``).  The
wall clock is never read.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Sequence
from typing import Any

from . import explain
from .kernel import Interface, Kernel
from .sockets import Socket, TcpState
from .sysctl import Sysctls
from .verdict import Verdict
from .wire import format_addr

DEFAULT_ADDRESSES = ("10.0.0.1/24", "fd00::1/64")


class Host:
    """One emulated Linux host.

    Args:
        addresses: the host's addresses with prefix, on ``interface``.
        sysctls: Linux sysctl names to values, e.g.
            ``{"net.ipv4.ip_local_port_range": (40000, 40001)}``; Linux 6.18
            defaults otherwise.
        seed: seeds every value the kernel draws at random (ISN, ephemeral
            ports...), so that a session is reproducible.
        interface: the device name.
        mtu: bytes.
        peer: the address a packet without a source comes from, per
            family; default: the first other address of the subnet of the
            host's first address of that family (10.0.0.2 for 10.0.0.1/24).

    Raises:
        ValueError: a malformed address or an unknown sysctl.
    """

    def __init__(
        self,
        addresses: Sequence[str] = DEFAULT_ADDRESSES,
        *,
        sysctls: dict[str, Any] | None = None,
        seed: int = 0,
        interface: str = "eth0",
        mtu: int = 1500,
        peer: Sequence[str] = (),
    ) -> None:
        iface = Interface(interface, [ipaddress.ip_interface(a) for a in addresses], mtu)
        self._setup(Kernel([iface], Sysctls(sysctls or {}), seed=seed), peer)

    def _setup(self, kernel: Kernel, peer: Sequence[str]) -> None:
        self.kernel = kernel
        #: seconds; the time of the next packet unless ``at=`` says otherwise
        self.clock = kernel.now
        self._wrappers: dict[int, HostSocket] = {}
        self._peers = _default_peers(kernel)
        for text in peer:
            addr = ipaddress.ip_address(text)
            self._peers[addr.version] = str(addr)
        for sock in kernel.sockets:
            if sock.inbox is None:
                sock.inbox = []

    @classmethod
    def from_kernel(cls, kernel: Kernel, *, peer: Sequence[str] = ()) -> Host:
        """A Host over an existing kernel (its sockets get an inbox)."""
        host = cls.__new__(cls)
        host._setup(kernel, peer)
        return host

    @classmethod
    def from_file(cls, path: str, *, seed: int = 0, peer: Sequence[str] = ()) -> Host:
        """The host a host file describes (see :mod:`pktdemux.hostfile`).

        Raises:
            HostFileError: unreadable, malformed, or a socket table Linux refuses.
        """
        from .hostfile import build_kernel, load_host

        return cls.from_kernel(build_kernel(load_host(path), seed=seed), peer=peer)

    # -- sockets

    def socket(self, proto: str = "tcp", family: int = 4, **options: Any) -> HostSocket:
        """socket(): a new unbound socket.

        Args:
            proto: ``"tcp"`` or ``"udp"``.
            family: 4 (AF_INET) or 6 (AF_INET6).
            options: ``reuseaddr``, ``reuseport``, ``v6only``, ``device``,
                ``uid`` (0 may bind below ``net.ipv4.ip_unprivileged_port_start``),
                ``name``, ``process``, ``pid``, as for :meth:`Kernel.socket`.

        Raises:
            SocketError: EAFNOSUPPORT, EPROTONOSUPPORT, ENOPROTOOPT, ENODEV.
        """
        sock = self.kernel.socket(proto, family, **options)
        sock.inbox = []
        return self.wrap(sock)

    def wrap(self, sock: Socket) -> HostSocket:
        """The :class:`HostSocket` of a kernel socket (the same one each time)."""
        wrapper = self._wrappers.get(id(sock))
        if wrapper is None or wrapper.sock is not sock:
            wrapper = self._wrappers[id(sock)] = HostSocket(self, sock)
        return wrapper

    @property
    def sockets(self) -> list[HostSocket]:
        """Every socket in the kernel's tables, as ``ss`` lists them."""
        from .ss import shown_sockets

        return [self.wrap(s) for s in shown_sockets(self.kernel)]

    def ss(self, *, processes: bool = True) -> Any:
        """The socket table as ``ss -tuanp`` prints it (see :mod:`pktdemux.ss`)."""
        from .ss import ss

        return ss(self.kernel, processes=processes)

    # -- packets

    def packet_bytes(self, packet: Any) -> bytes:
        """``packet`` as IP bytes: bytes as is; a Scapy packet built by Scapy
        (lengths, checksums) after filling an unset source with the peer
        address and an unset destination with the host's address."""
        if isinstance(packet, (bytes, bytearray, memoryview)):
            return bytes(packet)
        from .shell import to_wire

        return to_wire(packet, self._peers, self._own_addresses())

    def receive(self, packet: Any, at: float | None = None, device: str | None = None) -> Received:
        """Deliver ``packet`` to the host: what its kernel does with it.

        Args:
            packet: a Scapy packet (``IP()/TCP()``...) or IP packet bytes.
            at: arrival time in seconds; sets ``host.clock``.  Default: ``host.clock``.
            device: ingress device; default: ``lo`` for loopback addresses,
                the host's interface otherwise.

        Returns:
            A :class:`Received`, whose repr says what happened; delivered
            data lands in the socket (``recv()``, ``accept()``).
        """
        raw = self.packet_bytes(packet)
        if at is not None:
            self.clock = at
        verdict = self.kernel.receive(raw, self.clock, device)
        sent: tuple[bytes, ...] = ()
        if verdict.delivered:
            from .apps import answer

            for sock in verdict.sockets:
                sent += answer(self.wrap(sock), raw)
        return Received(self, raw, verdict, sent)

    def explain(self, packet: Any, at: float | None = None, device: str | None = None) -> Explanation:
        """The steps the kernel takes for ``packet``, in order, with their sources.

        Runs on a copy of the host: explaining changes nothing (clock included).
        """
        raw = self.packet_bytes(packet)
        kernel = copy.deepcopy(self.kernel)
        kernel.trace = []
        verdict = kernel.receive(raw, self.clock if at is None else at, device)
        return Explanation(explain.describe(verdict, raw), verdict.steps)

    def _own_addresses(self) -> dict[int, str]:
        own: dict[int, str] = {}
        for iface in self.kernel.interfaces:
            if iface.name == "lo":
                continue
            for addr in iface.addresses:
                own.setdefault(addr.version, str(addr.ip))
        return own

    def __repr__(self) -> str:
        addrs = [str(a) for i in self.kernel.interfaces if i.name != "lo" for a in i.addresses]
        return f"<Host {', '.join(addrs) or 'no address'}: {len(self.sockets)} sockets, clock {self.clock:g} s>"


def _default_peers(kernel: Kernel) -> dict[int, str]:
    """Per family, the first address of the host's first subnet that is not the host's own."""
    peers = {4: "192.0.2.1", 6: "2001:db8::1"}  # documentation addresses (RFC 5737, RFC 3849)
    seen: set[int] = set()
    for iface in kernel.interfaces:
        if iface.name == "lo":
            continue
        for addr in iface.addresses:
            if addr.version in seen or addr.network.num_addresses < 4:
                continue
            seen.add(addr.version)
            own = {a.ip for i in kernel.interfaces for a in i.addresses}
            peers[addr.version] = str(next(h for h in addr.network.hosts() if h not in own))
    return peers


class HostSocket:
    """A socket of a :class:`Host`, with the calls of the BSD socket API.

    Every call is the emulated kernel's: errors are
    :class:`~pktdemux.errors.SocketError` (an OSError) with Linux's errno.
    ``sock`` is the kernel's :class:`~pktdemux.sockets.Socket`.
    """

    def __init__(self, host: Host, sock: Socket) -> None:
        self.host = host
        self.sock = sock
        #: a callable answering what this socket receives (:mod:`pktdemux.apps`), or None
        self.app: Any = None

    def bind(self, addr: str, port: int) -> None:
        """bind(); port 0 picks an ephemeral port (odd first, spec §8.2).

        Raises:
            SocketError: EADDRINUSE, EADDRNOTAVAIL, EACCES, EINVAL...
        """
        self.host.kernel.bind(self.sock, addr, port)

    def listen(self, backlog: int = 128) -> None:
        """listen() (TCP).  Raises SocketError: EOPNOTSUPP (UDP), EADDRINUSE, EINVAL."""
        self.host.kernel.listen(self.sock, backlog)

    def connect(self, addr: str, port: int) -> None:
        """connect(): an ESTABLISHED connection at once (no handshake is
        emulated) or a connected UDP socket; an unbound socket gets an
        ephemeral port (even first, spec §8.3).

        Raises:
            SocketError: EADDRNOTAVAIL (no port left for this destination),
                ENETUNREACH, EISCONN...
        """
        self.host.kernel.connect(self.sock, addr, port)

    def close(self) -> None:
        """close(): a TCP connection whose sequence numbers are known sends
        its FIN and lives on as an orphan (FIN_WAIT1, LAST_ACK... then
        TIME_WAIT); any other socket leaves every table at once."""
        self.host.kernel.close(self.sock, now=self.host.clock)

    def accept(self) -> HostSocket | None:
        """The oldest connection in the accept queue, or None when none is
        waiting (a non-blocking accept(), whose EAGAIN is None here)."""
        kernel_accept = getattr(self.host.kernel, "accept", None)
        if kernel_accept is not None:
            child = kernel_accept(self.sock)
        else:
            queue = getattr(self.sock.tcb, "accept_queue", None)
            child = queue.pop(0) if queue else None
        if child is None:
            return None
        if child.inbox is None:
            child.inbox = []
        return self.host.wrap(child)

    def recv(self) -> bytes | None:
        """What the socket received and the application has not read: for
        TCP every queued byte (a byte stream), for UDP one datagram; None
        when nothing is waiting (a non-blocking recv())."""
        inbox = self.sock.inbox
        if not inbox:
            return None
        if self.sock.proto.name == "UDP":
            return inbox.pop(0)
        data = b"".join(inbox)
        inbox.clear()
        return data

    def getsockname(self) -> tuple[Any, ...]:
        """(address, port) for AF_INET, (address, port, flowinfo, scope_id) for AF_INET6, as Python's socket."""
        return self._address(self.sock.local_addr, self.sock.local_port)

    def getpeername(self) -> tuple[Any, ...]:
        """The peer, as :meth:`getsockname`.  Raises SocketError ENOTCONN when not connected."""
        if self.sock.remote_addr is None:
            import errno

            from .errors import SocketError
            raise SocketError(errno.ENOTCONN, f"{self.sock.label} has no peer", rule="inet_getname")
        return self._address(self.sock.remote_addr, self.sock.remote_port)

    def _address(self, addr: bytes, port: int) -> tuple[Any, ...]:
        text = format_addr(addr)
        return (text, port) if self.sock.family == 4 else (text, port, 0, 0)

    @property
    def state(self) -> TcpState:
        """The TCP state (``ss``'s name in ``.value``); UNCONN/ESTAB for UDP."""
        return self.sock.state

    def __getattr__(self, name: str) -> Any:
        # the kernel socket's attributes (local_port, proto, family...) read through
        return getattr(self.sock, name)

    def __repr__(self) -> str:
        return repr(self.sock).replace("<Socket", "<HostSocket", 1)


class Received:
    """What the host's kernel did with one packet.

    Attributes:
        verdict: the kernel's :class:`~pktdemux.verdict.Verdict`.
        packet: the packet as received (IP bytes).
        sent: what applications (:mod:`pktdemux.apps`) sent in answer, IP bytes.
        delivered, reason, note: the verdict's.
    """

    def __init__(self, host: Host, packet: bytes, verdict: Verdict, sent: tuple[bytes, ...] = ()) -> None:
        self.host = host
        self.packet = packet
        self.verdict = verdict
        self.sent = sent

    @property
    def delivered(self) -> bool:
        return self.verdict.delivered

    @property
    def reason(self) -> Any:
        return self.verdict.reason

    @property
    def note(self) -> str:
        return self.verdict.note

    @property
    def sockets(self) -> list[HostSocket]:
        """The sockets that took the packet."""
        return [self.host.wrap(s) for s in self.verdict.sockets]

    @property
    def replies(self) -> list[Any]:
        """The kernel's replies, in send order, as Scapy packets."""
        from .shell import decode

        return [decode(r) for r in self.verdict.replies]

    @property
    def text(self) -> str:
        """One line: what happened and why (:func:`pktdemux.explain.describe`)."""
        return explain.describe(self.verdict, self.packet)

    def __repr__(self) -> str:
        lines = [self.text]
        lines += [f"  reply: {reply.summary()}" for reply in self.replies]
        from .shell import decode

        lines += [f"  app sent: {decode(packet).summary()}" for packet in self.sent]
        return "\n".join(lines)


class Explanation:
    """The outcome of :meth:`Host.explain`: the one-line verdict and the steps.

    Attributes:
        text: what happened, as :attr:`Received.text`.
        steps: each step the kernel took, "what happened (source)", in order.
    """

    def __init__(self, text: str, steps: tuple[str, ...]) -> None:
        self.text = text
        self.steps = steps

    def __repr__(self) -> str:
        return f"{self.text}\n{explain.numbered_steps(self.steps)}"
