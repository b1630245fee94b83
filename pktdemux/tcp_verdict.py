"""Verdict constructors shared by the TCP state handlers.

Each handler names its kernel path in ``handler`` (``"tcp listen"``,
``"tcp syn_recv"``, ...) and gives the steps it took with their source.
"""

from __future__ import annotations

from .dropreason import DropReason
from .sockets import Socket
from .verdict import Verdict


def tcp_deliver(sock: Socket, handler: str, note: str, replies: tuple[bytes, ...] = (),
                steps: tuple[str, ...] = ()) -> Verdict:
    """The segment was taken by ``sock``."""
    return Verdict(True, (sock,), None, replies, handler, note, steps)


def tcp_drop(reason: DropReason, handler: str, note: str, replies: tuple[bytes, ...] = (),
             steps: tuple[str, ...] = ()) -> Verdict:
    """The segment was freed with ``reason`` (the note names the socket, if any)."""
    return Verdict(False, (), reason, replies, handler, note, steps)
