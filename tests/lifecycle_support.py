"""Comparisons with Linux over time: the packets of a case go to the real
kernel (pktdemux.oracle) and to the emulation on the same timeline, and
everything each one sends is compared, timer output included.

* The emulation receives each packet at ``T0 +`` the time the oracle really
  wrote it (``sent_at``), so that both clocks agree to within the kernel's
  processing time; a ``complete_handshake`` ACK follows one microsecond
  later, as it does on Linux.
* What the emulation's timers send is attributed to the step before it,
  as the oracle attributes what the kernel sent between two steps.
* A socket call of the case (close(), shutdown(SHUT_WR), connect(),
  reading SO_ERROR) is made on the emulation at the time the oracle made
  it; a connect() takes the ISN of the kernel's SYN (Kernel.transmit), as
  a request takes the kernel's SYN-ACK ISN (:func:`adopt_isns`).
* Per packet, replies are paired by content (random fields masked) and by
  time (:data:`TIME_SLACK`): timers that fire together may fire in either
  order, and Linux's timer wheel fires a 1 s timer a few tens of ms late.
* For rate limits, a reply is tied to the packet it answers by content:
  :func:`reference_replies` gives each packet's reply from a fresh emulated
  host, whose rate-limit buckets are full.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernel_support import (
    SEED,
    T0,
    Case,
    EmulatedPacket,
    _exception_note,
    _hex,
    _receipts,
    _verdict_note,
    give_connection_state,
    summary,
)
from tcp_helpers import segment, tcp_flags

from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.matching import first_difference, mask_random_fields
from pktdemux.oracle import HostSetup, OracleResult, final_ack

#: How far apart (seconds) the kernel's and the emulation's times of one
#: packet may be: the kernel's timer wheel (HZ=250 here) fires a 1 s timer
#: up to a few tens of ms late, and the oracle stamps a packet when it reads it.
TIME_SLACK = 0.25

Timed = tuple[float, bytes]


@dataclass
class EmulatedCall:
    """The emulation's side of one socket call.

    Attributes:
        replies: what it sent after the call until the next step (timer
            output included), with ``times`` parallel to it.
        state: the socket's state afterwards (TcpState member name), None
            once the application closed it.
        so_error: for ``status``, the errno name SO_ERROR held, else None.
        table: for ``status``, the emulated TCP table, as
            :func:`emulated_table` gives it.
        error: an exception the emulated call raised (a bug), else None.
    """

    replies: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    state: str | None = None
    so_error: str | None = None
    table: list[tuple[str, int, str, int, str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Timeline:
    """Both sides of one case.

    Attributes:
        oracle: what Linux did.
        emulated: per packet, the emulation's verdicts and replies (timer
            output that fired before the next step included).
        times: per packet, the time of each emulated reply (seconds after
            the first injection), parallel to ``emulated[i].replies``.
        kernel: the emulated kernel after the run (its sockets, timers).
        calls: per socket call, the emulation's side.
        clients: the sockets the emulated connect() calls made, by name.
    """

    oracle: OracleResult
    emulated: list[EmulatedPacket]
    times: list[list[float]]
    kernel: Any
    calls: list[EmulatedCall] = field(default_factory=list)
    clients: dict[str, Any] = field(default_factory=dict)

    def kernel_replies(self, i: int) -> list[Timed]:
        """Linux's replies after packet ``i``, with their times."""
        return [(r.at, r.packet) for r in self.oracle.packets[i].replies]

    def emulated_replies(self, i: int) -> list[Timed]:
        """The emulation's replies after packet ``i``, with their times."""
        return list(zip(self.times[i], self.emulated[i].replies))

    def all_kernel(self) -> list[Timed]:
        return [t for i in range(len(self.emulated)) for t in self.kernel_replies(i)]

    def all_emulated(self) -> list[Timed]:
        return [t for i in range(len(self.emulated)) for t in self.emulated_replies(i)]

    def socket(self, name: str) -> Any:
        """The emulated socket with this display name (or a connect() call's)."""
        if name in self.clients:
            return self.clients[name]
        return next(s for s in self.kernel.sockets if s.display_name == name)

    def call_replies(self, j: int) -> tuple[list[Timed], list[Timed]]:
        """Linux's and the emulation's replies after socket call ``j``, with their times."""
        mine = self.calls[j]
        return [(r.at, r.packet) for r in self.oracle.calls[j].replies], list(zip(mine.times, mine.replies))

    def report(self, name: str) -> Any:
        """Linux's report on the host socket with this display name."""
        return next(r for r in self.oracle.sockets if r.name == name)


def emulate(case: Case, oracle: OracleResult, seed: int = SEED) -> Timeline:
    """Run ``case`` on the emulation on the oracle's timeline (see the module
    docstring), with the kernel's connection state handed over."""
    kernel = build_kernel(parse_host(case.host, f"<{case.name}>"), seed=seed)
    kernel.autoread = False  # as the oracle's applications: they read at ``recv`` calls only
    host = HostSetup.from_toml(case.host)
    device = host.interface
    give_connection_state(kernel, oracle.connections, host)
    run = Timeline(oracle, [], [], kernel)
    last: tuple[list[bytes], list[float]] | None = None

    def timer_output() -> None:
        fired = [(f.time - T0, p) for f in kernel.drain_timer_output() for p in f.packets]
        if last is not None:
            last[0].extend(p for _, p in fired)
            last[1].extend(t for t, _ in fired)

    for kind, index in case.scenario().steps():
        if kind == "call":
            kernel.advance(T0 + oracle.calls[index].at)
            timer_output()
            mine = _emulate_call(run, case.calls[index], oracle.calls[index], device)
            run.calls.append(mine)
            last = (mine.replies, mine.times)
            continue
        entry, stamps = _emulate_packet(kernel, case.packets[index], oracle.packets[index], device, timer_output)
        run.emulated.append(entry)
        run.times.append(stamps)
        last = (entry.replies, stamps)
    steps_at = [p.sent_at for p in oracle.packets] + [c.at for c in oracle.calls]
    kernel.advance(T0 + max(steps_at, default=0.0) + case.settle)
    timer_output()
    return run


def _emulate_packet(kernel: Any, injection: Any, result: Any, device: str,
                    timer_output: Callable[[], None]) -> tuple[EmulatedPacket, list[float]]:
    """One injection on the emulation: the bytes the oracle really wrote, at
    its time, and the handshake's final ACK after a SYN-ACK."""
    packet, offset = result.packet, result.sent_at
    try:
        verdict = kernel.receive(packet, now=T0 + offset, device=device)
    except Exception as exc:  # noqa: BLE001 (reported per packet: receive() must never raise)
        timer_output()
        return EmulatedPacket([], [], error=_exception_note(exc)), []
    timer_output()
    entry = EmulatedPacket([verdict], list(verdict.replies))
    stamps = [offset] * len(verdict.replies)
    adopted = adopt_isns(kernel, result, T0 + offset)
    if injection.complete_handshake and result.followup is not None:  # as far as the oracle got
        for reply in verdict.replies:
            ack = final_ack(packet, reply)
            if ack is None:
                continue
            if flow_of(reply) in adopted:
                ack = result.followup  # the kernel's own final ACK: the ISN is the same now
            try:
                more = kernel.receive(ack, now=T0 + offset + 1e-6, device=device)
            except Exception as exc:  # noqa: BLE001 (as above)
                entry.error = f"on the handshake's final ACK: {_exception_note(exc)}"
                break
            entry.verdicts.append(more)
            entry.replies += list(more.replies)
            stamps += [offset] * len(more.replies)
            entry.followup = ack
            break
    return entry, stamps


def _emulate_call(run: Timeline, call: Any, result: Any, device: str) -> EmulatedCall:
    """One socket call on the emulation, at the time the oracle made it."""
    import errno

    from pktdemux.oracle.scenario import parse_endpoint

    kernel, now = run.kernel, T0 + result.at
    mine = EmulatedCall()
    try:
        if call.call == "connect":
            addr, port, version = parse_endpoint(call.peer)
            sock = run.clients[call.socket] = kernel.socket("tcp", version)
            sent = kernel.connect(sock, addr, port, handshake=True, now=now)
            for reply in result.replies:  # the kernel's SYN: its ISN and TSval offset
                if _is_tcp(reply.packet) and tcp_flags(reply.packet) & 0x12 == 0x02:
                    kernel.transmit(reply.packet, T0 + reply.at)
        else:
            sock = run.socket(call.socket)
            if call.call == "close":
                sent = kernel.close(sock, now=now)
            elif call.call == "shutdown_wr":
                sent = kernel.shutdown_write(sock, now=now)
            elif call.call == "recv":
                sent = kernel.recv(sock, now=now)
            else:
                sent = ()
                error = kernel.so_error(sock)
                mine.so_error = errno.errorcode[error] if error else None
                mine.table = emulated_table(kernel)
    except Exception as exc:  # noqa: BLE001 (a bug of the emulation, reported with the call)
        mine.error = _exception_note(exc).replace("Kernel.receive", f"the emulated {call.call}")
        return mine
    mine.replies += sent
    mine.times += [result.at] * len(sent)
    mine.state = None if call.call == "close" else sock.state.name
    return mine


def emulated_table(kernel: Any) -> list[tuple[str, int, str, int, str]]:
    """The emulated TCP table as /proc/net/tcp shows it, sorted: listeners
    (remote ``0.0.0.0``/``::`` port 0) and the established table
    (connections, requests, orphans, TIME_WAIT entries); IPv4 in v4-mapped
    addresses shown plain."""
    from pktdemux.wire import format_addr

    def text(addr: bytes) -> str:
        return format_addr(addr[12:] if addr[:12] == bytes(10) + b"\xff\xff" else addr)

    rows = [(text(s.local_addr), s.local_port, "::" if s.family == 6 else "0.0.0.0", 0, "LISTEN")
            for s in kernel.tcp.listeners()]
    rows += [(text(s.local_addr), s.local_port, text(s.remote_addr), s.remote_port, s.state.name)
             for s in kernel.tcp.established.values()]
    return sorted(rows)


def kernel_table(result: Any) -> list[tuple[str, int, str, int, str]]:
    """A ``status`` call's TCP table of Linux, in :func:`emulated_table` form."""
    return sorted((e.local, e.lport, e.remote, e.rport, e.state) for e in result.table)


#: (local address, local port, peer address, peer port) of a connection
Flow = tuple[str, int, str, int]


def bracket(addr: str) -> str:
    """An address as a host file writes it before ``:port``."""
    return f"[{addr}]" if ":" in addr else addr


def connection_sockets(connections: dict[str, Flow], **options: Any) -> list[dict[str, Any]]:
    """Host-file ``[[sockets]]`` entries for ESTABLISHED connections the
    oracle makes (its handshake, spec §12.2), named after their keys."""
    return [{"name": vid, "label": f"tcp://{bracket(local)}:{port}", "peer": f"{bracket(peer)}:{pport}", **options}
            for vid, (local, port, peer, pport) in connections.items()]


@dataclass
class Peer:
    """The peer's side of a case's oracle-made connections: segments whose
    sequence number counts from RCV.NXT (the oracle's SYN + 1) and whose
    acknowledgment counts from the host's ISN (the oracle adds it).

    Attributes:
        case: where the segments go, labelled ``"<id> <what>"``.
        connections: connection id → its flow.
    """

    case: Case
    connections: dict[str, Flow]

    def send(self, vid: str, what: str, flags: str, seq_from_rcv_nxt: int = 0, *, ack: int | None = 1,
             payload: bytes = b"", gap: float = 0.01, seq: int | None = None, **extra: Any) -> None:
        """A segment on connection ``vid``; ``ack`` None sends ack 0 as it is,
        ``seq`` an absolute sequence number."""
        from pktdemux.oracle.host_sockets import PEER_ISN

        local, port, peer, pport = self.connections[vid]
        s = seq if seq is not None else PEER_ISN + 1 + seq_from_rcv_nxt
        pkt = segment(peer, local, pport, port, flags, seq=s & 0xFFFFFFFF, ack=ack or 0, window=64240,
                      payload=payload)
        self.case.add(pkt, gap=gap, label=f"{vid} {what}", ack_from_isn=ack is not None, **extra)


def flow_of(packet: bytes) -> tuple[int, int]:
    """(source port, destination port) of a TCP packet."""
    l4 = 40 if packet[0] >> 4 == 6 else (packet[0] & 0x0F) * 4
    return int.from_bytes(packet[l4:l4 + 2], "big"), int.from_bytes(packet[l4 + 2:l4 + 4], "big")


def adopt_isns(kernel: Any, result: Any, now: float) -> set[tuple[int, int]]:
    """Hand the ISN of every SYN-ACK Linux sent after this packet to the
    emulation's pending request of the same 4-tuple (Kernel.transmit, as a
    capture's own SYN-ACK would), so that what follows from the ISN (the
    final ACK, a RST's seq = SEG.ACK, a request's ACK) compares byte for
    byte.  A SYN cookie has no request: it keeps the emulation's ISN.
    Returns the flows whose request took the kernel's ISN."""
    from pktdemux.sockets import TcpState

    adopted = set()
    for reply in result.replies:
        packet = reply.packet
        if packet[0] >> 4 not in (4, 6) or (packet[9] if packet[0] >> 4 == 4 else packet[6]) != 6:
            continue
        l4 = 40 if packet[0] >> 4 == 6 else (packet[0] & 0x0F) * 4
        if packet[l4 + 13] & 0x12 != 0x12:
            continue
        kernel.transmit(packet, now)
        src, dst = (packet[8:24], packet[24:40]) if l4 == 40 else (packet[12:16], packet[16:20])
        sport, dport = flow_of(packet)
        req = kernel.tcp.established.get((src, sport, dst, dport))
        if req is not None and req.state is TcpState.SYN_RECV:
            adopted.add((sport, dport))
    return adopted


def run_timeline(oracle_runner: Callable[..., OracleResult], case: Case, seed: int = SEED) -> Timeline:
    """``case`` on Linux (through the session's oracle fixture) and on the emulation."""
    return emulate(case, oracle_runner(case.scenario()), seed)


def _is_tcp(packet: bytes) -> bool:
    version = packet[0] >> 4
    return (version == 4 and packet[9] == 6) or (version == 6 and packet[6] == 6)


def _pair(kernel: Sequence[Timed], emulated: Sequence[Timed], slack: float) -> tuple[list[Timed], list[Timed]]:
    """Pair equal packets (random fields masked) sent within ``slack`` of
    each other; returns the unpaired ones of each side."""
    left = list(emulated)
    unpaired = []
    for tk, k in kernel:
        masked = mask_random_fields(k)
        match = next((j for j, (te, e) in enumerate(left)
                      if abs(te - tk) <= slack and mask_random_fields(e) == masked), None)
        if match is None:
            unpaired.append((tk, k))
        else:
            del left[match]
    return unpaired, left


def differences(case: Case, run: Timeline, slack: float = TIME_SLACK, *, labels: str | None = None,
                flows: Sequence[tuple[int, int]] | None = None, sockets: Sequence[str] | None = None) -> list[str]:
    """Every disagreement: per step (packet or socket call), replies only
    one side sent (with the nearest packet of the other side and its first
    differing field), then what the sockets received and sockets the kernel
    refused.  A socket call also disagrees on the socket's state afterwards
    and, for ``status``, on SO_ERROR and the TCP table.

    ``labels`` keeps only the steps whose label starts with it; ``flows``
    only the TCP replies from one of these (local port, peer port) pairs,
    after whichever step they came (a timer's output comes after the step
    before it) and only those flows' table lines; ``sockets`` only the
    receipts of those sockets (all when None).
    """
    wanted_flows = None if flows is None else set(flows)

    def keep(replies: list[Timed]) -> list[Timed]:
        if wanted_flows is None:
            return replies
        return [(t, p) for t, p in replies if _is_tcp(p) and flow_of(p) in wanted_flows]

    notes = []
    for i, result in enumerate(run.oracle.packets):
        if labels is not None and not case.labels[i].startswith(labels):
            continue
        mine = run.emulated[i]
        only_k, only_e = _pair(keep(run.kernel_replies(i)), keep(run.emulated_replies(i)), slack)
        if only_k or only_e or mine.error:
            notes.append(_step_note(
                [f"[{case.name}] packet {case.labels[i]} (#{i}, at {result.sent_at:.3f}): {summary(result.packet)}",
                 f"    incoming: {_hex(result.packet)}", f"    emulation verdict: {_verdict_note(mine)}"],
                only_k, only_e))
    for j, result in enumerate(run.oracle.calls):
        if labels is not None and not case.call_labels[j].startswith(labels):
            continue
        mine, (theirs, ours) = run.calls[j], run.call_replies(j)
        only_k, only_e = _pair(keep(theirs), keep(ours), slack)
        lines = [f"    {what}: Linux {k}, the emulation {e}" for what, k, e in (
            ("state afterwards", result.state, mine.state), ("SO_ERROR", result.so_error, mine.so_error)) if k != e]
        if result.call == "status":
            lines += _table_lines(kernel_table(result), mine.table, wanted_flows)
        if mine.error:
            lines.append(f"    {mine.error}")
        if only_k or only_e or lines:
            head = f"[{case.name}] call {case.call_labels[j]} (at {result.at:.3f}): {result.call} {result.socket}"
            notes.append(_step_note([head, *lines], only_k, only_e))
    wanted = None if sockets is None else tuple(f"socket {name}:" for name in sockets)
    notes += [f"[{case.name}] {n}" for n in _receipts(case, run.oracle, run.emulated)
              if wanted is None or n.startswith(wanted)]
    notes += [f"[{case.name}] the kernel refused socket {r.name}: {r.error}" for r in run.oracle.sockets
              if r.error and (sockets is None or r.name in sockets)]
    return notes


def flow_differences(case: Case, run: Timeline, flow: tuple[int, int], slack: float = TIME_SLACK) -> list[str]:
    """Disagreements on one TCP flow (local port, peer port) over the whole
    timeline: every packet of the flow either side sent, after any step,
    paired by content (random fields masked) within ``slack`` seconds, so
    that an ACK Linux delays past the next step still pairs with the
    emulation's at once."""
    def of_flow(replies: list[Timed]) -> list[Timed]:
        return [(t, p) for t, p in replies if _is_tcp(p) and flow_of(p) == flow]

    theirs = run.all_kernel() + [t for j in range(len(run.calls)) for t in run.call_replies(j)[0]]
    ours = run.all_emulated() + [t for j in range(len(run.calls)) for t in run.call_replies(j)[1]]
    only_k, only_e = _pair(sorted(of_flow(theirs)), sorted(of_flow(ours)), slack)
    if not only_k and not only_e:
        return []
    return [_step_note([f"[{case.name}] flow {flow[0]} <-> {flow[1]}"], only_k, only_e)]


def _step_note(lines: list[str], only_k: list[Timed], only_e: list[Timed]) -> str:
    """One step's disagreement: its head lines, then the unpaired replies."""
    for tk, k in only_k:
        near = min(only_e, key=lambda ev: abs(ev[0] - tk), default=None)
        why = f"\n      nearest from the emulation at {near[0]:.3f}: {first_difference(k, near[1])}" if near else ""
        lines.append(f"    only the kernel at {tk:.3f}: {summary(k)}\n        {_hex(k)}{why}")
    for te, e in only_e:
        lines.append(f"    only the emulation at {te:.3f}: {summary(e)}\n        {_hex(e)}")
    return "\n".join(lines)


def _table_lines(kernel: list[tuple[str, int, str, int, str]], emulated: list[tuple[str, int, str, int, str]],
                 flows: set[tuple[int, int]] | None) -> list[str]:
    """TCP table lines only one side has (of the wanted flows)."""
    def keep(rows: list[tuple[str, int, str, int, str]]) -> list[tuple[str, int, str, int, str]]:
        return [r for r in rows if flows is None or (r[1], r[3]) in flows]

    only_k = [r for r in keep(kernel) if r not in emulated]
    only_e = [r for r in keep(emulated) if r not in kernel]
    return [f"    TCP table: only Linux has {r}" for r in only_k] + \
        [f"    TCP table: only the emulation has {r}" for r in only_e]


# --------------------------------------------------------------------------- rate limits

def reference_replies(host: str, packets: Sequence[bytes], device: str) -> list[bytes]:
    """Each packet's one reply from a fresh emulated host (full rate-limit
    buckets); raises if a packet gets no reply or several."""
    refs = []
    for i, packet in enumerate(packets):
        kernel = build_kernel(parse_host(host, "<reference>"), seed=SEED)
        replies = kernel.receive(packet, now=T0, device=device).replies
        if len(replies) != 1:
            raise AssertionError(f"packet {i} gets {len(replies)} replies from a fresh host: {summary(packet)}")
        refs.append(mask_random_fields(replies[0]))
    return refs


def answered(replies: Sequence[bytes], refs: Sequence[bytes]) -> tuple[list[int], list[bytes]]:
    """Which packets the ``replies`` answer, by content (in reply order),
    and the replies that answer none of them (wrong bytes)."""
    index: dict[bytes, list[int]] = {}
    for i, ref in enumerate(refs):
        index.setdefault(ref, []).append(i)
    which, strays = [], []
    for reply in replies:
        candidates = index.get(mask_random_fields(reply))
        if candidates:
            which.append(candidates.pop(0))
        else:
            strays.append(reply)
    return which, strays
