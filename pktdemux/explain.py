"""Sentences for people: what the kernel did with a packet, and why.

:func:`describe` turns a :class:`~pktdemux.verdict.Verdict` into one line,
e.g. ``dropped: NO_SOCKET — nothing listens on tcp 10.0.0.1:81; the kernel
answers with a RST (RFC 9293 §3.10.7.1)``; :func:`numbered_steps` renders
``Verdict.steps`` (each "what happened (source)") as a numbered list.
Pure functions of bytes and verdicts: no I/O, no Scapy.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .dropreason import DropReason
from .verdict import Verdict
from .wire import format_endpoint

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
#: IPv6 extension headers walked to find the transport header (RFC 8200 §4)
_IPV6_EXTENSIONS = {0, 43, 60}
_TCP_RST = 0x04

#: what each kind of reply is, and the rule that makes the kernel send it
RST_TEXT = "a RST (RFC 9293 §3.10.7.1)"
ICMP_PORT_UNREACH_TEXT = "ICMP port unreachable (RFC 1122 §3.2.2.1)"
ICMPV6_PORT_UNREACH_TEXT = "ICMPv6 port unreachable (RFC 4443 §3.1)"


@dataclass(frozen=True, slots=True)
class Flow:
    """The addressing of one IP packet: version, protocol number, addresses
    (packed) and ports (0 when the protocol has none)."""

    version: int
    proto: int
    src: bytes
    dst: bytes
    sport: int = 0
    dport: int = 0

    @property
    def proto_name(self) -> str:
        return {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmpv6"}.get(
            self.proto, f"protocol {self.proto}")

    @property
    def destination(self) -> str:
        """``tcp 10.0.0.1:81`` / ``udp [fd00::1]:53``."""
        return f"{self.proto_name} {format_endpoint(self.dst, self.dport)}"


def peek(packet: bytes) -> Flow | None:
    """The addresses and ports of an IPv4/IPv6 packet, or None if too short to tell.

    Reads headers only (RFC 791 §3.1, RFC 8200 §3-4); checks nothing.
    """
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        offset, proto, src, dst = (packet[0] & 0x0F) * 4, packet[9], packet[12:16], packet[16:20]
    elif version == 6 and len(packet) >= 40:
        offset, proto, src, dst = 40, packet[6], packet[8:24], packet[24:40]
        while proto in _IPV6_EXTENSIONS and len(packet) >= offset + 8:
            proto, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
    else:
        return None
    sport = dport = 0
    if proto in (PROTO_TCP, PROTO_UDP) and len(packet) >= offset + 4:
        sport, dport = struct.unpack_from("!HH", packet, offset)
    return Flow(version, proto, src, dst, sport, dport)


def reply_kind(reply: bytes) -> str:
    """What a reply packet is, as :func:`describe` names it: ``"a RST ..."``,
    ``"ICMP port unreachable ..."``, or its protocol for anything else."""
    flow = peek(reply)
    if flow is None:
        return "a packet"
    offset = len(reply) - _payload_length(reply, flow)
    if flow.proto == PROTO_TCP and len(reply) > offset + 13 and reply[offset + 13] & _TCP_RST:
        return RST_TEXT
    if flow.proto == PROTO_ICMP and reply[offset:offset + 2] == b"\x03\x03":
        return ICMP_PORT_UNREACH_TEXT
    if flow.proto == PROTO_ICMPV6 and reply[offset:offset + 2] == b"\x01\x04":
        return ICMPV6_PORT_UNREACH_TEXT
    return f"a {flow.proto_name.upper()} packet"


def _payload_length(packet: bytes, flow: Flow) -> int:
    """Bytes from the transport header to the end (the replies carry no IPv6 extension headers)."""
    header = (packet[0] & 0x0F) * 4 if flow.version == 4 else 40
    return len(packet) - header


def describe(verdict: Verdict, packet: bytes) -> str:
    """One line on what the kernel did with ``packet``, and why.

    Delivered: ``delivered to NAME (LABEL STATE) — NOTE``.  Dropped:
    ``dropped: REASON — WHY; the kernel answers with REPLY (RULE)`` for a
    packet no socket wanted, ``dropped: REASON — NOTE`` otherwise.
    """
    if verdict.delivered:
        if not verdict.sockets:
            return f"delivered to the kernel ({verdict.handler}) — {verdict.note}".rstrip(" —")
        names = ", ".join(_socket_text(s) for s in verdict.sockets)
        return f"delivered to {names}" + (f" — {verdict.note}" if verdict.note else "")
    reason = verdict.reason.value if verdict.reason else "dropped"
    flow = peek(packet)
    if verdict.reason is DropReason.NO_SOCKET and flow is not None and flow.proto in (PROTO_TCP, PROTO_UDP):
        why = (f"nothing listens on {flow.destination}" if flow.proto == PROTO_TCP
               else f"no socket is bound to {flow.destination}")
        return f"dropped: {reason} — {why}; {_answer(verdict)}"
    return f"dropped: {reason} — {verdict.note}" if verdict.note else f"dropped: {reason}"


def _answer(verdict: Verdict) -> str:
    if not verdict.replies:
        return f"no answer ({verdict.note})" if verdict.note else "no answer"
    return "the kernel answers with " + " and ".join(reply_kind(r) for r in verdict.replies)


def _socket_text(sock: object) -> str:
    """``'web' (tcp://0.0.0.0:80 LISTEN)`` from a :class:`~pktdemux.sockets.Socket`."""
    name = getattr(sock, "display_name", "?")
    label = getattr(sock, "label", "")
    remote = getattr(sock, "remote_addr", None)
    peer = f" ← {format_endpoint(remote, sock.remote_port)}" if remote is not None else ""  # type: ignore[attr-defined]
    state = getattr(getattr(sock, "state", None), "value", "")
    return f"{name!r} ({label}{peer} {state})"


def numbered_steps(steps: tuple[str, ...] | list[str]) -> str:
    """The steps as a numbered list, one per line: ``1. what happened (source)``.

    Numbers are right-aligned so the text lines up past nine steps.
    """
    if not steps:
        return "(no steps recorded)"
    width = len(str(len(steps)))
    return "\n".join(f"{i:>{width}}. {step}" for i, step in enumerate(steps, 1))
