"""The emulated kernel: one host's network stack, sans I/O.

Packet bytes and a timestamp go in, a :class:`~pktdemux.verdict.Verdict`
(deliver or drop, with the reply packets) comes out.  There is no clock, no
file, no socket and no global random state in here: time is the ``now``
argument (seconds since the epoch, as in the capture), randomness comes from
:class:`~pktdemux.entropy.Entropy` seeded by the caller.

Flow (spec §1): :func:`pktdemux.ipv4.receive` / :func:`pktdemux.ipv6.receive`
check the network header and classify the destination, then hand the
datagram to :mod:`pktdemux.tcp`, :mod:`pktdemux.udp` or :mod:`pktdemux.icmp`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import Counter, deque
from dataclasses import dataclass, field

from . import ipv4, ipv6
from . import transmit as _transmit
from .dropreason import DropReason
from .entropy import Entropy
from .fragments import Reassembly
from .icmp_ratelimit import IcmpRateLimiter
from .ip_sysctls import IpSysctls
from .ports import PortState
from .reqsk_timer import TimedTcpTable
from .routing import Routing
from .sent_replies import SentReplies
from .sockets import Proto, Socket, TcpState
from .sysctl import Sysctls
from .timers import Fired, TimerQueue
from .udp_table import UdpTable
from .verdict import Transmission, Verdict, drop

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

LOOPBACK = "lo"
#: At most this many timer firings wait in Kernel.timer_output.
TIMER_OUTPUT_MAX = 65536


@dataclass(slots=True)
class Interface:
    """A network device of the emulated host and its addresses.

    Attributes:
        name: device name, e.g. ``"eth0"``; ``"lo"`` is the loopback device.
        addresses: addresses with prefix length; the prefix gives the subnet
            broadcast (IPv4) and the on-link prefix.
        mtu: bytes; decides the SYN-ACK MSS and the ICMP quote limit.
        rx_skb: how the device's driver builds the skbs of received packets,
            whose truesize the TCP receive window follows: a name in
            :data:`pktdemux.tcp_rcvbuf.RX_PROFILES`.
        initrwnd: the ``initrwnd`` metric (RTAX_INITRWND) of the routes out of
            the device (``ip route change ... dev DEV initrwnd N``): a new
            connection's initial receive window is at most this many MSS
            (tcp_select_initial_window); 0 = not set.
    """

    name: str
    addresses: list[IPInterface] = field(default_factory=list)
    mtu: int = 1500
    rx_skb: str = "linear"
    initrwnd: int = 0


def loopback() -> Interface:
    """The ``lo`` device every Linux host has: 127.0.0.1/8 and ::1/128, MTU 65536."""
    return Interface(
        LOOPBACK,
        [ipaddress.IPv4Interface("127.0.0.1/8"), ipaddress.IPv6Interface("::1/128")],
        mtu=65536,
    )


class Kernel:
    """One emulated Linux host.

    Args:
        interfaces: the host's devices (``lo`` is added when missing).
        sysctls: sysctl values (Linux 6.18 defaults otherwise).
        seed: seeds every value the kernel draws at random (see
            :mod:`pktdemux.entropy`), so runs are reproducible.
    """

    def __init__(
        self,
        interfaces: list[Interface] | None = None,
        sysctls: Sysctls | None = None,
        seed: int = 0,
    ) -> None:
        interfaces = list(interfaces or [])
        if not any(i.name == LOOPBACK for i in interfaces):
            interfaces.insert(0, loopback())
        self.interfaces = interfaces
        self.sysctls = sysctls or Sysctls()  # also sets ip_sysctls (see the property)
        self.entropy = Entropy(seed)
        #: the global and per-destination ICMP buckets (spec §5.4)
        self.icmp_ratelimit = IcmpRateLimiter(self.entropy)
        self._sent = SentReplies()
        self.routing = Routing(self.interfaces)
        #: every bound socket, in bind order (bind-conflict checks walk it)
        self.sockets: list[Socket] = []
        #: ephemeral-port memory of bind(0)/connect() (spec §8, :mod:`pktdemux.ports`)
        self.ports = PortState()
        #: the TCP table; requests also arm their SYN-ACK timer (pktdemux.reqsk_timer)
        self.tcp = TimedTcpTable(self)
        self.tcp.bound = self.sockets  # accepted children and TIME_WAIT entries hold their port
        self.udp = UdpTable()
        #: kernel MIB-style counters, e.g. ``stats["NO_SOCKET"]``
        self.stats: Counter[str] = Counter()
        #: the time of the latest packet seen, seconds since the epoch
        self.now = 0.0
        #: None, or a list that receive() fills with the steps it takes, each
        #: "what happened (source)": set it to [] to explain a packet.
        self.trace: list[str] | None = None
        #: armed timers (pktdemux.timers); :meth:`advance` runs them
        self.timers = TimerQueue()
        #: IP fragment queues (pktdemux.fragments)
        self.frags = Reassembly()
        #: what timers sent, oldest first, until a driver drains it
        #: (:meth:`drain_timer_output`); bounded, the oldest go first
        self.timer_output: deque[Fired] = deque(maxlen=TIMER_OUTPUT_MAX)
        #: the applications read TCP data as soon as it arrives (right after
        #: the ACK goes out), which frees the receive buffer the window
        #: follows (:mod:`pktdemux.tcp_rcvbuf`); False: data waits until
        #: :meth:`recv`, as with the oracle's applications
        self.autoread = True

    @property
    def sysctls(self) -> Sysctls:
        """The sysctl values; assigning new ones refreshes :attr:`ip_sysctls`."""
        return self._sysctls

    @sysctls.setter
    def sysctls(self, value: Sysctls) -> None:
        self._sysctls = value
        #: the IP-side sysctls as plain attributes, for the per-packet path
        self.ip_sysctls = IpSysctls(value)

    @property
    def default_device(self) -> str:
        """The first non-loopback device (where captured packets arrive)."""
        for iface in self.interfaces:
            if iface.name != LOOPBACK:
                return iface.name
        return LOOPBACK

    def receive(self, packet: bytes, now: float, device: str | None = None) -> Verdict:
        """Run one incoming IP packet through the receive path.

        Args:
            packet: the IPv4 or IPv6 packet from its IP header (no link layer).
            now: arrival time, seconds since the epoch; an earlier time than
                the previous call's is taken as the previous call's.
            device: ingress device; None picks ``lo`` for loopback addresses and
                :attr:`default_device` otherwise.

        Returns:
            The verdict, with the replies the kernel sends, in order.  Never
            raises for malformed input: a bad packet is a drop with a reason.
        """
        self.advance(now)
        self.now = max(self.now, now)
        trace = self.trace
        if trace is not None:
            trace.clear()
        if not packet:
            return drop(DropReason.PKT_TOO_SMALL, "empty packet")
        version = packet[0] >> 4
        if device is None:
            device = self.routing.ingress_device(packet)
        if version == 4:
            verdict = ipv4.receive(self, packet, device)
        elif version == 6:
            verdict = ipv6.receive(self, packet, device)
        else:
            verdict = drop(DropReason.IP_INHDR, f"IP version {version}")
        reason = verdict.reason
        self.stats[reason.value if reason is not None else "delivered"] += 1
        if verdict.replies:
            self._sent.record(verdict.replies, self.now)
        if trace is not None:
            verdict = dataclasses.replace(verdict, steps=tuple(trace))
        return verdict

    # -- timers (pktdemux.timers)

    def advance(self, now: float) -> list[bytes]:
        """Let time pass until ``now``: fire every timer due at or before it.

        Timers fire in time order (ties in the order they were armed), each
        with :attr:`now` set to its due time, so rate limits and TCP
        timestamps see the time the kernel sent the packet.  Also expires
        TIME_WAIT entries and requests whose lifetime ended
        (:meth:`pktdemux.tcp_table.TcpTable.expire`).  :meth:`receive` and
        :meth:`transmit` call it first; call it at the end of a capture to
        run what is left.

        Args:
            now: seconds since the epoch; earlier than :attr:`now` fires nothing.

        Returns:
            The IP packets the timers sent, in order (also recorded in
            :attr:`timer_output` with their times, and in :attr:`sent`).
        """
        # Called for every packet: with nothing due it is two comparisons.
        heap = self.timers._heap
        if not heap or heap[0][0] > now:
            expiry = self.tcp._expiry
            if expiry and expiry[0][0] <= now:
                self.tcp.expire(now)
            return []
        return self._fire_timers(now)

    def _fire_timers(self, now: float) -> list[bytes]:
        packets: list[bytes] = []
        while (timer := self.timers.pop_due(now)) is not None:
            # Taken before the expiry below, which may stop this very timer
            # (a request whose lifetime ends as its last run is due).
            action = timer.action
            timer.cancel()
            assert action is not None
            self.now = max(self.now, timer.due)
            self.tcp.expire(self.now)
            sent = action(self.now)
            if sent:
                self.sent.record(tuple(sent), self.now)
                packets += sent
            self.timer_output.append(Fired(self.now, timer.what, tuple(sent)))
        self.now = max(self.now, now)
        self.tcp.expire(self.now)
        return packets

    def drain_timer_output(self) -> list[Fired]:
        """Take what timers sent since the last call: one
        :class:`~pktdemux.timers.Fired` per timer that fired, in time order
        (each with its time, name and packets, possibly none)."""
        out = list(self.timer_output)
        self.timer_output.clear()
        return out

    # -- the host's own packets (pktdemux.transmit)

    @property
    def sent(self) -> SentReplies:
        """The replies this kernel sent recently (bounded), which
        :meth:`transmit` matches the host's own packets against."""
        return self._sent

    def transmit(self, packet: bytes, now: float) -> Transmission:
        """Account for a packet the host itself sent (a capture's "out" packet).

        Args:
            packet: the IPv4/IPv6 packet from its IP header.
            now: when it was sent, seconds since the epoch.

        Returns:
            Whether the emulation had sent the same packet (random fields
            masked), and what the host's application did: connect(), close(),
            send, an implicit UDP bind (see :mod:`pktdemux.transmit`).  Never
            raises for malformed input.
        """
        self.advance(now)
        return _transmit.transmit(self, packet, now)

    def accept(self, listener: Socket) -> Socket | None:
        """accept(): the oldest established connection of ``listener``'s
        accept queue, taken off the queue; None when the queue is empty (a
        non-blocking accept's EAGAIN).  Data delivered to the connection is
        in its ``inbox`` when the listener had one (:func:`pktdemux.tcp_listen.accept`).

        Raises:
            SocketError: EINVAL if ``listener`` is not a listening TCP socket
                (inet_csk_accept).
        """
        from . import tcp_listen

        return tcp_listen.accept(listener)

    # -- socket API (spec §7, §8): thin wrappers over pktdemux.bind / pktdemux.connect

    def socket(
        self,
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
        """socket() plus setsockopt(): a new unbound socket (see :func:`pktdemux.bind.new_socket`).

        ``v6only=None`` takes ``net.ipv6.bindv6only``.  Raises SocketError
        (EAFNOSUPPORT, EPROTONOSUPPORT, ENOPROTOOPT, ENODEV).
        """
        from . import bind
        return bind.new_socket(self, proto, family, reuseaddr=reuseaddr, reuseport=reuseport,
                               v6only=v6only, device=device, uid=uid, name=name,
                               process=process, pid=pid)

    def bind(self, sock: Socket, addr: str | bytes, port: int) -> None:
        """bind(); port 0 picks an ephemeral port (spec §7.1-§7.3, §8.2; :func:`pktdemux.bind.bind`)."""
        from . import bind
        bind.bind(self, sock, addr, port)

    def listen(self, sock: Socket, backlog: int) -> None:
        """listen() on a TCP socket (spec §7.2; :func:`pktdemux.bind.listen`)."""
        from . import bind
        bind.listen(self, sock, backlog)

    def connect(self, sock: Socket, addr: str | bytes, port: int, *, handshake: bool = False,
                now: float | None = None) -> tuple[bytes, ...]:
        """connect(): an ESTABLISHED TCP connection or a connected UDP socket
        (:func:`pktdemux.connect.connect`).

        With ``handshake`` (TCP), the active open instead: the socket is
        SYN_SENT and its SYN is returned (also recorded as sent, and
        retransmitted by a timer until answered; :mod:`pktdemux.tcp_synsent`).
        ``now`` is when the application calls (seconds since the epoch;
        timers due before it fire first); None keeps :attr:`now`.
        """
        from . import connect
        self._call_at(now)
        sent = connect.connect(self, sock, addr, port, handshake=handshake)
        if sent:
            self._sent.record(sent, self.now)
        return sent

    def close(self, sock: Socket, *, now: float | None = None) -> tuple[bytes, ...]:
        """close(); returns the packets the kernel sends.

        A TCP connection whose sequence numbers are known closes in order
        (tcp_close): from ESTABLISHED a FIN and FIN_WAIT1, from CLOSE_WAIT a
        FIN and LAST_ACK; the connection stays in the tables (an orphan)
        until its last state ends, its FIN retransmitted until acknowledged
        or the retries run out (:mod:`pktdemux.tcp_rtx`).  With received
        data left unread in ``sock.inbox`` it is a RST+ACK instead, and the
        connection is gone.  Any other socket leaves every table at once
        (:func:`pktdemux.bind.close`), a SYN_SENT one silently.  ``now`` as
        for :meth:`connect`.
        """
        from . import bind, tcp_conn
        self._call_at(now)
        sent = tcp_conn.close(self, sock) if sock.proto is Proto.TCP else None
        if sent is None or sock.state is TcpState.CLOSE:
            bind.close(self, sock)
        if not sent:
            return ()
        self._sent.record(sent, self.now)
        return sent

    def shutdown_write(self, sock: Socket, *, now: float | None = None) -> tuple[bytes, ...]:
        """shutdown(SHUT_WR) of a TCP connection whose sequence numbers are
        known: the FIN, as :meth:`close` sends it, but the socket stays the
        application's (it still receives; FIN_WAIT2 does not time out).
        Returns the packets sent (none when there is nothing to shut).
        ``now`` as for :meth:`connect`.
        """
        from . import tcp_conn
        self._call_at(now)
        sent = tcp_conn.shutdown_write(self, sock)
        if sent:
            self._sent.record(sent, self.now)
        return sent

    def recv(self, sock: Socket, *, now: float | None = None) -> tuple[bytes, ...]:
        """The application reads all the data a TCP connection holds
        (tcp_recvmsg, :func:`pktdemux.tcp_conn.app_reads`): its receive
        buffer is freed.  Returns the packets the kernel sends: a window
        update when the read opened the window wide (tcp_cleanup_rbuf).
        ``now`` as for :meth:`connect`.
        """
        from . import tcp_conn
        self._call_at(now)
        if sock.proto is not Proto.TCP:
            return ()
        sent = tcp_conn.app_reads(self, sock)
        if sent:
            self._sent.record(sent, self.now)
        return sent

    def so_error(self, sock: Socket) -> int:
        """getsockopt(SO_ERROR): the pending error (an errno value, 0 for
        none), which reading clears (sock_getsockopt: sock_error)."""
        error, sock.so_error = sock.so_error, 0
        return error

    def _call_at(self, now: float | None) -> None:
        if now is not None:
            self.advance(now)
            self.now = max(self.now, now)
