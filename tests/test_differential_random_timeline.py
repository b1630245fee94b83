"""Random differential suite on the kernel's timeline: what
tests/test_differential_random.py leaves out — IP fragments, IPv4 options,
IPv6 extension headers, bursts from one peer that the ICMP rate limits
decide, and SYNs left half-open — mixed into random packets against
random socket tables, every packet compared with the real kernel.

Seed :data:`SEED`; :data:`SCENARIOS` namespaces of at least
:data:`PACKETS` injections each (2,160 in all), so this suite alone
compares more than 2,000 packets per run (tests/test_differential_random.py
adds its own 2,100 or so).  About 25 s against the kernel.

How the comparison works (tests/lifecycle_support.py):

* The emulation receives each packet at the time the oracle really wrote
  it, and its timer output (SYN-ACK retransmissions) goes with the packet
  before, as the oracle attributes what Linux sent between injections.
* Every reply of either side is paired with an equal reply of the other
  (random fields masked, and the clock words of IPv4 Timestamp options:
  :func:`mask_clock`) sent within :data:`lifecycle_support.TIME_SLACK`,
  over the whole timeline: a reply to a packet of a 0.3 ms burst may reach
  the oracle after the next injection.  Every UDP payload, burst member and
  fragment group is unique, so pairing by content ties each rate-limited
  reply to the packet it answers.
* What the sockets received is compared as in the other suite, with each
  fragment, option or extension-header datagram seen as the plain datagram
  it carries (:attr:`TimelineCase.views`).

Timing rules that keep both sides deterministic:

* Default scenarios: bursts of 7-10 packets 0.3 ms apart from one peer to
  closed UDP ports and unknown protocols, so the per-destination bucket
  decides (6 at once; then IPv4 one per second, IPv6 one per 100 ms).
  A second burst from the same peer comes well inside a token period
  (k x 100 ms + 40-60 ms for IPv6, 0.3-0.7 s or >= 1.04 s for IPv4), never
  near its edge.  The global bucket never runs dry (at most ~15 errors in
  any 20 ms, each taking 0-2 of 50 credits).
* Global scenarios (every third): ``net.ipv4.icmp_msgs_burst = 0``, so the
  global bucket lets one rate-limited ICMP error through per 20 ms
  (icmp_global_allow refills only after HZ/50 and the credit never goes
  above 0), whatever the random consumption draws.  Packets come in
  clusters at most 4 ms long that start 30 ms apart, or 10 ms after a
  cluster that started 30 ms after its own predecessor: a limited error is
  then always under 15 ms or at least 26 ms after the last one let through,
  so both sides decide alike whatever the jiffy phase (HZ=250 here, the
  emulation counts ms) -- only the first limited error of a 30 ms cluster
  passes, none of a 10 ms one that follows a cluster which let one through.
* A SYN is reset by its peer right after, or 20-800 ms later, or (when it
  came in the first :data:`HALF_OPEN_UNTIL` seconds) never: its SYN-ACK is
  retransmitted one second later, well before the scenario ends.
* Fragment queues that never complete are left alone: the reassembly
  timeout (30 s / 60 s) is far past the scenario's end.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from kernel_support import (
    Case,
    _hex,
    _receipts,
    _verdict_note,
    assert_agree,
    host_toml,
    summary,
)
from lifecycle_support import TIME_SLACK, Timeline, run_timeline
from test_differential_random import ADDRESSES, PacketGen, SocketGen
from test_fragments import fragment4, fragment6

from pktdemux.matching import first_difference, mask_random_fields
from pktdemux.tcp_output import tcp_segment_bytes
from pktdemux.wire import (
    build_ipv4,
    build_ipv6,
    checksum,
    parse_addr,
    transport_checksum,
)

SEED = 62018
SCENARIOS = 10
#: Injections per scenario, at least (a group of packets is never cut).
PACKETS = 205
#: Scenarios whose index has this remainder mod 3 set icmp_msgs_burst = 0.
GLOBAL_KIND = 2
#: Seconds between groups of packets in default scenarios (uniform range).
GAPS = (0.003, 0.009)
#: Seconds between the packets of a fragment group / of a burst.
FRAG_GAP = 0.002
BURST_GAP = 0.0003
#: Global scenarios: clusters start this far apart (or, right after such a
#: gap, SHORT_CLUSTER apart), packets inside this far apart.
CLUSTER = 0.030
SHORT_CLUSTER = 0.010
CLUSTER_GAP = 0.0004
#: Most packets in one cluster (a bigger group gets a cluster of its own).
CLUSTER_SIZE = 8
#: A SYN may stay half-open to the end when it came before this offset.
HALF_OPEN_UNTIL = 0.3
#: The scenario lasts this long after such a SYN (its 1 s retransmission inside).
HALF_OPEN_TAIL = 1.35
#: ... and ends before this offset, well before its second retransmission (3 s).
MAX_END = 2.7
SETTLE = 0.3

LOCAL4 = ("10.0.0.1", "10.0.0.3")
LOCAL6 = "fd00::1"
PROTO_UNKNOWN = 253
MSS_OPTION = b"\x02\x04\x05\xb4"
FULL_SYN_OPTIONS = b"\x02\x04\x05\xb4\x04\x02\x08\x0a\x00\x01\x02\x03\x00\x00\x00\x00\x01\x03\x03\x07"

A = parse_addr


# --------------------------------------------------------------------------- packet builders

def ip_packet(src: str, dst: str, proto: int, payload: bytes, *, ident: int = 0, tos: int = 0,
              options: bytes = b"", df: bool = False, ttl: int = 64) -> bytes:
    """An IPv4 or IPv6 packet (by the address family) carrying ``payload``."""
    if ":" in src:
        return build_ipv6(src=A(src), dst=A(dst), next_header=proto, payload=payload, hop_limit=ttl,
                          traffic_class=tos)
    return build_ipv4(src=A(src), dst=A(dst), proto=proto, payload=payload, ident=ident, tos=tos,
                      options=options, df=df, ttl=ttl)


def udp_segment(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = transport_checksum(A(src), A(dst), 17, seg) or 0xFFFF
    return seg[:6] + csum.to_bytes(2, "big") + seg[8:]


def echo_message(src: str, dst: str, ident: int, seq: int, data: bytes) -> bytes:
    v6 = ":" in src
    body = bytes((128 if v6 else 8, 0, 0, 0)) + struct.pack("!HH", ident, seq) + data
    csum = transport_checksum(A(src), A(dst), 58, body) if v6 else checksum(body)
    return body[:2] + csum.to_bytes(2, "big") + body[4:]


def tcp_bytes(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int = 0,
              options: bytes = b"", payload: bytes = b"") -> bytes:
    return tcp_segment_bytes(A(src), A(dst), sport, dport, seq, ack, flags, 29200, options, payload)


def ext_header(next_header: int, body: bytes) -> bytes:
    """An IPv6 extension header (hop-by-hop, destination options, routing):
    ``body`` is everything after the length byte, its length 6 + 8n."""
    assert (len(body) + 2) % 8 == 0, len(body)
    return bytes((next_header, (len(body) + 2) // 8 - 1)) + body


def frag_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset | more, ident)


# --------------------------------------------------------------------------- comparison helpers

_ICMP_ERRORS = (3, 4, 5, 11, 12)


def _clock_words(buf: bytearray, ihl_at: int) -> bool:
    """Zero the time words of the Timestamp options of the IPv4 header at
    ``ihl_at`` (cut short headers are walked as far as they go); True when
    there was a Timestamp option."""
    if len(buf) < ihl_at + 20 or buf[ihl_at] >> 4 != 4:
        return False
    end = min(len(buf), ihl_at + (buf[ihl_at] & 0x0F) * 4)
    i, found = ihl_at + 20, False
    while i < end and buf[i] != 0:
        if buf[i] == 1:
            i += 1
            continue
        if i + 1 >= end or buf[i + 1] < 2:
            break
        length = buf[i + 1]
        if buf[i] == 68 and length >= 4 and i + 3 < end:
            # the filled time words end 1 byte before the pointer, one per
            # slot (4 bytes, or 8 with an address), whatever the alignment
            found = True
            step = 4 if buf[i + 3] & 0x0F == 0 else 8
            for word in range(buf[i + 2] - 5, 3, -step):
                start, stop = i + word, min(i + word + 4, i + length, end)
                buf[start:stop] = bytes(max(0, stop - start))
        i += length
    return found


def mask_clock(packet: bytes) -> bytes:
    """``packet`` with the clock words of IPv4 Timestamp options zeroed (ms
    since midnight: Linux's wall clock, not the emulation's), in its own
    header and in the header an ICMP error quotes, and the checksums that
    cover them."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return packet
    buf = bytearray(packet)
    ihl = (buf[0] & 0x0F) * 4
    changed = _clock_words(buf, 0)
    icmp = buf[9] == 1 and len(buf) >= ihl + 8
    if icmp and buf[ihl] in _ICMP_ERRORS:
        changed = _clock_words(buf, ihl + 8) or changed
    if not changed:
        return packet
    buf[10:12] = b"\0\0"
    if icmp:
        buf[ihl + 2:ihl + 4] = b"\0\0"
    return bytes(buf)


def comparable(packet: bytes) -> bytes:
    return mask_random_fields(mask_clock(packet))


def byte_differences(a: bytes, b: bytes, shown: int = 4) -> str:
    """The first ``shown`` runs of differing bytes of two packets (random
    fields and clocks masked), as offsets and hex."""
    a, b = comparable(a), comparable(b)
    runs: list[list[int]] = []
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b) or a[i] != b[i]:
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
    if not runs:
        return "no byte differs"
    parts = [f"{s}-{e - 1}: {a[s:e].hex() or '-'} != {b[s:e].hex() or '-'}" for s, e in runs[:shown]]
    more = f" (+{len(runs) - shown} more runs)" if len(runs) > shown else ""
    size = f"; lengths {len(a)} != {len(b)}" if len(a) != len(b) else ""
    return "bytes " + "; ".join(parts) + more + size


# --------------------------------------------------------------------------- the case

@dataclass
class TimelineCase(Case):
    """A :class:`kernel_support.Case` with, per injection, the plain datagram
    the sockets should see (``None``: the packet itself)."""

    views: list[bytes | None] = field(default_factory=list)
    kind: str = "default"


@dataclass
class Group:
    """Packets injected together: (bytes, label, view) each, ``gap`` apart.
    ``cleanup`` is the RST that ends a SYN's half-open request."""

    items: list[tuple[bytes, str, bytes | None]]
    gap: float = FRAG_GAP
    cleanup: bytes | None = None
    #: a later group (e.g. a second burst) and how long after this one
    follow: tuple[float, Group] | None = None


class TimelineGen(PacketGen):
    """Random groups: the other suite's packets, fragments, IPv4 options,
    IPv6 extension headers, bursts."""

    def __init__(self, rng: random.Random, sockets: SocketGen) -> None:
        super().__init__(rng, sockets.ports, sockets.peers)
        self.tcp_ports = [int(s["label"].rsplit(":", 1)[1]) for s in sockets.sockets if s["label"].startswith("tcp")]

    # -- addresses and ports

    def peer(self, v6: bool) -> str:
        """A source address no other group uses (an ordinary on-link peer)."""
        if v6:
            while True:
                addr = f"fd00::{self.rng.randint(0x100, 0xFFFF):x}"
                if addr not in self.v6_used:
                    self.v6_used.add(addr)
                    return addr
        return self.v4_pool.pop() if self.v4_pool else f"192.0.2.{self.rng.randint(1, 254)}"

    def target(self, v6: bool) -> str:
        rng = self.rng
        if v6:
            return rng.choices([LOCAL6, "ff02::1", "fd00::99"], [85, 10, 5])[0]
        return rng.choices([*LOCAL4, "10.0.0.255", "224.0.0.1", "10.0.0.99"], [65, 15, 8, 6, 6])[0]

    def closed_port(self) -> int:
        while True:
            port = self.rng.randint(1, 65535)
            if port not in self.ports:
                return port

    def tcp_port(self) -> int:
        if self.tcp_ports and self.rng.random() < 0.75:
            return self.rng.choice(self.tcp_ports)
        return self.rng.randint(1, 65535)

    # -- upper layers

    def upper(self, kind: str, src: str, dst: str, tag: str, extra: int = 0) -> tuple[int, bytes, bytes | None]:
        """(protocol, transport bytes, the cleanup RST packet for a SYN or None);
        ``extra`` zero bytes lengthen a UDP payload or echo data."""
        rng = self.rng
        v6 = ":" in src
        if kind in ("udp", "closed"):
            port = self._port() if kind == "udp" else self.closed_port()
            payload = tag.encode() + bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 40))) + bytes(extra)
            return 17, udp_segment(src, dst, rng.randint(1024, 65535), port, payload), None
        if kind == "echo":
            data = tag.encode() + bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 24))) + bytes(extra)
            return (58 if v6 else 1), echo_message(src, dst, rng.randint(0, 65535), rng.randint(0, 65535), data), None
        if kind in ("syn", "ack"):
            sport, dport, seq = rng.randint(1024, 65535), self.tcp_port(), rng.randint(0, 2**32 - 1)
            if kind == "ack":
                return 6, tcp_bytes(src, dst, sport, dport, 0x10, seq, rng.randint(0, 2**32 - 1)), None
            options = rng.choice([MSS_OPTION, FULL_SYN_OPTIONS, b""])
            syn = tcp_bytes(src, dst, sport, dport, 0x02, seq, options=options)
            return 6, syn, ip_packet(src, dst, 6, tcp_bytes(src, dst, sport, dport, 0x04, seq + 1))
        if kind == "none":
            return 59, tag.encode(), None
        return PROTO_UNKNOWN, b"hello " + tag.encode(), None

    def plain_view(self, src: str, dst: str, proto: int, l4: bytes) -> bytes | None:
        """The datagram a UDP socket would see (other protocols: None)."""
        return ip_packet(src, dst, 17, l4) if proto == 17 else None

    # -- groups

    def group(self, index: int) -> Group:
        kind = self.rng.choices(["plain", "fragments", "options", "exthdrs", "burst", "syn"],
                                [38, 22, 16, 17, 4, 5])[0]
        return getattr(self, f"_{kind}")(index)

    def _syn(self, index: int) -> Group:
        """A SYN to a TCP port of the table (most often a listener)."""
        rng = self.rng
        v6 = rng.random() < 0.4
        src, dst = self.peer(v6), LOCAL6 if v6 else rng.choice(LOCAL4)
        proto, l4, cleanup = self.upper("syn", src, dst, "")
        packet = ip_packet(src, dst, proto, l4, ident=rng.randint(0, 65535), ttl=rng.choice([64, 1]))
        return Group([(packet, f"{index} syn", None)], cleanup=cleanup)

    def _plain(self, index: int) -> Group:
        packet, cleanup = self.packet(index)
        return Group([(packet, f"{index} random", None)], cleanup=cleanup)

    def _burst(self, index: int, peer: str | None = None, size: tuple[int, int] = (7, 10)) -> Group:
        rng = self.rng
        v6 = rng.random() < 0.45 if peer is None else ":" in peer
        src = peer or self.peer(v6)
        items = []
        for j in range(rng.randint(*size)):
            kind = rng.choices(["closed", "proto", "echo"], [70, 22, 8])[0]
            dst = LOCAL6 if v6 else rng.choice(LOCAL4)
            proto, l4, _ = self.upper(kind, src, dst, f"b{index}.{j}")
            items.append((ip_packet(src, dst, proto, l4, ident=rng.randint(0, 65535)),
                          f"{index} burst {'again ' if peer else ''}#{j} {kind}", None))
        group = Group(items, gap=BURST_GAP)
        if peer is None and rng.random() < 0.6:
            if v6:
                delay = rng.randint(1, 5) * 0.1 + 0.04
            else:
                delay = rng.choice([rng.uniform(0.3, 0.7), rng.uniform(1.04, 1.1)])
            group.follow = (delay, self._burst(index, src, (3, 8)))
        return group

    def _fragments(self, index: int) -> Group:
        rng = self.rng
        v6 = rng.random() < 0.45
        src, dst = self.peer(v6), self.target(v6)
        kind = rng.choices(["udp", "echo", "syn"], [55, 20, 25])[0]
        proto, l4, cleanup = self.upper(kind, src, dst, f"f{index}", extra=rng.randint(8, 80))
        ident = rng.randint(1, 2**32 - 1) if v6 else rng.randint(0, 65535)
        datagram = ip_packet(src, dst, proto, l4, ident=ident & 0xFFFF, tos=rng.choice([0, 0, 0, 2]))
        cuts = sorted(rng.sample(range(8, len(l4), 8), min(rng.randint(1, 3), (len(l4) - 1) // 8)))
        frags = fragment6(datagram, ident, cuts) if v6 else fragment4(datagram, cuts, df=rng.random() < 0.1)
        patterns = ["in order", "reversed", "shuffled", "duplicate", "overlap", "missing", "zero-length",
                    "ecn mix"] + (["header cut", "length 0", "nested", "atomic", "atomic twice", "odd length",
                                   "past 65535"] if v6 else ["odd length", "with options"])
        pattern = rng.choice(patterns)
        view = datagram if proto == 17 else None
        order = self._pattern(pattern, frags, datagram, cuts, ident, v6)
        label = f"{index} frag{'6' if v6 else '4'} {kind} {pattern}"
        return Group([(p, f"{label} {j + 1}/{len(order)}", view) for j, p in enumerate(order)], cleanup=cleanup)

    def _pattern(self, pattern: str, frags: list[bytes], datagram: bytes, cuts: list[int], ident: int,
                 v6: bool) -> list[bytes]:
        rng = self.rng
        order = list(frags)
        if pattern == "reversed":
            order.reverse()
        elif pattern == "shuffled":
            rng.shuffle(order)
        elif pattern == "duplicate":
            order.insert(rng.randint(1, len(order)), rng.choice(frags))
        elif pattern == "overlap":
            shifted = sorted({c + 8 for c in cuts if c + 8 < len(datagram) - (40 if v6 else 20)} | {8})
            other = fragment6(datagram, ident, shifted) if v6 else fragment4(datagram, shifted)
            extra = [f for f in other if f not in frags] or other[:1]
            order.insert(rng.randint(0, len(order)), rng.choice(extra))
        elif pattern == "missing":
            del order[rng.randrange(len(order))]
            rng.shuffle(order)
        elif pattern == "zero-length":
            order.insert(rng.randint(0, len(order)), _resized(frags[0], 0, v6, more=True))
        elif pattern == "ecn mix":
            j = rng.randrange(len(order))
            order[j] = _with_tos(order[j], rng.choice([1, 2, 3]), v6)
        elif pattern == "odd length":  # a non-last fragment whose length is not a multiple of 8
            j = rng.randrange(max(1, len(order) - 1))
            order[j] = _resized(order[j], rng.randint(1, 7), v6, more=True, grow=True)
        elif pattern == "with options":  # IPv4: every fragment carries NOP NOP RR
            order = [_with_options4(f, b"\x01\x01\x07\x07\x04" + bytes(4) + b"\x00" * 3) for f in order]
        elif pattern == "header cut":  # the fragment header itself is cut short
            order = [_cut6(order[0], 40 + rng.randint(0, 7))]
        elif pattern == "length 0":
            order = [_cut6(order[0], 40)]
        elif pattern == "nested":  # the reassembled datagram holds another fragment header
            inner = bytearray(datagram)
            body = frag_header(inner[6], 0, rng.random() < 0.5, ident ^ 1) + bytes(inner[40:])
            nested = ip_packet(_addr6(inner[8:24]), _addr6(inner[24:40]), 44, body)
            order = fragment6(nested, ident, [c + 8 for c in cuts])
        elif pattern in ("atomic", "atomic twice"):
            body = datagram[40:]
            if pattern == "atomic twice":
                body = frag_header(datagram[6], 8, False, ident ^ 2) + body
            first = frag_header(44 if pattern == "atomic twice" else datagram[6], 0, False, ident)
            order = [ip_packet(_addr6(datagram[8:24]), _addr6(datagram[24:40]), 44, first + body)]
        elif pattern == "past 65535":
            last = bytearray(order[-1])
            last[42:44] = (65528 | (last[43] & 1)).to_bytes(2, "big")
            order[-1] = bytes(last)
            rng.shuffle(order)
        return order

    def _options(self, index: int) -> Group:
        rng = self.rng
        src = self.peer(False) if rng.random() < 0.9 else self._src4()
        dst = self.target(False)
        kind = rng.choices(["udp", "closed", "echo", "syn", "ack", "proto"], [20, 20, 20, 15, 15, 10])[0]
        proto, l4, cleanup = self.upper(kind, src, dst, f"o{index}")
        options, what = self.ip_options()
        packet = ip_packet(src, dst, proto, l4, ident=rng.randint(0, 65535), options=options,
                           tos=rng.choice([0, 0, 0xB8]))
        return Group([(packet, f"{index} ipv4 options {what} {kind}", None)], cleanup=cleanup)

    def ip_options(self) -> tuple[bytes, str]:
        """Random IPv4 options (padded to 4 bytes, at most 40) and their names."""
        rng = self.rng
        out, names = b"", []
        for _ in range(rng.randint(1, 3)):
            name = rng.choices(["nop", "eol", "rr", "ts", "lsrr", "ssrr", "ra", "unknown", "sec", "cipso",
                                "bad length", "type only"], [8, 4, 22, 26, 4, 3, 5, 6, 3, 3, 10, 2])[0]
            option = self._ip_option(name)
            if len(out) + len(option) > 40:
                break
            out += option
            names.append(name)
            if name in ("lsrr", "ssrr"):
                # no option after a source route: when a later one is bad,
                # Linux's 12/0 echoes the reversed route with stack garbage
                # in it (__ip_options_echo) and sends it towards its first hop
                break
        pad = -len(out) % 4
        if pad:  # END padding, NOP padding, or END then junk (which Linux zeroes)
            junk = b"\x00" + bytes(rng.randint(1, 255) for _ in range(pad - 1))
            out += rng.choice([bytes(pad), b"\x01" * pad, junk])
        return out, "+".join(names)

    def _ip_option(self, name: str) -> bytes:
        rng = self.rng
        if name == "nop":
            return b"\x01"
        if name == "eol":
            return b"\x00"
        if name == "rr":
            slots = rng.randint(1, 9)
            length = 3 + 4 * slots
            ptr = rng.choice([4, 4, 4 + 4 * rng.randrange(slots), length + 1, 3, 5])
            return bytes((7, length, ptr)) + bytes(4 * slots)
        if name == "ts":
            flag = rng.choice([0, 0, 1, 3, 2])
            step = 4 if flag in (0, 2) else 8
            slots = rng.randint(1, 9 if step == 4 else 4)
            length = 4 + step * slots
            ptr = rng.choice([5, 5, 5 + step * rng.randrange(slots), length + 1, 4, 6])
            overflow = rng.choice([0, 0, 3, 15])
            data = bytearray(step * slots)
            if flag == 3:
                for s in range(slots):
                    data[8 * s:8 * s + 4] = A(rng.choice(["10.0.0.1", "10.0.0.3", "10.0.0.77"]))
            return bytes((68, length, ptr, overflow << 4 | flag)) + bytes(data)
        if name in ("lsrr", "ssrr"):
            hops = rng.randint(1, 3)
            return bytes((131 if name == "lsrr" else 137, 3 + 4 * hops, rng.choice([4, 4, 8, 3]))) + A("10.0.0.1") * hops
        if name == "ra":
            return rng.choice([b"\x94\x04\x00\x00", b"\x94\x04\x00\x01", b"\x94\x02"])
        if name == "unknown":
            return bytes((rng.choice([0x0A, 0x5E, 0x99, 0xDE]), 4, rng.randint(0, 255), rng.randint(0, 255)))
        if name == "sec":
            return b"\x82\x0b" + bytes(9)
        if name == "cipso":
            length = rng.choice([6, 10])
            return bytes((134, length)) + b"\x00\x00\x00\x03" + bytes(length - 6)
        if name == "bad length":
            kind = rng.choice([7, 68, 131, 148, 0x99])
            return bytes((kind, rng.choice([0, 1, 2, 44]))) + b"\x00\x00"
        return bytes((rng.choice([7, 68, 0x99]),))

    def _exthdrs(self, index: int) -> Group:
        rng = self.rng
        src, dst = self.peer(True), self.target(True)
        kind = rng.choices(["udp", "closed", "echo", "syn", "ack", "proto", "none"], [18, 18, 18, 14, 12, 12, 8])[0]
        proto, l4, cleanup = self.upper(kind, src, dst, f"x{index}")
        chain: list[tuple[int, bytes]] = []  # (header type, bytes from its own next-header byte)
        names = []
        if rng.random() < 0.45:
            chain.append((0, self._tlv_body(True)))
            names.append("hbh")
        for _ in range(rng.choice([0, 1, 1, 2])):
            what = rng.choices(["dst", "rt", "frag", "hbh"], [40, 35, 18, 7])[0]
            names.append(what)
            if what in ("dst", "hbh"):
                chain.append((60 if what == "dst" else 0, self._tlv_body(what == "hbh")))
            elif what == "rt":
                chain.append((43, self._routing_body()))
                names[-1] = f"rt{chain[-1][1][0]}/sl{chain[-1][1][1]}"
            else:
                chain.append((44, struct.pack("!BHI", 0, rng.choice([0, 0, 1, 8]), rng.randint(0, 2**32 - 1))))
        if not chain:
            chain.append((60, self._tlv_body(False)))
            names.append("dst")
        payload = l4
        next_header = proto
        for header, body in reversed(chain):
            payload = bytes((next_header,)) + body + payload if header == 44 else ext_header(next_header, body) + payload
            next_header = header
        packet = build_ipv6(src=A(src), dst=A(dst), next_header=next_header, payload=payload,
                            hop_limit=rng.choice([64, 255, 1]))
        label = f"{index} ipv6 {'+'.join(names)} {kind}"
        return Group([(packet, label, self.plain_view(src, dst, proto, l4))], cleanup=cleanup)

    def _tlv_body(self, hop: bool) -> bytes:
        """Options of a hop-by-hop / destination options header, after the
        length byte, padded to 6 + 8n bytes (the padding may be bad)."""
        rng = self.rng
        area = b""
        for _ in range(rng.randint(0, 3)):
            what = rng.choices(["pad1", "padn", "padn dirty", "unknown", "ra", "jumbo", "garbage"],
                               [15, 20, 4, 45, 8 if hop else 0, 2 if hop else 0, 3])[0]
            if what == "pad1":
                area += b"\x00" * rng.randint(1, 8)
            elif what == "padn":
                n = rng.randint(0, 5)
                area += bytes((1, n)) + bytes(n)
            elif what == "padn dirty":
                area += bytes((1, 3, 0, 9, 0))
            elif what == "unknown":
                action = rng.randrange(4)
                n = rng.randint(0, 6)
                area += bytes((action << 6 | rng.choice([0x1E, 0x1F, 0x23]), n)) + bytes(rng.randint(0, 255) for _ in range(n))
            elif what == "ra":
                area += b"\x05\x02\x00\x00"
            elif what == "jumbo":
                area += b"\xc2\x04\x00\x01\x00\x00"
            else:
                area += bytes((rng.choice([0x3E, 0x7E]), rng.randint(20, 60)))
        need = -(len(area) + 2) % 8
        if need == 1:
            area += b"\x00"
        elif need:
            area += bytes((1, need - 2)) + bytes(need - 2)
        return area

    def _routing_body(self) -> bytes:
        rng = self.rng
        rh_type = rng.choice([0, 0, 2, 4, 3, 253])
        segments_left = rng.choice([0, 0, 1, 2, 5])
        addresses = rng.choice([0, 1, 1, 2])
        if rh_type == 2:
            addresses = rng.choice([1, 1, 2])
        head = bytes((rh_type, segments_left))
        head += bytes((addresses - 1 if addresses else 0, 0, 0, 0)) if rh_type == 4 else bytes(4)
        return head + b"".join(A(rng.choice(["fd00::1", "fd00::7", "2001:db8::1"])) for _ in range(addresses))


def _addr6(raw: bytes | bytearray) -> str:
    from pktdemux.wire import format_addr

    return format_addr(bytes(raw))


def _resized(fragment: bytes, extra: int, v6: bool, *, more: bool, grow: bool = False) -> bytes:
    """``fragment`` with ``extra`` garbage bytes more (``grow``) or with no
    data but ``extra`` bytes, its length fields fixed, M set when ``more``."""
    buf = bytearray(fragment)
    head = 48 if v6 else (buf[0] & 0x0F) * 4
    data = bytes(buf[head:]) + b"\x5a" * extra if grow else b"\x5a" * extra
    buf = buf[:head] + data
    if v6:
        buf[4:6] = (len(buf) - 40).to_bytes(2, "big")
        buf[43] = buf[43] & 0xFE | more
    else:
        buf[2:4] = len(buf).to_bytes(2, "big")
        buf[6] = buf[6] & 0xDF | (0x20 if more else 0)
        _fix_checksum4(buf)
    return bytes(buf)


def _with_tos(packet: bytes, ecn: int, v6: bool) -> bytes:
    buf = bytearray(packet)
    if v6:
        buf[1] = buf[1] & 0xCF | ecn << 4
    else:
        buf[1] = buf[1] & 0xFC | ecn
        _fix_checksum4(buf)
    return bytes(buf)


def _with_options4(fragment: bytes, options: bytes) -> bytes:
    ihl = (fragment[0] & 0x0F) * 4
    buf = bytearray(fragment[:20] + options + fragment[ihl:])
    buf[0] = 0x40 | (20 + len(options)) // 4
    buf[2:4] = len(buf).to_bytes(2, "big")
    _fix_checksum4(buf)
    return bytes(buf)


def _cut6(packet: bytes, size: int) -> bytes:
    buf = bytearray(packet[:size])
    buf[4:6] = (size - 40).to_bytes(2, "big")
    return bytes(buf)


def _fix_checksum4(buf: bytearray) -> None:
    ihl = (buf[0] & 0x0F) * 4
    buf[10:12] = b"\0\0"
    buf[10:12] = checksum(bytes(buf[:ihl])).to_bytes(2, "big")


# --------------------------------------------------------------------------- scheduling

class Schedule:
    """Offsets for groups: GAPS apart (default) or in clusters (global)."""

    def __init__(self, case: TimelineCase, rng: random.Random, clustered: bool) -> None:
        self.case = case
        self.rng = rng
        self.clustered = clustered
        self.last = -1.0
        self.cluster_start = -CLUSTER
        self.in_cluster = CLUSTER_SIZE
        self.short = True
        #: (due offset, group) not yet placed
        self.pending: list[tuple[float, Group]] = []
        #: offset of the latest SYN left half-open to the end
        self.half_open = -1.0

    def _offsets(self, count: int, gap: float, not_before: float) -> list[float]:
        if not self.clustered:
            first = 0.0 if self.last < 0 else max(self.last + self.rng.uniform(*GAPS), not_before)
            return [first + k * gap for k in range(count)]
        if self.in_cluster + count > CLUSTER_SIZE or self.cluster_start + CLUSTER <= not_before:
            # a short gap only after a long one: a limited error is then
            # 6-14 ms after the last one let through (denied), or >= 26 ms
            self.short = not self.short and self.rng.random() < 0.4
            self.cluster_start += SHORT_CLUSTER if self.short else CLUSTER
            while self.cluster_start < not_before:
                self.cluster_start += CLUSTER
                self.short = False
            self.in_cluster = 0
        start = self.in_cluster
        self.in_cluster += count
        return [self.cluster_start + (start + k) * CLUSTER_GAP for k in range(count)]

    def place(self, group: Group, not_before: float = 0.0) -> None:
        offsets = self._offsets(len(group.items), group.gap, not_before)
        for offset, (packet, label, view) in zip(offsets, group.items):
            self.case.add(packet, gap=offset - self.last if self.last >= 0 else 0.0, label=label)
            self.case.views.append(view)
            self.last = offset
        if group.follow is not None:
            self.pending.append((offsets[0] + group.follow[0], group.follow[1]))
        if group.cleanup is not None:
            self._cleanup(group, offsets[0])

    def _cleanup(self, group: Group, at: float) -> None:
        """Reset the SYN now, a little later, or (early on) never."""
        rng = self.rng
        choice = rng.random()
        if at <= HALF_OPEN_UNTIL and choice < 0.5:
            self.half_open = max(self.half_open, at)
            return
        rst = Group([(group.cleanup, f"{group.items[0][1].split()[0]} cleanup RST", None)])  # type: ignore[list-item]
        if choice < 0.75:
            self.place(rst)
        else:
            self.pending.append((at + rng.uniform(0.02, 0.8), rst))

    def due(self) -> None:
        """Place the pending groups whose time has come."""
        ready = sorted((p for p in self.pending if p[0] <= self.last), key=lambda p: p[0])
        for item in ready:
            self.pending.remove(item)
            self.place(item[1], item[0])

    def flush(self) -> None:
        while self.pending:
            item = min(self.pending, key=lambda p: p[0])
            self.pending.remove(item)
            self.place(item[1], item[0])


@functools.cache
def make_case(index: int) -> TimelineCase:
    rng = random.Random(SEED * 1000 + index)
    sockets = SocketGen(rng)
    for _ in range(rng.randint(6, 10)):
        sockets.group()
    clustered = index % 3 == GLOBAL_KIND
    sysctls = {"net.ipv4.icmp_msgs_burst": 0} if clustered else None
    kind = "global bucket" if clustered else "default"
    case = TimelineCase(f"timeline #{index} ({kind}, seed {SEED})", host_toml(sockets.sockets, addresses=ADDRESSES,
                                                                             sysctls=sysctls), kind=kind)
    gen = TimelineGen(rng, sockets)
    schedule = Schedule(case, rng, clustered)
    number = 0
    while len(case.packets) < PACKETS:
        schedule.place(gen.group(number))
        schedule.due()
        number += 1
    schedule.flush()
    last = case.packets[-1].offset
    case.settle = max(SETTLE, schedule.half_open + HALF_OPEN_TAIL - last)
    return case


# --------------------------------------------------------------------------- comparison

Event = tuple[float, int, bytes]
#: An unpaired reply of the other side this close (seconds) is shown beside one.
NEAR = 0.05


def receipts_view(case: TimelineCase, run: Timeline) -> Any:
    """The oracle's result with each injection replaced by the plain datagram
    the sockets see, for :func:`kernel_support._receipts`."""
    packets = tuple(dataclasses.replace(p, packet=view) if view is not None else p
                    for p, view in zip(run.oracle.packets, case.views))
    return dataclasses.replace(run.oracle, packets=packets)


def pair_timeline(kernel: Sequence[Event], emulated: Sequence[Event],
                  slack: float = TIME_SLACK) -> tuple[list[Event], list[Event]]:
    """Pair each kernel reply with an emulated reply of the same content
    (:func:`comparable`) sent within ``slack`` seconds, over the whole
    timeline; returns the unpaired ones of each side."""
    left: dict[bytes, list[Event]] = {}
    for event in emulated:
        left.setdefault(comparable(event[2]), []).append(event)
    only_kernel = []
    for event in kernel:
        candidates = left.get(comparable(event[2]), [])
        match = next((e for e in candidates if abs(e[0] - event[0]) <= slack), None)
        if match is None:
            only_kernel.append(event)
        else:
            candidates.remove(match)
    return only_kernel, [e for events in left.values() for e in events]


def timeline_differences(case: TimelineCase, run: Timeline) -> list[str]:
    """Every disagreement, one text per packet: the packet (scenario, label,
    index, time, summary, bytes), the emulation's verdict, and each reply
    only one side sent with the nearest reply of the other side and the
    bytes that differ; then the socket receipts."""
    count = len(run.oracle.packets)
    kernel = [(t, i, p) for i in range(count) for t, p in run.kernel_replies(i)]
    emulated = [(t, i, p) for i in range(count) for t, p in run.emulated_replies(i)]
    only_k, only_e = pair_timeline(kernel, emulated)
    by_packet: dict[int, list[str]] = {}
    for tk, i, k in only_k:
        close = [e for e in only_e if e[1] == i or abs(e[0] - tk) <= NEAR]
        near = min(close, key=lambda e: (e[1] != i, abs(e[0] - tk)), default=None)
        line = f"    only the kernel at {tk:.4f}: {summary(k)}\n        {_hex(k)}"
        if near is not None:
            line += (f"\n      nearest from the emulation (after #{near[1]}, at {near[0]:.4f}): "
                     f"{first_difference(mask_clock(k), mask_clock(near[2])) or 'same fields'}; "
                     f"{byte_differences(k, near[2])}")
        by_packet.setdefault(i, []).append(line)
    for te, i, e in only_e:
        by_packet.setdefault(i, []).append(f"    only the emulation at {te:.4f}: {summary(e)}\n        {_hex(e)}")
    for i, result in enumerate(run.emulated):
        if result.error:
            by_packet.setdefault(i, [])
    notes = []
    for i in sorted(by_packet):
        sent = run.oracle.packets[i]
        head = [f"[{case.name}] packet {case.labels[i]} (#{i}, at {sent.sent_at:.4f}): {summary(sent.packet)}",
                f"    incoming: {_hex(sent.packet)}", f"    emulation verdict: {_verdict_note(run.emulated[i])}"]
        notes.append("\n".join(head + by_packet[i]))
    notes += [f"[{case.name}] {n}" for n in _receipts(case, receipts_view(case, run), run.emulated)]
    notes += [f"[{case.name}] the kernel refused socket {r.name}: {r.error}" for r in run.oracle.sockets if r.error]
    return notes


# --------------------------------------------------------------------------- tests

def test_generator_is_deterministic_and_big_enough() -> None:
    """The same seed gives the same cases; this suite alone compares at
    least 2,000 packets; every kind of group is there."""
    assert make_case.__wrapped__(4).packets == make_case(4).packets
    cases = [make_case(i) for i in range(SCENARIOS)]
    assert sum(len(c.packets) for c in cases) >= 2000
    labels = " ".join(label for c in cases for label in c.labels)
    for what in ("frag4", "frag6", "ipv4 options", "ipv6", "burst", "burst again", "random", "cleanup RST",
                 "overlap", "duplicate", "missing", "reversed", "rt0/", "rt2/", "rt4/", "hbh", "ts", "cipso"):
        assert what in labels, what
    assert all(len(c.views) == len(c.packets) for c in cases)
    assert all(c.packets[-1].offset + c.settle < MAX_END for c in cases)
    assert {c.kind for c in cases} == {"default", "global bucket"}


def test_clock_mask_hides_only_timestamp_clocks() -> None:
    """mask_clock zeroes the time words of a Timestamp option (flags 0 and
    1), here and in an ICMP error's quote, and nothing else."""
    ts_only = b"\x44\x0c\x0d\x00" + b"\x11\x11\x11\x11\x22\x22\x22\x22"
    ts_addr = b"\x44\x14\x15\x01" + b"\x0a\x00\x00\x01\x33\x33\x33\x33" + b"\x0a\x00\x00\x02\x44\x44\x44\x44"
    inner = ip_packet("10.0.0.1", "10.0.0.2", 17, udp_segment("10.0.0.1", "10.0.0.2", 1, 2, b"x"), options=ts_addr)
    error = ip_packet("10.0.0.1", "10.0.0.2", 1, b"\x03\x03\x12\x34\x00\x00\x00\x00" + inner, options=ts_only)
    masked = mask_clock(error)
    assert masked[24:32] == bytes(8) and masked[20:24] == ts_only[:4]
    quote = masked[40:]
    assert quote[24:28] == A("10.0.0.1") and quote[28:32] == bytes(4)
    assert quote[32:36] == A("10.0.0.2") and quote[36:40] == bytes(4)
    assert masked[10:12] == b"\0\0" and masked[34:36] == b"\0\0"
    plain = ip_packet("10.0.0.1", "10.0.0.2", 17, b"12345678")
    assert mask_clock(plain) == plain


@pytest.mark.kernel
@pytest.mark.parametrize("index", range(SCENARIOS))
def test_random_timeline_scenario(kernel_oracle: Callable[..., Any], index: int) -> None:
    """Every packet of timeline scenario ``index``: the same replies at the
    same times (rate limits and retransmissions included), the same receivers."""
    case = make_case(index)
    run = run_timeline(kernel_oracle, case)
    refused = [s.name for s in run.oracle.sockets if s.error]
    assert refused == [], f"the generator made conflicting sockets: {refused}"
    assert_agree(timeline_differences(case, run))
