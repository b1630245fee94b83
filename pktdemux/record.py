"""Transcripts of a scenario: from the emulation, or from the real Linux kernel.

Both list, for each packet of the scenario, the packet (``<``) with its
verdict and the host's replies (``>``) at the packet's time; a
``handshake`` SYN is followed by the peer's final ACK, built from the
host's SYN-ACK (:func:`pktdemux.oracle.final_ack`), and its verdict.

The real kernel (:func:`pktdemux.oracle.run_scenario`, in a private
network namespace) shows its replies and what the sockets received, not
why it dropped a packet.  A recorded verdict is therefore what that
evidence proves, and ``*`` where it proves nothing (docs/golden.md):

* a socket read the UDP datagram, or accept()ed the connection of the
  SYN and its final ACK: ``deliver "<socket>"``;
* an ICMP/ICMPv6 echo reply: ``deliver kernel``;
* a RST answering a SYN, a port unreachable answering a UDP datagram:
  ``drop NO_SOCKET``;
* a SYN-ACK answering a SYN: ``deliver *``; anything else: ``*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .golden import Event, deliver_text, reuseport_groups, transcript, verdict_text

if TYPE_CHECKING:
    from .oracle import OracleResult
    from .scenario import Scenario

#: emulation clock at the first packet (seconds since the epoch; any value works)
T0 = 1_700_000_000.0
#: seconds the real kernel is given to answer the last packet
SETTLE = 0.1


def emulated(scenario: Scenario, seed: int = 0) -> str:
    """The emulation's transcript of ``scenario``.

    Raises:
        HostFileError: when the host's sockets cannot be created.
    """
    from .hostfile import build_kernel

    kernel = build_kernel(scenario.host, seed=seed)
    return transcript(scenario.host, _emulated_events(kernel, scenario))


def _emulated_events(kernel: Any, scenario: Scenario) -> Iterator[Event]:
    from .oracle import final_ack

    device = kernel.default_device
    for packet in scenario.packets:
        now = T0 + packet.offset
        verdict = kernel.receive(packet.data, now=now, device=device)
        yield Event(packet.offset, True, packet.data, False, verdict_text(verdict, scenario.host))
        for reply in verdict.replies:
            yield Event(packet.offset, False, reply, True)
            ack = final_ack(packet.data, reply) if packet.handshake else None
            if ack is not None:
                more = kernel.receive(ack, now=now + 1e-6, device=device)
                yield Event(packet.offset, True, ack, False, verdict_text(more, scenario.host))
                yield from (Event(packet.offset, False, r, True) for r in more.replies)


def oracle_scenario(scenario: Scenario) -> Any:
    """The :class:`pktdemux.oracle.Scenario` that runs ``scenario`` on Linux."""
    from .oracle import HostSetup, Injection
    from .oracle import Scenario as OracleScenario

    injections = tuple(Injection(p.offset, p.data, complete_handshake=p.handshake) for p in scenario.packets)
    return OracleScenario(HostSetup.from_toml(scenario.host_text), injections, settle=SETTLE, name=scenario.path)


def recorded(scenario: Scenario, kernel_release: str = "") -> str:
    """The real kernel's transcript of ``scenario`` (needs root).

    Args:
        kernel_release: shown in a comment line (e.g. ``platform.release()``).

    Raises:
        OracleUnavailable: no network namespace or TUN device here.
        OracleError: the run failed.
        RecordError: the kernel refused one of the host's sockets.
    """
    from .oracle import run_scenario

    result = run_scenario(oracle_scenario(scenario))
    refused = [f"{s.name}: {s.error}" for s in result.sockets if s.error]
    if refused:
        raise RecordError(scenario.path, "host", f"the kernel refused socket {refused[0]}")
    comment = f"recorded on Linux {kernel_release}".rstrip()
    return transcript(scenario.host, _recorded_events(scenario, result), comments=[comment])


def _recorded_events(scenario: Scenario, result: OracleResult) -> Iterator[Event]:
    evidence = _Evidence(scenario, result)
    for packet, ran in zip(scenario.packets, result.packets):
        replies = list(ran.reply_bytes)
        yield Event(packet.offset, True, ran.packet, False, evidence.verdict(ran.packet, replies))
        for i, reply in enumerate(replies):
            yield Event(packet.offset, False, reply, True)
            if ran.followup is not None and i == 0:
                yield Event(packet.offset, True, ran.followup, False, evidence.verdict(ran.followup, replies[1:]))


class _Evidence:
    """What the kernel's sockets received, consumed packet by packet."""

    def __init__(self, scenario: Scenario, result: OracleResult) -> None:
        groups = reuseport_groups(scenario.host)
        self.names = [f"group {s.label}" if s.reuseport and s.label in groups else s.name or s.label
                      for s in scenario.host.sockets]
        self.datagrams = [(r.index, _plain(d.src), d.sport, d.payload) for r in result.sockets for d in r.datagrams]
        self.accepted = {(_plain(a.peer), a.pport, _plain(a.local), a.lport): r.index
                         for r in result.sockets for a in r.accepted}

    def verdict(self, packet: bytes, replies: list[bytes]) -> str:
        """The verdict ``packet`` provably got, given the replies that followed it."""
        from .oracle.segments import parse_tcp

        udp = _udp(packet)
        if udp is not None:
            takers = [d for d in self.datagrams if d[1:] == udp]
            if takers:
                self.datagrams = [d for d in self.datagrams if d not in takers]
                return deliver_text(sorted({self.names[d[0]] for d in takers}))
            return "drop NO_SOCKET" if replies and _port_unreachable(replies[0]) else "*"
        tcp = parse_tcp(packet)
        if tcp is not None:
            key = (_plain_bytes(tcp.src), tcp.sport, _plain_bytes(tcp.dst), tcp.dport)
            if key in self.accepted and not tcp.flags & 0x04:
                return deliver_text([self.names[self.accepted[key]]])
            reply = parse_tcp(replies[0]) if replies else None
            if tcp.flags & 0x12 == 0x02 and reply is not None:
                if reply.flags & 0x04:
                    return "drop NO_SOCKET"
                if reply.flags & 0x12 == 0x12:
                    return "deliver *"
            return "*"
        if replies and _echo_reply(replies[0]):
            return deliver_text([])
        return "*"


def _plain(text: str) -> str:
    """The address, a v4-mapped one as IPv4 (as AF_INET6 sockets report it)."""
    import ipaddress

    addr = ipaddress.ip_address(text)
    return str(addr.ipv4_mapped) if addr.version == 6 and addr.ipv4_mapped else str(addr)


def _plain_bytes(addr: bytes) -> str:
    import ipaddress

    return _plain(str(ipaddress.ip_address(addr)))


def _udp(packet: bytes) -> tuple[str, int, bytes] | None:
    """(source, source port, payload) of a whole UDP packet without options."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 28 and packet[9] == 17:
        src, seg = packet[12:16], packet[(packet[0] & 15) * 4:]
    elif version == 6 and len(packet) >= 48 and packet[6] == 17:
        src, seg = packet[8:24], packet[40:]
    else:
        return None
    length = int.from_bytes(seg[4:6], "big")
    return _plain_bytes(src), int.from_bytes(seg[0:2], "big"), bytes(seg[8:length])


def _icmp(packet: bytes) -> tuple[int, int, int] | None:
    """(version, ICMP type, code) of an ICMP or ICMPv6 packet."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 22 and packet[9] == 1:
        at = (packet[0] & 15) * 4
        return 4, packet[at], packet[at + 1]
    if version == 6 and len(packet) >= 42 and packet[6] == 58:
        return 6, packet[40], packet[41]
    return None


def _port_unreachable(packet: bytes) -> bool:
    return _icmp(packet) in ((4, 3, 3), (6, 1, 4))


def _echo_reply(packet: bytes) -> bool:
    found = _icmp(packet)
    return found is not None and found[:2] in ((4, 0), (6, 129))


class RecordError(InputError):
    """A scenario the real kernel could not set up as written."""
