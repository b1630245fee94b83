"""What the emulated kernel did with one packet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .dropreason import DropReason

if TYPE_CHECKING:
    from .sockets import Socket


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :meth:`pktdemux.kernel.Kernel.receive` for one packet.

    Attributes:
        delivered: True when a socket (or the kernel's own ICMP handler) took
            the packet; False when it was dropped.
        sockets: the sockets that took it, in delivery order (several for a
            broadcast/multicast fan-out).  A connection accepted from a
            listener is named after the listener.
        reason: the drop reason when ``delivered`` is False, else None.
        replies: IP packets the kernel sends in answer, in send order, each as
            the bytes of the whole IPv4/IPv6 packet (no link-layer header).
        handler: the kernel path that handled the packet, short and stable,
            e.g. ``"tcp listen"``, ``"udp unicast"``, ``"icmp echo"``.
        note: one human sentence on why, e.g. ``"no socket on tcp port 81"``.
        steps: the explanation trail: each step the kernel took, in order,
            with its source (kernel function, spec section or RFC).
    """

    delivered: bool
    sockets: tuple[Socket, ...] = ()
    reason: DropReason | None = None
    replies: tuple[bytes, ...] = ()
    handler: str = ""
    note: str = ""
    steps: tuple[str, ...] = field(default=(), compare=False)

    @property
    def verdict(self) -> str:
        """``"deliver"`` or ``"drop"``."""
        return "deliver" if self.delivered else "drop"


def drop(reason: DropReason, note: str = "", *, replies: tuple[bytes, ...] = (), handler: str = "") -> Verdict:
    """Shorthand for a drop verdict."""
    return Verdict(False, (), reason, replies, handler, note)


def deliver(
    sockets: tuple[Socket, ...], note: str = "", *, replies: tuple[bytes, ...] = (), handler: str = ""
) -> Verdict:
    """Shorthand for a delivery verdict."""
    return Verdict(True, sockets, None, replies, handler, note)


def with_note(verdict: Verdict, extra: str) -> Verdict:
    """``verdict`` with ``extra`` appended to its note (``"note; extra"``)."""
    note = f"{verdict.note}; {extra}" if verdict.note else extra
    return Verdict(verdict.delivered, verdict.sockets, verdict.reason, verdict.replies, verdict.handler, note,
                   verdict.steps)


@dataclass(frozen=True, slots=True)
class Transmission:
    """What the emulation makes of a packet the host itself sent ("out").

    Returned by :meth:`pktdemux.kernel.Kernel.transmit`.

    Attributes:
        matched: True when the emulation had sent the same packet (fields the
            kernel draws at random masked); False when the kernel would have
            sent this kind of packet itself (RST, ICMP error, SYN-ACK, pure ACK,
            echo reply) but the emulation did not send this one; None for
            packets an application caused (data, a connect()'s SYN, a close()'s
            FIN), which the kernel does not generate on its own.
        action: what the host's application did, as the emulation records it:
            ``"connect"``, ``"close"``, ``"implicit bind"``, ``"send"``,
            ``"reply"`` (a kernel reply), or ``""``.
        sockets: the sockets the packet was sent from, when known.
        note: one human sentence, e.g. the first differing field when not matched.
    """

    matched: bool | None
    action: str = ""
    sockets: tuple[Socket, ...] = ()
    note: str = ""
