"""Differential testing against the real kernel: run one case on Linux (in a
private network namespace, through :mod:`pktdemux.oracle`) and on the
emulation (a Kernel built from the same host file with a fixed seed), then
compare per packet the replies, byte for byte after masking the fields Linux
draws at random, and what the sockets received.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from ci_support import unavailable

from pktdemux.matching import describe_fields, first_difference, mask_random_fields
from pktdemux.oracle import (
    ConnectionState,
    HostSetup,
    Injection,
    OracleResult,
    OracleUnavailable,
    Scenario,
    SocketCall,
    final_ack,
    run_scenario,
)
from pktdemux.oracle.segments import PEER_WINDOW
from pktdemux.verdict import Verdict

#: Emulation clock at the first injection (seconds since the epoch).
T0 = 1_700_000_000.0
#: Emulation seed: fixed, so that a failure reproduces.
SEED = 0


def require_oracle(exc: OracleUnavailable) -> None:
    """Skip (outside CI) or fail (in CI) a test whose oracle is unavailable."""
    unavailable(f"real-kernel comparison impossible here: {exc.reason}")


# --------------------------------------------------------------------------- host files

def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, int or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def host_toml(
    sockets: Sequence[Mapping[str, Any]] = (),
    *,
    addresses: Sequence[str] = ("10.0.0.1/24", "fd00::1/64"),
    interface: str = "tun0",
    mtu: int | None = None,
    sysctls: Mapping[str, Any] | None = None,
    initrwnd: int | None = None,
) -> str:
    """Host-file TOML text for this host (keys with a None value are left out)."""
    lines = ["[host]", f"addresses = {toml_value(list(addresses))}", f"interface = {toml_value(interface)}"]
    if mtu is not None:
        lines.append(f"mtu = {mtu}")
    if initrwnd is not None:
        lines.append(f"initrwnd = {initrwnd}")
    if sysctls:
        lines += ["", "[sysctl]"] + [f"{toml_value(k)} = {toml_value(v)}" for k, v in sysctls.items()]
    for sock in sockets:
        lines += ["", "[[sockets]]"] + [f"{k} = {toml_value(v)}" for k, v in sock.items() if v is not None]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- cases

@dataclass
class Case:
    """One namespace's worth of comparison: a host file and the packets.

    Attributes:
        name: shown in every disagreement.
        host: host-file TOML text (the oracle and the emulation both read it).
        packets: the injections; ``labels`` names them in reports (a vector
            id such as ``"T01"``), defaulting to their index.
        settle: seconds to listen after the last step.
        calls: the host application's socket calls between the injections;
            ``call_labels`` names them.
    """

    name: str
    host: str
    packets: list[Injection] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    settle: float = 0.05
    calls: list[SocketCall] = field(default_factory=list)
    call_labels: list[str] = field(default_factory=list)

    @property
    def last_offset(self) -> float | None:
        """The offset of the latest step (injection or call), None before the first."""
        offsets = [p.offset for p in self.packets[-1:]] + [c.offset for c in self.calls[-1:]]
        return max(offsets) if offsets else None

    def _next_offset(self, gap: float) -> float:
        last = self.last_offset
        return 0.0 if last is None else last + gap

    def add(self, packet: bytes, *, gap: float = 0.003, label: str = "", complete_handshake: bool = False,
            ack_from_isn: bool = False, quote_from_isn: bool = False) -> None:
        """Append ``packet``, ``gap`` seconds after the previous step (a
        packet at the offset of a call comes before it: give a gap)."""
        self.packets.append(Injection(self._next_offset(gap), bytes(packet), complete_handshake, ack_from_isn,
                                      quote_from_isn))
        self.labels.append(label or str(len(self.packets) - 1))

    def call(self, socket: str, call: str, *, peer: str | None = None, gap: float = 0.003, label: str = "") -> None:
        """Append a socket call (:class:`pktdemux.oracle.SocketCall`), ``gap``
        seconds after the previous step; at gap 0 it follows the packet."""
        self.calls.append(SocketCall(self._next_offset(gap), socket, call, peer))
        self.call_labels.append(label or f"{socket} {call}")

    def scenario(self) -> Scenario:
        """The oracle's view of this case."""
        return Scenario(HostSetup.from_toml(self.host), tuple(self.packets), settle=self.settle, name=self.name,
                        calls=tuple(self.calls))


@dataclass
class EmulatedPacket:
    """The emulation's outcome for one injection (and its handshake ACK);
    ``error`` describes an exception Kernel.receive raised (a core bug)."""

    verdicts: list[Verdict]
    replies: list[bytes]
    followup: bytes | None = None
    error: str | None = None


def connection_tcb_values(conn: ConnectionState) -> dict[str, Any]:
    """The TCB values (:class:`pktdemux.tcp_tcb.Tcb` attribute names) of the
    connection the oracle made: its ISNs, sequence numbers and windows, no
    TCP options (the oracle's SYN offers only an MSS)."""
    return {
        "iss": conn.local_isn, "irs": conn.peer_isn, "snd_una": conn.snd_nxt, "snd_nxt": conn.snd_nxt,
        "rcv_nxt": conn.rcv_nxt, "rcv_wup": conn.rcv_nxt, "rcv_wnd": conn.window,
        "snd_wnd": PEER_WINDOW, "max_window": PEER_WINDOW, "synced": True,
    }


def new_connection_tcb(kernel: Any, conn: ConnectionState, mtu: int | None) -> Any:
    """The TCB the emulation gives a connection it accepted after the
    oracle's handshake (a SYN offering only an MSS): our MSS from the device
    MTU, no window scaling, no timestamps, a random IPv4 ID start
    (:func:`pktdemux.tcp_listen.new_request`); the SYN-ACK's window comes
    with the sequence numbers (:func:`connection_tcb_values`)."""
    from pktdemux.tcp_tcb import Tcb

    v6 = ":" in conn.local
    mss = (mtu or 1500) - (60 if v6 else 40)
    return Tcb(mss=mss, rcv_mss=mss, ip_id=kernel.entropy.socket_ip_id())


def give_connection_state(kernel: Any, connections: Iterable[ConnectionState], host: HostSetup) -> None:
    """Start the emulation's ESTABLISHED sockets from the kernel's sequence
    numbers (the ISN is random on Linux).  A host-file connection has no TCB
    until its first segment (the emulation would learn one from it): it gets
    :func:`new_connection_tcb` first.  Attributes the TCB lacks are skipped.
    The RTT estimate starts from the kernel's handshake sample (TCP_INFO), so
    that the RTO, and the FIN's retransmissions, are the kernel's."""
    by_name = {s.display_name: s for s in kernel.sockets}
    for conn in connections:
        sock = by_name.get(host.sockets[conn.index].display_name)
        if sock is None:
            continue
        if getattr(sock, "tcb", None) is None:
            sock.tcb = new_connection_tcb(kernel, conn, host.mtu)
        tcb = sock.tcb
        for attr, value in connection_tcb_values(conn).items():
            if hasattr(tcb, attr):
                setattr(tcb, attr, value)
        if getattr(conn, "rtt_us", 0) and hasattr(tcb, "rtt"):
            from pktdemux import tcp_rtx

            tcp_rtx.seed(kernel, tcb, conn.rtt_us)  # the handshake's RTT sample, as the kernel measured it


def run_emulation(
    case: Case, seed: int = SEED, *, oracle: OracleResult | None = None
) -> tuple[Any, list[EmulatedPacket]]:
    """Feed the case's packets to a Kernel built from its host file.

    Each packet is received at ``T0 + offset`` on the host's interface; for a
    ``complete_handshake`` injection the final ACK is built from the
    emulation's own SYN-ACK, as the oracle does from the kernel's.  Given the
    kernel's ``oracle`` result, the emulation gets the bytes the oracle really
    injected and the kernel's connection state.
    """
    from pktdemux.hostfile import build_kernel, parse_host

    kernel = build_kernel(parse_host(case.host, f"<{case.name}>"), seed=seed)
    kernel.autoread = False  # the oracle's applications read nothing unless a case says so
    host = HostSetup.from_toml(case.host)
    device = host.interface
    packets = [injection.packet for injection in case.packets]
    if oracle is not None:
        packets = [p.packet for p in oracle.packets]
        give_connection_state(kernel, oracle.connections, host)
    out = []
    for injection, packet in zip(case.packets, packets):
        now = T0 + injection.offset
        try:
            verdict = kernel.receive(packet, now=now, device=device)
        except Exception as exc:  # reported per packet: receive() must never raise
            out.append(EmulatedPacket([], [], error=_exception_note(exc)))
            continue
        result = EmulatedPacket([verdict], list(verdict.replies))
        if injection.complete_handshake:
            for reply in verdict.replies:
                ack = final_ack(packet, reply)
                if ack is not None:
                    try:
                        more = kernel.receive(ack, now=now + 1e-6, device=device)
                    except Exception as exc:  # as above
                        result.error = f"on the handshake's final ACK: {_exception_note(exc)}"
                        break
                    result.verdicts.append(more)
                    result.replies += list(more.replies)
                    result.followup = ack
                    break
        out.append(result)
    return kernel, out


def _exception_note(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else ""
    return f"Kernel.receive raised {type(exc).__name__}: {exc}{where}"


# --------------------------------------------------------------------------- comparison

#: Hex shown per packet in a report (characters); longer packets are cut.
HEX_SHOWN = 240


def _hex(packet: bytes) -> str:
    text = packet.hex()
    return text if len(text) <= HEX_SHOWN else f"{text[:HEX_SHOWN]}... ({len(packet)} bytes)"


def summary(packet: bytes) -> str:
    """One line: addresses, ports, protocol and the telling header fields."""
    f = dict(describe_fields(packet))
    v6 = "ipv6.src" in f
    src, dst = (f.get("ipv6.src"), f.get("ipv6.dst")) if v6 else (f.get("ip.src"), f.get("ip.dst"))
    if "tcp.flags" in f:
        return (f"{src}:{f['tcp.sport']} > {dst}:{f['tcp.dport']} TCP {f['tcp.flags']} seq={f['tcp.seq']} "
                f"ack={f['tcp.ack']} win={f['tcp.window']} opts={f['tcp.options']} {f['tcp.payload'].split()[0]}B")
    if "udp.sport" in f:
        return f"{src}:{f['udp.sport']} > {dst}:{f['udp.dport']} UDP len={f['udp.length']} csum={f['udp.checksum']}"
    if "icmp.type" in f:
        kind = "ICMPv6" if v6 else "ICMP"
        return f"{src} > {dst} {kind} {f['icmp.type']}/{f['icmp.code']} rest={f['icmp.rest']}"
    proto = f.get("ipv6.next_header", f.get("ip.proto"))
    return f"{src} > {dst} proto={proto} {len(packet)}B"


def _reply_differences(kernel: Sequence[bytes], emulated: Sequence[bytes]) -> list[str]:
    notes = []
    for j, (k, e) in enumerate(zip(kernel, emulated)):
        if mask_random_fields(k) != mask_random_fields(e):
            notes.append(f"reply {j}: {first_difference(k, e) or 'bytes differ'}\n"
                         f"      kernel:    {summary(k)}\n        {_hex(k)}\n"
                         f"      emulation: {summary(e)}\n        {_hex(e)}")
    for j, k in enumerate(kernel[len(emulated):], len(emulated)):
        notes.append(f"reply {j} only from the kernel: {summary(k)}\n        {_hex(k)}")
    for j, e in enumerate(emulated[len(kernel):], len(kernel)):
        notes.append(f"reply {j} only from the emulation: {summary(e)}\n        {_hex(e)}")
    return notes


def _verdict_note(result: EmulatedPacket) -> str:
    parts = [result.error] if result.error else []
    for v in result.verdicts:
        who = ",".join(s.display_name for s in v.sockets)
        parts.append(f"{v.verdict} {v.reason or who} ({v.handler}: {v.note})")
    return "; ".join(parts)


def _plain(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def udp_datagram(packet: bytes) -> tuple[str, int, bytes] | None:
    """(source address, source port, payload) of a UDP packet, payload cut to
    the UDP length; None for anything else."""
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 28 and packet[9] == 17:
        ihl = (packet[0] & 0x0F) * 4
        src, l4 = packet[12:16], packet[ihl:int.from_bytes(packet[2:4], "big")]
    elif version == 6 and len(packet) >= 48 and packet[6] == 17:
        src, l4 = packet[8:24], packet[40:40 + int.from_bytes(packet[4:6], "big")]
    else:
        return None
    sport, _, length, _ = struct.unpack_from("!HHHH", l4)
    return str(ipaddress.ip_address(src)), sport, bytes(l4[8:length])


def tcp_endpoints(packet: bytes) -> tuple[str, int, str, int]:
    """(src, sport, dst, dport) of an IPv4/IPv6 TCP packet."""
    f = dict(describe_fields(packet))
    if "ipv6.src" in f:
        return f["ipv6.src"], int(f["tcp.sport"]), f["ipv6.dst"], int(f["tcp.dport"])
    return f["ip.src"], int(f["tcp.sport"]), f["ip.dst"], int(f["tcp.dport"])


def socket_groups(host: HostSetup) -> dict[str, str]:
    """Socket name → comparison group.  Members of one SO_REUSEPORT group
    share a group (which member gets a flow depends on the kernel's secret
    hash); every other socket is its own group."""
    groups = {}
    for sock in host.sockets:
        proto, addr, port, family = sock.endpoint
        if sock.reuseport:
            groups[sock.display_name] = f"reuseport {proto} {family} {addr} {port} {sock.v6only} {sock.device} {sock.uid}"
        else:
            groups[sock.display_name] = sock.display_name
    return groups


def _receipts(case: Case, oracle: OracleResult, emulated: Sequence[EmulatedPacket]) -> list[str]:
    """Disagreements about what each socket (group) received."""
    host = HostSetup.from_toml(case.host)
    groups = socket_groups(host)
    kernel_got: dict[str, Counter[Any]] = defaultdict(Counter)
    emul_got: dict[str, Counter[Any]] = defaultdict(Counter)
    for report in oracle.sockets:
        group = groups[report.name]
        for d in report.datagrams:
            kernel_got[group][("udp", _plain(d.src), d.sport, d.payload.hex())] += 1
        for a in report.accepted:
            kernel_got[group][("accept", _plain(a.peer), a.pport, _plain(a.local), a.lport)] += 1
    for injection, result in zip(oracle.packets, emulated):
        if not result.verdicts:
            continue
        first = result.verdicts[0]
        datagram = udp_datagram(injection.packet)
        if datagram is not None and first.delivered:
            for sock in first.sockets:
                if sock.display_name in groups:
                    src, sport, payload = datagram
                    emul_got[groups[sock.display_name]][("udp", _plain(src), sport, payload.hex())] += 1
        if result.followup is not None and len(result.verdicts) > 1 and result.verdicts[1].delivered:
            src, sport, dst, dport = tcp_endpoints(result.followup)
            for sock in result.verdicts[1].sockets[:1]:
                name = sock.display_name
                if name in groups:
                    emul_got[groups[name]][("accept", _plain(src), sport, _plain(dst), dport)] += 1
    notes = []
    for group in sorted(set(kernel_got) | set(emul_got)):
        only_k = kernel_got[group] - emul_got[group]
        only_e = emul_got[group] - kernel_got[group]
        if only_k or only_e:
            notes.append(f"socket {group}: only the kernel got {sorted(only_k.elements())}; "
                         f"only the emulation got {sorted(only_e.elements())}")
    return notes


def compare(case: Case, oracle: OracleResult, emulated: Sequence[EmulatedPacket]) -> list[str]:
    """Every disagreement between the kernel and the emulation, one text each
    naming the case, the packet (index or label, summary) and what differs."""
    notes = []
    for i, (mine, theirs) in enumerate(zip(emulated, oracle.packets)):
        diffs = _reply_differences(theirs.reply_bytes, mine.replies)
        if diffs or mine.error:
            head = (f"[{case.name}] packet {case.labels[i]} (#{i}): {summary(theirs.packet)}\n"
                    f"    incoming: {_hex(theirs.packet)}\n"
                    f"    emulation verdict: {_verdict_note(mine)}\n    ")
            notes.append(head + "\n    ".join(diffs))
    notes += [f"[{case.name}] {n}" for n in _receipts(case, oracle, emulated)]
    for report in oracle.sockets:
        if report.error:
            notes.append(f"[{case.name}] the kernel refused socket {report.name}: {report.error}")
    return notes


def run_both(case: Case, seed: int = SEED) -> tuple[OracleResult, list[EmulatedPacket], list[str]]:
    """Run ``case`` on the kernel and on the emulation, and compare.

    Skips (outside CI) or fails (in CI) when the kernel cannot be asked.
    """
    try:
        oracle = run_scenario(case.scenario())
    except OracleUnavailable as exc:
        require_oracle(exc)
        raise
    _, emulated = run_emulation(case, seed, oracle=oracle)
    return oracle, emulated, compare(case, oracle, emulated)


#: Disagreements listed in full in one failure message; the rest are counted.
NOTES_SHOWN = 40


def assert_agree(notes: Iterable[str]) -> None:
    """Fail with the disagreements listed (the first :data:`NOTES_SHOWN`)."""
    notes = list(notes)
    if notes:
        shown = "\n".join(notes[:NOTES_SHOWN])
        more = f"\n... and {len(notes) - NOTES_SHOWN} more" if len(notes) > NOTES_SHOWN else ""
        pytest.fail(f"{len(notes)} disagreement(s) between Linux and the emulation:\n{shown}{more}", pytrace=False)
