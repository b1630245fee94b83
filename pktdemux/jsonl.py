"""JSON Lines output: one object per packet of the capture, in capture order.

Fields of each object:

``n``
    1-based position of the packet in the capture; null for a timer row.
``time``
    capture time, seconds since the epoch (float).
``ifindex``
    capture interface number (0 for pcap).
``direction``
    ``"in"`` (addressed to the host), ``"out"`` (sent by the host),
    ``"other"`` (neither), or ``"timer"``: what a timer of the emulated
    kernel sent as capture time passed (``time`` when it fired, ``replies``
    the packets, ``note`` the timer's name; see :mod:`pktdemux.replay`).
``verdict``
    ``"deliver"`` or ``"drop"`` for a packet the host received; null for
    "other" packets and for "out" packets, except those the host sent to
    itself (``looped``), which it also received.
``sockets``
    display names of the sockets that took the packet ([] if none); a
    connection accepted from a listener goes by the listener's name.
``reason``
    the drop reason (e.g. ``"NO_SOCKET"``), or null.
``replies``
    the emulated replies, each the hex of its IP packet, in send order.
``handler``, ``note``
    the kernel path that handled the packet and one line on why ("" if none).
``matched`` ("out" only)
    true when the emulation sent the same packet (random fields aside),
    false when the kernel would have generated it but the emulation did
    not, null for packets an application caused or when not compared.
``action``, ``looped`` ("out" only)
    what the host's application did (Transmission.action), and whether the
    packet was addressed to the host itself.
"""

from __future__ import annotations

import json
import math
import os
from json.encoder import encode_basestring
from typing import IO

from .replay import Result

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_BOOL = {True: "true", False: "false", None: "null"}
#: distinct strings whose JSON form the writer remembers (notes, names, handlers)
_CACHE_LIMIT = 4096


def to_json(result: Result) -> dict[str, object]:
    """The JSON object of one result (see the module doc for the fields)."""
    verdict = result.verdict
    record = result.record
    obj: dict[str, object] = {
        "n": record.n,
        "time": record.time,
        "ifindex": getattr(record, "ifindex", 0),
        "direction": result.direction,
        "verdict": verdict.verdict if verdict is not None else None,
        "sockets": [s.display_name for s in verdict.sockets] if verdict is not None else [],
        "reason": verdict.reason.value if verdict is not None and verdict.reason is not None else None,
        "replies": [r.hex() for r in result.replies],
        "handler": verdict.handler if verdict is not None else "",
        "note": (verdict.note if verdict is not None and verdict.note else result.note),
    }
    if result.direction == "out":
        tx = result.transmission
        obj["matched"] = tx.matched if tx is not None else None
        obj["action"] = tx.action if tx is not None else ""
        obj["looped"] = result.looped
        if tx is not None and tx.note:
            obj["note"] = tx.note
    return obj


class JsonlWriter:
    """Writes one JSON line per result to ``path``.

    Each line is ``json.dumps(to_json(result))`` with separators ``,`` and
    ``:`` and non-ASCII kept, byte for byte; it is put together from the
    fields directly, with the JSON form of repeated strings remembered
    (at most 4,096 of them, so memory stays flat), which is several times
    faster than encoding a dict per packet.

    Raises:
        OSError: when the file cannot be created or written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: IO[str] = open(self.path, "w", encoding="utf-8")
        self._strings: dict[str, str] = {}

    def write(self, result: Result) -> None:
        """Append the line of one result."""
        self._file.write(self.line(result))

    def _str(self, text: str) -> str:
        """The JSON string literal of ``text``."""
        cache = self._strings
        literal = cache.get(text)
        if literal is None:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            literal = cache[text] = encode_basestring(text)
        return literal

    def line(self, result: Result) -> str:
        """The JSON line of one result, newline included (see the module doc)."""
        string = self._str
        record = result.record
        verdict = result.verdict
        note = result.note
        if verdict is not None:
            decision = '"deliver"' if verdict.delivered else '"drop"'
            sockets = "[" + ",".join([string(s.display_name) for s in verdict.sockets]) + "]"
            reason = "null" if verdict.reason is None else string(verdict.reason.value)
            replies = '["' + '","'.join([r.hex() for r in verdict.replies]) + '"]' if verdict.replies else "[]"
            handler = string(verdict.handler)
            note = verdict.note or note
        else:
            decision, sockets, reason, handler = "null", "[]", "null", '""'
            sent = result.sent
            replies = '["' + '","'.join([r.hex() for r in sent]) + '"]' if sent else "[]"
        direction = result.direction
        tail = ""
        if direction == "out":
            tx = result.transmission
            if tx is None:
                tail = f',"matched":null,"action":"","looped":{_BOOL[result.looped]}'
            else:
                tail = f',"matched":{_BOOL[tx.matched]},"action":{string(tx.action)},"looped":{_BOOL[result.looped]}'
                if tx.note:
                    note = tx.note
        n = record.n
        return (f'{{"n":{"null" if n is None else n},"time":{_number(record.time)},"ifindex":{getattr(record, "ifindex", 0)},'
                f'"direction":{string(direction)},"verdict":{decision},"sockets":{sockets},"reason":{reason},'
                f'"replies":{replies},"handler":{handler},"note":{string(note)}{tail}}}\n')

    def close(self) -> None:
        """Flush and close the file (what was written stays written)."""
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _number(value: float) -> str:
    """A number as the json module writes it (float repr; NaN and infinities spelled its way)."""
    if value.__class__ is float and math.isfinite(value):
        return repr(value)
    return _dumps(value)
