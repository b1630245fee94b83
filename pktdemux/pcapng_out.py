"""``--write``: the capture again as pcapng, annotated, with the emulated replies.

Written with Scapy's PcapNgWriter (``scapy.utils``).  Each packet of the
capture is copied byte for byte, on an interface of its own link type, with
an ``opt_comment`` giving its verdict; each emulated reply follows the packet
that caused it, as a raw IP packet (LINKTYPE_RAW, 101) on an interface named
``pktdemux``, with the capture packet's timestamp and a comment naming it.
What a timer sent (a timer row of the replay) goes on the same interface at
the time the timer fired, its comment naming the timer.
Timestamps are written in nanoseconds (``if_tsresol`` = 9).

Readable by Wireshark/tshark (``frame.comment`` / ``pkt_comment``) and Scapy.
"""

from __future__ import annotations

import os
import struct
from decimal import Decimal

from .render import brief
from .replay import Result

LINKTYPE_RAW = 101
REPLY_INTERFACE = b"pktdemux"
_MAX_NS = 2**64 - 1


def comment(result: Result) -> str:
    """The verdict comment of a capture packet, e.g. ``"pktdemux: in: drop NO_SOCKET (...)"``."""
    verdict, tx = result.verdict, result.transmission
    parts = [f"pktdemux: {result.direction}"]
    if result.direction == "out":
        if tx is None:
            parts.append("not compared")
        elif tx.matched is None:
            parts.append("sent by an application")
        else:
            parts.append("matched: the emulation sent it" if tx.matched
                         else "NOT matched: the emulation did not send it")
        if result.looped:
            parts.append("to itself")
    if verdict is not None:
        if verdict.delivered:
            names = ", ".join(s.display_name for s in verdict.sockets) or "kernel"
            parts.append(f"deliver to {names}")
        else:
            parts.append(f"drop {verdict.reason.value if verdict.reason else ''}".rstrip())
        if verdict.note:
            parts.append(verdict.note)
        if verdict.replies:
            parts.append(f"{len(verdict.replies)} emulated repl{'y' if len(verdict.replies) == 1 else 'ies'}")
    elif result.note:
        parts.append(result.note)
    return "; ".join(parts)


def _writer_class():  # type: ignore[no-untyped-def]
    from scapy.utils import PcapNgWriter

    class NanoPcapNgWriter(PcapNgWriter):
        """PcapNgWriter whose interfaces declare nanosecond timestamps."""

        def __init__(self, filename: str) -> None:
            super().__init__(filename)
            self.tsresol = 10**9

        def _write_block_idb(self, linktype, ifname=None):  # type: ignore[no-untyped-def]
            opts = b""
            if ifname is not None:
                opts += struct.pack(self.endian + "HH", 2, len(ifname)) + self._add_padding(ifname)
            opts += struct.pack(self.endian + "HH", 9, 1) + self._add_padding(b"\x09")  # if_tsresol: 10^-9
            opts += struct.pack(self.endian + "HH", 0, 0)
            body = struct.pack(self.endian + "HHI", linktype, 0, 262144)
            self.f.write(self.build_block(struct.pack(self.endian + "I", 1), body, options=opts))

    return NanoPcapNgWriter


class AnnotatedPcapNg:
    """Streams results into a pcapng file.

    Args:
        path: the file to create.

    Raises:
        OSError: when the file cannot be created or written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._writer = _writer_class()(self.path)
        self._ifnames: dict[tuple[int, int], bytes | None] = {}

    def _ifname(self, ifindex: int, linktype: int) -> bytes | None:
        key = (ifindex, linktype)
        name = self._ifnames.get(key, b"")
        if name != b"":
            return name
        if not self._ifnames:
            # The writer's first interface (id 0) is unnamed and written with the header.
            self._writer.linktype = linktype
            self._writer.write_header(None)
            name = None
        else:
            name = REPLY_INTERFACE if key == (-1, LINKTYPE_RAW) else f"if{ifindex}-lt{linktype}".encode()
        self._ifnames[key] = name
        return name

    def write(self, result: Result) -> None:
        """Write the capture packet of ``result``, then its emulated replies;
        for a timer row, only the packets the timer sent, at its time."""
        record = result.record
        ns = getattr(record, "ts_ns", None) or int(record.time * 10**9)
        # A 64-bit count of nanoseconds ends in 2554; a damaged capture can claim later.
        ts = Decimal(min(max(ns, 0), _MAX_NS)).scaleb(-9)
        if result.direction == "timer":
            sent = result.sent
            for i, packet in enumerate(sent, 1):
                self._write_emulated(packet, ts, f"sent by the timer {result.note} ({i} of {len(sent)})")
            return
        frame = record.frame
        self._writer._write_packet(  # Scapy's per-packet writer: takes linktype, interface and comments
            frame, linktype=record.linktype, sec=ts, caplen=len(frame), wirelen=max(record.wirelen, len(frame)),
            ifname=self._ifname(getattr(record, "ifindex", 0), record.linktype),
            comments=[comment(result).encode()],
        )
        replies = result.replies
        for i, reply in enumerate(replies, 1):
            self._write_emulated(reply, ts, f"emulated reply {i} of {len(replies)} to packet {record.n}")

    def _write_emulated(self, packet: bytes, ts: Decimal, what: str) -> None:
        """An IP packet the emulation sent, on the raw-IP interface, with a comment saying so."""
        note = f"pktdemux: {what}: {brief(packet)}"
        self._writer._write_packet(
            packet, linktype=LINKTYPE_RAW, sec=ts, ifname=self._ifname(-1, LINKTYPE_RAW),
            comments=[note.encode()],
        )

    def close(self) -> None:
        """Finish the file (an empty capture still gets its section header)."""
        if not self._ifnames:
            self._writer.linktype = LINKTYPE_RAW
        self._writer.close()

    def __enter__(self) -> AnnotatedPcapNg:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
