"""Comparisons with Linux over time: the packets of a case go to the real
kernel (pktdemux.oracle) and to the emulation on the same timeline, and
everything each one sends is compared, timer output included.

* The emulation receives each packet at ``T0 +`` the time the oracle really
  wrote it (``sent_at``), so that both clocks agree to within the kernel's
  processing time; a ``complete_handshake`` ACK follows one microsecond
  later, as it does on Linux.
* What the emulation's timers send is attributed to the packet before it,
  as the oracle attributes what the kernel sent between two injections.
* Per packet, replies are paired by content (random fields masked) and by
  time (:data:`TIME_SLACK`): timers that fire together may fire in either
  order, and Linux's timer wheel fires a 1 s timer a few tens of ms late.
* For rate limits, a reply is tied to the packet it answers by content:
  :func:`reference_replies` gives each packet's reply from a fresh emulated
  host, whose rate-limit buckets are full.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.matching import first_difference, mask_random_fields
from pktdemux.oracle import HostSetup, OracleResult, final_ack

#: How far apart (seconds) the kernel's and the emulation's times of one
#: packet may be: the kernel's timer wheel (HZ=250 here) fires a 1 s timer
#: up to a few tens of ms late, and the oracle stamps a packet when it reads it.
TIME_SLACK = 0.25

Timed = tuple[float, bytes]


@dataclass
class Timeline:
    """Both sides of one case.

    Attributes:
        oracle: what Linux did.
        emulated: per packet, the emulation's verdicts and replies (timer
            output that fired before the next packet included).
        times: per packet, the time of each emulated reply (seconds after
            the first injection), parallel to ``emulated[i].replies``.
        kernel: the emulated kernel after the run (its sockets, timers).
    """

    oracle: OracleResult
    emulated: list[EmulatedPacket]
    times: list[list[float]]
    kernel: Any

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
        """The emulated socket with this display name."""
        return next(s for s in self.kernel.sockets if s.display_name == name)

    def report(self, name: str) -> Any:
        """Linux's report on the host socket with this display name."""
        return next(r for r in self.oracle.sockets if r.name == name)


def emulate(case: Case, oracle: OracleResult, seed: int = SEED) -> Timeline:
    """Run ``case`` on the emulation on the oracle's timeline (see the module
    docstring), with the kernel's connection state handed over."""
    kernel = build_kernel(parse_host(case.host, f"<{case.name}>"), seed=seed)
    host = HostSetup.from_toml(case.host)
    device = host.interface
    give_connection_state(kernel, oracle.connections, host)
    emulated: list[EmulatedPacket] = []
    times: list[list[float]] = []

    def timer_output() -> None:
        fired = [(f.time - T0, p) for f in kernel.drain_timer_output() for p in f.packets]
        if emulated:
            emulated[-1].replies.extend(p for _, p in fired)
            times[-1].extend(t for t, _ in fired)

    for injection, result in zip(case.packets, oracle.packets):
        packet, offset = result.packet, result.sent_at
        try:
            verdict = kernel.receive(packet, now=T0 + offset, device=device)
        except Exception as exc:  # reported per packet: receive() must never raise
            timer_output()
            emulated.append(EmulatedPacket([], [], error=_exception_note(exc)))
            times.append([])
            continue
        timer_output()
        entry = EmulatedPacket([verdict], list(verdict.replies))
        stamps = [offset] * len(verdict.replies)
        adopted = adopt_isns(kernel, result, T0 + offset)
        if injection.complete_handshake and result.followup is not None:  # as far as the oracle got
            for reply in verdict.replies:
                ack = final_ack(packet, reply)
                if ack is None:
                    continue
                if result.followup is not None and flow_of(reply) in adopted:
                    ack = result.followup  # the kernel's own final ACK: the ISN is the same now
                try:
                    more = kernel.receive(ack, now=T0 + offset + 1e-6, device=device)
                except Exception as exc:  # as above
                    entry.error = f"on the handshake's final ACK: {_exception_note(exc)}"
                    break
                entry.verdicts.append(more)
                entry.replies += list(more.replies)
                stamps += [offset] * len(more.replies)
                entry.followup = ack
                break
        emulated.append(entry)
        times.append(stamps)
    last = oracle.packets[-1].sent_at if oracle.packets else 0.0
    kernel.advance(T0 + last + case.settle)
    timer_output()
    return Timeline(oracle, emulated, times, kernel)


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
    """Every disagreement: per packet, replies only one side sent (with the
    nearest packet of the other side and its first differing field), then
    what the sockets received and sockets the kernel refused.

    ``labels`` keeps only the packets whose label starts with it; ``flows``
    only the TCP replies from one of these (local port, peer port) pairs,
    after whichever packet they came (a timer's output comes after the
    packet before it); ``sockets`` only the receipts of those sockets (all
    when None).
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
        if not (only_k or only_e or mine.error):
            continue
        lines = [f"[{case.name}] packet {case.labels[i]} (#{i}, at {result.sent_at:.3f}): {summary(result.packet)}",
                 f"    incoming: {_hex(result.packet)}", f"    emulation verdict: {_verdict_note(mine)}"]
        for tk, k in only_k:
            near = min(only_e, key=lambda ev: abs(ev[0] - tk), default=None)
            why = f"\n      nearest from the emulation at {near[0]:.3f}: {first_difference(k, near[1])}" if near else ""
            lines.append(f"    only the kernel at {tk:.3f}: {summary(k)}\n        {_hex(k)}{why}")
        for te, e in only_e:
            lines.append(f"    only the emulation at {te:.3f}: {summary(e)}\n        {_hex(e)}")
        notes.append("\n".join(lines))
    wanted = None if sockets is None else tuple(f"socket {name}:" for name in sockets)
    notes += [f"[{case.name}] {n}" for n in _receipts(case, run.oracle, run.emulated)
              if wanted is None or n.startswith(wanted)]
    notes += [f"[{case.name}] the kernel refused socket {r.name}: {r.error}" for r in run.oracle.sockets
              if r.error and (sockets is None or r.name in sockets)]
    return notes


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
