"""The replay driver: capture records in, one :class:`Result` per packet out.

Usable as a library (benchmarks, test plugins, transcripts) as well as by the
``pktdemux replay`` command.  Constant memory: results are yielded one at a
time and only running totals (:class:`Totals`) are kept.

For each record the link layer is decoded (:mod:`pktdemux.linklayer`), the
direction decided from the host's addresses (:mod:`pktdemux.direction`), then:

* ``"in"``: ``kernel.receive(ip, now)`` gives the verdict and the replies;
* ``"out"``: ``kernel.transmit(ip, now)`` says whether the emulation sent the
  same packet (``matched``), when the kernel has ``transmit``;
* ``"loop"`` (the host to itself): transmit, then receive on ``lo``; the
  result's direction is ``"out"`` and it carries a verdict too;
* ``"other"``: nothing runs.

Time passes with the capture: before each record the kernel is advanced to
its time (:meth:`pktdemux.kernel.Kernel.advance`), and once more to the last
record's time at the end.  A record stamped later than the record after it
(a capture clock glitch, e.g. one stamp decades ahead) runs at the next
record's time instead, so that one bad stamp does not expire every timer;
what the timers did (SYN-ACK retransmissions,
reassembly timeouts, :class:`pktdemux.timers.Fired`) comes out as rows of
their own, direction ``"timer"``, in time order, before the record that let
the time pass: the packets sent are the row's ``replies``, the timer's name
its ``note``, its ``record`` a :class:`TimerRecord` (``n`` None).

A frame with no runnable IP packet (unknown link type, header cut by the snap
length) is an ``"in"`` drop with UNSUPPORTED_LINK or CAPTURE_TRUNCATED; a
readable non-IP frame (ARP, LLDP...) is ``"other"`` with a note.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .direction import IN, LOOP, OTHER, OUT, Directions
from .dropreason import DropReason
from .kernel import LOOPBACK
from .linklayer import Undecoded, decode, ip_cut_short
from .verdict import Transmission, Verdict, drop

if TYPE_CHECKING:
    from .kernel import Kernel


class RecordLike(Protocol):
    """What the driver reads from a record (see :class:`pktdemux.capture.Record`)."""

    n: int
    time: float
    linktype: int
    frame: bytes
    wirelen: int


TIMER = "timer"


class TimerRecord:
    """The record of a timer row: when the timer fired, no frame.

    Attributes:
        n: None (not a packet of the capture).
        time: when the timer fired, seconds since the epoch.
        linktype: 101 (LINKTYPE_RAW), frame b"", wirelen 0.
    """

    __slots__ = ("time",)

    n = None
    linktype = 101
    frame = b""
    wirelen = 0
    ifindex = 0

    def __init__(self, time: float) -> None:
        self.time = time


@dataclass(slots=True)
class Result:
    """What became of one packet of the capture.

    Attributes:
        record: the capture record (``n``, ``time``, ``frame``...).
        direction: ``"in"``, ``"out"`` or ``"other"`` (a packet from the host
            to itself is ``"out"`` with a verdict, see ``looped``), or
            ``"timer"`` for what a timer sent (see the module doc).
        ip: the IP packet from its header, or None when the frame had none.
        verdict: the kernel's verdict for a received packet (also the
            drop for a frame that could not run); None for "other" packets
            and for the host's own packets it did not also receive.
        transmission: for "out" packets, what the emulation made of it; None
            when the kernel has no ``transmit`` or the packet could not run.
        note: one line for humans when no verdict or transmission says it;
            a timer row's timer name (``"reqsk_timer"``, ``"ip_expire"``,
            ``"close"`` for a host-file socket's close time).
        looped: True for a packet the host sent to itself.
        sent: a timer row's packets (IP packets, in send order).
    """

    record: RecordLike
    direction: str
    ip: bytes | None
    verdict: Verdict | None = None
    transmission: Transmission | None = None
    note: str = ""
    looped: bool = False
    sent: tuple[bytes, ...] = ()

    @property
    def n(self) -> int | None:
        """1-based position in the capture; None for a timer row."""
        return self.record.n

    @property
    def time(self) -> float:
        """Capture time, seconds since the epoch."""
        return self.record.time

    @property
    def matched(self) -> bool | None:
        """For "out" packets: Transmission.matched (None when unknown)."""
        return self.transmission.matched if self.transmission is not None else None

    @property
    def reason(self) -> DropReason | None:
        """The drop reason, or None."""
        return self.verdict.reason if self.verdict is not None else None

    @property
    def replies(self) -> tuple[bytes, ...]:
        """The emulated replies (IP packets), in send order; for a timer
        row, what the timer sent."""
        return self.verdict.replies if self.verdict is not None else self.sent

    @property
    def socket_names(self) -> list[str]:
        """Display names of the sockets that took the packet."""
        return [s.display_name for s in self.verdict.sockets] if self.verdict is not None else []


@dataclass
class Totals:
    """Running totals of a replay, for the summary.

    Attributes:
        packets: records seen.
        directions: count per direction (a looped packet counts as "out").
        looped: packets the host sent to itself.
        delivered, dropped: verdicts of received packets.
        sockets: deliveries per socket display name.
        reasons: drops per reason name.
        replies: emulated replies sent.
        own_generated: "out" packets the kernel generates itself (matched is
            not None): RSTs, ICMP errors, SYN-ACKs, pure ACKs, echo replies.
        own_matched: of those, how many the emulation reproduced exactly.
        timers: timer rows (firings), not counted in ``packets``.
        timer_packets: packets those timers sent.
    """

    packets: int = 0
    directions: Counter[str] = field(default_factory=Counter)
    looped: int = 0
    delivered: int = 0
    dropped: int = 0
    sockets: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    replies: int = 0
    own_generated: int = 0
    own_matched: int = 0
    timers: int = 0
    timer_packets: int = 0

    def add(self, result: Result) -> None:
        """Count one result."""
        if result.direction == TIMER:
            self.timers += 1
            self.timer_packets += len(result.sent)
            return
        self.packets += 1
        self.directions[result.direction] += 1
        if result.looped:
            self.looped += 1
        verdict = result.verdict
        if verdict is not None:
            if verdict.delivered:
                self.delivered += 1
                for sock in verdict.sockets:
                    self.sockets[sock.display_name] += 1
            else:
                self.dropped += 1
                reason = verdict.reason
                if reason is not None:
                    self.reasons[reason.value] += 1
            if verdict.replies:
                self.replies += len(verdict.replies)
        tx = result.transmission
        if tx is not None and tx.matched is not None:
            self.own_generated += 1
            self.own_matched += tx.matched


class Replay:
    """Feeds capture records to one emulated kernel.

    Args:
        kernel: the emulated host (a fresh one, or one already in a state).
        directions: how to classify packets; default: the kernel's addresses.

    Attributes:
        totals: running :class:`Totals` of every record stepped so far.
    """

    def __init__(self, kernel: Kernel, directions: Directions | None = None) -> None:
        self.kernel = kernel
        self.directions = directions or Directions.of_kernel(kernel)
        self.totals = Totals()
        self._transmit = getattr(kernel, "transmit", None)
        self._advance = getattr(kernel, "advance", None)
        self._classify = self.directions.classify

    @classmethod
    def from_spec(cls, spec, seed: int = 0) -> Replay:  # type: ignore[no-untyped-def]
        """A replay on a fresh kernel built from a host spec (hostfile.build_kernel)."""
        from .hostfile import build_kernel

        return cls(build_kernel(spec, seed=seed))

    def run(self, records: Iterable[RecordLike]) -> Iterator[Result]:
        """Yield one result per record, in order, counting each in
        :attr:`totals`, with the timer rows (see the module doc) before the
        record that let their time come, and at the end."""
        step, add = self._step, self.totals.add
        advance = self._advance
        if advance is None:
            for record in records:
                result = step(record)
                add(result)
                yield result
            return
        output = getattr(self.kernel, "timer_output", None)
        last = None
        pending: RecordLike | None = None
        source = iter(records)
        while True:
            try:
                upcoming: RecordLike | None = next(source, None)
            except Exception:
                if pending is not None:  # what was read before the capture broke keeps its result
                    yield from self._timed_step(pending, pending.time)
                raise
            if pending is not None:
                # A record stamped later than the next one is a clock glitch of
                # the capture (one stamp decades ahead): its packet runs at the
                # next record's time, so that the kernel's clock does not leap.
                last = pending.time if upcoming is None or pending.time <= upcoming.time else upcoming.time
                advance(last)
                if output:
                    for result in self._timer_rows():
                        add(result)
                        yield result
                result = step(pending, last)
                add(result)
                yield result
            if upcoming is None:
                break
            pending = upcoming
        if last is not None:
            advance(last)
        for result in self._timer_rows():
            add(result)
            yield result

    def _timed_step(self, record: RecordLike, now: float) -> Iterator[Result]:
        """Advance the kernel to ``now``, then the timer rows and the record's row."""
        assert self._advance is not None
        self._advance(now)
        for result in self._timer_rows():
            self.totals.add(result)
            yield result
        result = self._step(record, now)
        self.totals.add(result)
        yield result

    def _timer_rows(self) -> list[Result]:
        drain = getattr(self.kernel, "drain_timer_output", None)
        if drain is None:
            return []
        return [Result(TimerRecord(fired.time), TIMER, None, note=fired.what, sent=fired.packets)
                for fired in drain()]

    def step(self, record: RecordLike) -> Result:
        """Run one record through the emulation and count it (no timer
        rows: what timers send stays in ``kernel.timer_output``)."""
        result = self._step(record)
        self.totals.add(result)
        return result

    def _step(self, record: RecordLike, now: float | None = None) -> Result:
        """One record; ``now`` is the kernel's time for it (default: the record's)."""
        if now is None:
            now = record.time
        frame = record.frame
        decoded = decode(record.linktype, frame)
        if decoded.__class__ is Undecoded:
            reason, note = decoded
            if reason is None:
                return Result(record, OTHER, None, note=note)
            return Result(record, IN, None, drop(reason, note, handler="link"), note=note)
        family, ip = decoded
        direction = self._classify(ip)
        if record.wirelen > len(frame) and ip_cut_short(ip):
            return self._cut(record, direction, ip)
        if direction == IN:
            return Result(record, IN, ip, self._receive(family, ip, now, None))
        if direction == OUT:
            transmit = self._transmit
            return Result(record, OUT, ip, None, transmit(ip, now) if transmit is not None else None)
        if direction == LOOP:
            tx = self._transmit_one(ip, now)
            verdict = self._receive(family, ip, now, LOOPBACK)
            return Result(record, OUT, ip, verdict, tx, looped=True)
        return Result(record, OTHER, ip)

    def _receive(self, family: int, ip: bytes, now: float, device: str | None) -> Verdict:
        version = ip[0] >> 4
        if version != family and (version == 4 or version == 6):
            # The kernel dispatches on the link layer's protocol, then checks
            # the version (ip_rcv_core, ipv6_rcv).
            return drop(DropReason.IP_INHDR, f"link layer announced IPv{family}, header says IPv{version}",
                        handler=f"ipv{family}")
        return self.kernel.receive(ip, now, device)

    def _transmit_one(self, ip: bytes, now: float) -> Transmission | None:
        if self._transmit is None:
            return None
        return self._transmit(ip, now=now)

    @staticmethod
    def _cut(record: RecordLike, direction: str, ip: bytes) -> Result:
        note = f"snap length kept {len(record.frame)} of {record.wirelen} bytes, the IP packet is incomplete"
        verdict = drop(DropReason.CAPTURE_TRUNCATED, note, handler="capture")
        if direction == IN:
            return Result(record, IN, ip, verdict, note=note)
        if direction == LOOP:
            return Result(record, OUT, ip, verdict, note=note, looped=True)
        return Result(record, direction, ip, note=note)


def replay(kernel: Kernel, records: Iterable[RecordLike], directions: Directions | None = None) -> Iterator[Result]:
    """Shorthand: ``Replay(kernel, directions).run(records)``."""
    return Replay(kernel, directions).run(records)
