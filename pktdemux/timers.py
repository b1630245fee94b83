"""The emulated kernel's timers: a heap of (due, sequence, action), no clock.

Linux arms per-object timers (the reassembly timer of a fragment queue,
net/ipv4/inet_fragment.c:inet_frag_create; the SYN-ACK timer of a request,
net/ipv4/inet_connection_sock.c:reqsk_timer_handler) and the timer softirq
runs them when jiffies pass their expiry.  Here time only moves when the
capture says so: :meth:`pktdemux.kernel.Kernel.advance` pops every timer due
at or before the new time, in time order (ties in the order they were armed),
and collects what the kernel sends for them.

Cancelling is lazy, as in the kernel's ``del_timer`` of an object that goes
away: a cancelled timer stays in the heap and is skipped when it comes due.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

#: A timer's action: called with the time it fires (seconds since the
#: epoch); returns the packets the kernel sends, each a whole IP packet.
Action = Callable[[float], "list[bytes]"]


class Timer:
    """One armed timer; :meth:`cancel` makes it a no-op.

    Attributes:
        due: when it fires, seconds since the epoch.
        what: a short name for reports, e.g. ``"ip_expire"``.
    """

    __slots__ = ("action", "due", "what")

    def __init__(self, due: float, what: str, action: Action | None) -> None:
        self.due = due
        self.what = what
        self.action = action

    @property
    def armed(self) -> bool:
        """False once cancelled or fired."""
        return self.action is not None

    def cancel(self) -> None:
        """del_timer: the timer will not fire."""
        self.action = None


@dataclass(frozen=True, slots=True)
class Fired:
    """What one timer did when it fired.

    Attributes:
        time: when it fired, seconds since the epoch (its due time).
        what: the timer's name (``"ip_expire"``, ``"ip6_frag_expire"``,
            ``"reqsk_timer"``).
        packets: the IP packets the kernel sent, in order (may be empty).
    """

    time: float
    what: str
    packets: tuple[bytes, ...]


class TimerQueue:
    """Timers ordered by due time, then by the order they were armed."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Entries in the heap, cancelled ones included."""
        return len(self._heap)

    def arm(self, due: float, what: str, action: Action) -> Timer:
        """Arm a timer firing at ``due`` (seconds since the epoch)."""
        timer = Timer(due, what, action)
        heapq.heappush(self._heap, (due, next(self._seq), timer))
        return timer

    def next_due(self) -> float | None:
        """The due time of the earliest entry (possibly a cancelled one), or None."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Timer | None:
        """Remove and return the earliest armed timer due at or before
        ``now``; None when there is none (cancelled entries are dropped)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.action is not None:
                return timer
        return None
