"""Infer a host file from the evidence in a capture.

Pure: capture records in (:class:`pktdemux.capture.Record` or anything with
``n``, ``linktype`` and ``frame``), an :class:`~pktdemux.hostimport.model.Imported`
out.  The rules, for packets of the host (``addresses``):

* TCP: a port that answered a SYN with a SYN-ACK was listening; one that
  answered with a RST had no socket (the header lists it).  A listener is
  bound to the wildcard address, unless the same port was refused on
  another address of the same family: then to each address that answered.
* UDP: a port that answered a datagram (the host sent from it to the
  sender after receiving) was open: an unconnected socket; one that
  answered with ICMP port unreachable was closed.  A port that was open
  (or that the host sent from first: an implicit bind) and later answers
  with ICMP port unreachable was closed in between: its socket gets a close
  time (``closed``), midway between the last packet that shows it open (one
  the host sent from it, or one it received without an ICMP error) and the
  datagram that found it closed (:meth:`_Collector._close_time`).
* Connections in progress when the capture starts (their first packet is
  not a SYN, nor a RST, and the host sent something other than a RST in
  them) become ESTABLISHED sockets.  Connections the host
  opens itself, and datagrams it sends first, need no socket: the replay
  follows them (a SYN is a connect(), a datagram from an unbound port an
  implicit bind).
* Sysctls the replies reveal, each with its evidence: the TTL or hop limit
  of the host's kernel-made replies (net.ipv4.ip_default_ttl,
  net.ipv6.conf.all.hop_limit), the SYN-ACK window scale (tcp_rmem[2]),
  the SYN-ACK MSS (the device MTU) and the SYN-ACK window.  A TTL is as
  captured: seen hops away, it is lower than the host's setting, and the
  proposed value is the one that makes the replies compare.
* A SYN-ACK window smaller than 6.18's default that is a whole number N of
  segments (the MSS, less 12 with timestamps) is the route's initial
  receive window: ``[host] initrwnd = N`` (``ip route ... initrwnd N``;
  kernels before 4.19 capped the initial window so by default, at 10 or 20
  segments).  The buffer keeps its default size, so the window grows after
  the handshake as it does on Linux.  Only a window no initrwnd explains
  is taken as half of tcp_rmem[1] (:meth:`_Collector._from_synacks`).

* TCP options and TOS (:meth:`_Collector._tcp_options`): an option every
  SYN offered and no SYN-ACK answered turns its sysctl off (tcp_timestamps,
  tcp_sack, tcp_window_scaling); ECN setup SYNs answered without ECE give
  tcp_ecn = 0; SYN-ACKs carrying their SYN's DSCP give tcp_reflect_tos = 1.
* What no setting reproduces is said in the header (:meth:`_Collector.caveats`):
  RSTs and SYN-ACKs without DF or with an IPv4 ID, ICMP errors without
  precedence 0xc0, SYN-ACK options in another stack's order, a SYN-ACK TOS
  the SYN did not carry.

Without ``addresses`` the busiest responder is taken: the address that sent
the most kernel-made replies (SYN-ACK, RST, ICMP errors, echo replies; a tie
goes to the address in the most packets), else the address seen in the most
packets.  Its other addresses are added by :func:`_same_host`: the addresses
it sends to itself, its loopback traffic and wire address when the capture
was taken on it, EUI-64 ties, and responders of the same configuration.  A
host seen only on loopback addresses is a host on ``lo``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ..linklayer import Undecoded, decode
from ..sockets import Proto
from ..sysctl import DEFAULTS
from ..wire import format_addr, format_endpoint
from .model import ESTAB, LISTEN, UNCONN, Imported, Observed
from .table import GUESSED_PREFIX, Address, build_host

_SYN, _RST, _ACK, _FIN = 0x02, 0x04, 0x10, 0x01
_ECE, _CWR = 0x40, 0x80
_OPTION_NAMES = {"ts": "timestamps", "sack": "SACK", "wscale": "window scaling"}
_V6_SKIPPED_HEADERS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_V6_FRAGMENT = 44
#: ICMP / ICMPv6 types a kernel sends on its own.
_ICMP_REPLIES = {4: frozenset({0, 3, 14}), 6: frozenset({1, 4, 129})}
_PORT_UNREACH = {4: (3, 3), 6: (1, 4)}  # (type, code)
#: Evidence packet numbers listed per item before "...".
MAX_LISTED = 5


class RecordLike(Protocol):
    """What inference reads from a capture record (and ``time``, seconds
    since the epoch, when it has one: socket lifetimes need it)."""

    n: int
    linktype: int
    frame: bytes


@dataclass(slots=True)
class _Pkt:
    n: int
    family: int
    src: bytes
    dst: bytes
    ttl: int
    proto: int
    l4: bytes
    tos: int = 0
    mac: bytes = b""
    ip_id: int = 0
    df: int = 0
    time: float | None = None


@dataclass
class _Evidence:
    packets: list[int] = field(default_factory=list)

    def add(self, n: int) -> None:
        if n not in self.packets:
            self.packets.append(n)

    def text(self) -> str:
        shown = ", ".join(str(n) for n in self.packets[:MAX_LISTED])
        more = f", ... ({len(self.packets)} in all)" if len(self.packets) > MAX_LISTED else ""
        return f"packet{'s' if len(self.packets) > 1 else ''} {shown}{more}"


def infer_host(records: Iterable[RecordLike], addresses: Iterable[Address] | None = None,
               source: str = "the capture") -> Imported:
    """Infer the host file of the host at ``addresses`` from ``records``.

    Args:
        records: capture records, in capture order.
        addresses: the host's addresses (prefix lengths kept); None to take
            the busiest responder.
        source: names the capture in the header.

    Returns:
        The host file with every socket's evidence as comments.  Never
        raises on packet content: frames that cannot be read are ignored.
    """
    packets = [p for p in (_parse(r) for r in records) if p is not None]
    header = [f"Inferred from {source} ({len(packets)} IP packets read) by pktdemux host infer."]
    given = list(addresses) if addresses is not None else None
    if given is None:
        chosen, why = _busiest_responder(packets)
        header.append(why)
        given = [] if chosen is None else [chosen]
        if chosen is not None:
            more, notes = _same_host(packets, chosen)
            given += more
            header += notes
    local = {a.ip.packed for a in given}
    loopback_host = bool(given) and all(a.ip.is_loopback for a in given)
    on_loopback = any(a.ip.is_loopback for a in given)

    def is_local(addr: bytes) -> bool:
        return addr in local or (on_loopback and ipaddress.ip_address(addr).is_loopback)

    evidence = _Collector(is_local)
    for p in packets:
        evidence.add(p)
    header += evidence.header_lines()
    header += evidence.caveats()
    sysctl, sysctl_notes, mtu = evidence.sysctls(loopback_host)
    host_addresses = [a for a in given if not a.ip.is_loopback]
    return build_host(evidence.sockets(), source=header[0], addresses=host_addresses,
                      interface="lo" if loopback_host else None, mtu=mtu, initrwnd=evidence.initrwnd,
                      sysctl=sysctl, sysctl_notes=sysctl_notes, host_notes=evidence.host_notes,
                      header=header[1:])


# -- packets --------------------------------------------------------------------------

def _parse(record: RecordLike) -> _Pkt | None:
    decoded = decode(record.linktype, record.frame)
    if decoded.__class__ is Undecoded:
        return None
    _, ip = decoded
    version = ip[0] >> 4 if ip else 0
    if version == 4 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if ihl < 20 or struct.unpack_from("!H", ip, 6)[0] & 0x1FFF:  # bad header, or not the first fragment
            return None
        end = min(len(ip), total) if total >= ihl else len(ip)
        return _Pkt(record.n, 4, ip[12:16], ip[16:20], ip[8], ip[9], ip[ihl:end], ip[1], _link_source(record),
                    struct.unpack_from("!H", ip, 4)[0], ip[6] >> 6 & 1, getattr(record, "time", None))
    if version == 6 and len(ip) >= 40:
        nxt, offset = ip[6], 40
        end = min(len(ip), 40 + struct.unpack_from("!H", ip, 4)[0])
        for _ in range(8):
            if nxt in _V6_SKIPPED_HEADERS and offset + 2 <= end:
                nxt, offset = ip[offset], offset + (ip[offset + 1] + 1) * 8
            elif nxt == _V6_FRAGMENT and offset + 8 <= end:
                if struct.unpack_from("!H", ip, offset + 2)[0] & 0xFFF8:
                    return None
                nxt, offset = ip[offset], offset + 8
            else:
                break
        tclass = ((ip[0] & 0x0F) << 4) | (ip[1] >> 4)
        return _Pkt(record.n, 6, ip[8:24], ip[24:40], ip[7], nxt, ip[offset:end], tclass, _link_source(record),
                    time=getattr(record, "time", None))
    return None


#: Link types whose header names the sender's link-layer address: Ethernet,
#: Linux cooked capture v1 and v2.
_ETHERNET, _SLL, _SLL2 = 1, 113, 276


def _link_source(record: RecordLike) -> bytes:
    """The 6-byte link-layer source address of ``record``'s frame, else b"" (zeros count as none)."""
    frame, linktype = record.frame, record.linktype
    mac = b""
    if (linktype == _ETHERNET and len(frame) >= 14) or (
            linktype == _SLL and len(frame) >= 16 and struct.unpack_from("!H", frame, 4)[0] == 6):
        mac = frame[6:12]
    elif linktype == _SLL2 and len(frame) >= 20 and frame[11] == 6:
        mac = frame[12:18]
    return bytes(mac) if any(mac) else b""


def _eui64(mac: bytes) -> bytes:
    """The modified EUI-64 interface identifier SLAAC derives from ``mac`` (RFC 4291 appendix A)."""
    return bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def _tcp(p: _Pkt) -> tuple[int, int, int, int, int, int, dict[str, int]] | None:
    """(sport, dport, flags, seq, ack, window, options) of a TCP segment."""
    if p.proto != 6 or len(p.l4) < 20:
        return None
    sport, dport, seq, ack, off_flags, window = struct.unpack_from("!HHIIHH", p.l4)
    hlen = (off_flags >> 12) * 4
    return sport, dport, off_flags & 0xFF, seq, ack, window, _options(p.l4[20:hlen])


def _options(data: bytes) -> dict[str, int]:
    opts: dict[str, int] = {}
    i = 0
    while i < len(data):
        kind = data[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(data) or data[i + 1] < 2:
            break
        size = data[i + 1]
        body = data[i + 2:i + size]
        if kind == 2 and len(body) == 2:
            opts["mss"] = struct.unpack("!H", body)[0]
        elif kind == 3 and len(body) == 1:
            opts["wscale"] = body[0]
        elif kind == 4 and not body:
            opts["sack"] = 1
        elif kind == 8 and len(body) == 8:
            opts["ts"] = 1
        i += size
    return opts


def _linux_layout(data: bytes, opts: dict[str, int]) -> bool:
    """True when SYN-ACK options ``data`` are laid out as Linux's tcp_options_write() lays out ``opts``."""
    expected = [2] if "mss" in opts else []
    if "ts" in opts:
        expected += [4, 8] if "sack" in opts else [1, 1, 8]
    elif "sack" in opts:
        expected += [1, 1, 4]
    if "wscale" in opts:
        expected += [1, 3]
    kinds, i = [], 0
    while i < len(data):
        kinds.append(data[i])
        if data[i] in (0, 1):
            i += 1
        elif i + 1 < len(data) and data[i + 1] >= 2:
            i += data[i + 1]
        else:
            break
    while kinds and kinds[-1] == 0:
        kinds.pop()
    return kinds == expected


def _is_kernel_reply(p: _Pkt) -> bool:
    if p.proto == 6:
        seg = _tcp(p)
        return seg is not None and (seg[2] & (_SYN | _ACK) == _SYN | _ACK or bool(seg[2] & _RST))
    if (p.family, p.proto) in ((4, 1), (6, 58)) and p.l4:
        return p.l4[0] in _ICMP_REPLIES[p.family]
    return False


#: Initial TTLs (and hop limits) stacks start from; Linux's is 64.
_INITIAL_TTLS = (32, 64, 128, 255)


class _Raw:
    """An IP packet as a record (LINKTYPE_RAW), for :func:`_parse`."""

    __slots__ = ("frame",)
    n = 0
    linktype = 101

    def __init__(self, frame: bytes) -> None:
        self.frame = frame


def stack_signs(ip: bytes) -> tuple[list[str], list[str]]:
    """What one kernel-made reply (an IPv4/IPv6 packet) says about the stack
    that sent it: (signs of Linux, signs against), each a short phrase.

    The rules the caveats of :func:`infer_host` rest on: the initial TTL or
    hop limit (the next of 32, 64, 128, 255 at or above the one seen; Linux
    starts at 64, so do the BSDs, hence a weak sign); IPv4 SYN-ACKs and RSTs
    with DF and ID 0 (ip_select_ident_segs); SYN-ACK options in
    tcp_options_write's order (MSS, SACK-permitted and timestamps, window
    scale); ICMPv4 errors with precedence 0xc0 (icmp_send).  A packet that is
    not a kernel-made reply gives only its TTL.
    """
    p = _parse(_Raw(ip))
    if p is None:
        return [], []
    signs: tuple[list[str], list[str]] = ([], [])
    initial = next((t for t in _INITIAL_TTLS if p.ttl <= t), 255)
    signs[initial != 64].append(f"{'TTL' if p.family == 4 else 'hop limit'} from {initial}")
    seg = _tcp(p)
    if seg is not None:
        flags, opts = seg[2], seg[6]
        synack = flags & (_SYN | _ACK) == _SYN | _ACK
        if p.family == 4 and (synack or flags & _RST):
            signs[not (p.ip_id == 0 and p.df)].append(
                f"{'SYN-ACK' if synack else 'RST'} {'with' if p.df else 'without'} DF, ID "
                f"{'0' if p.ip_id == 0 else 'not 0'}")
        if synack:
            linux = _linux_layout(p.l4[20:(p.l4[12] >> 4) * 4], opts)
            signs[not linux].append(f"SYN-ACK options in {'Linux' if linux else 'another'} order")
    elif p.family == 4 and p.proto == 1 and len(p.l4) >= 8 and p.l4[0] in (3, 11, 12):
        signs[p.tos & 0xE0 != 0xC0].append(f"ICMP error with TOS {p.tos:#04x}")
    return signs


def _busiest_responder(packets: list[_Pkt]) -> tuple[Address | None, str]:
    replies = Counter(p.src for p in packets if _is_kernel_reply(p))
    if replies:
        top = max(replies.values())
        tied = [a for a, c in replies.items() if c == top]
        addr, count = tied[0], top
        why = (f"Host: {format_addr(addr)}, the capture's busiest responder ({count} kernel-made replies: "
               "SYN-ACKs, RSTs, ICMP errors, echo replies); pass --address to choose another.")
        if len(tied) > 1:
            seen = Counter(a for p in packets for a in {p.src, p.dst} if a in tied)
            addr = max(tied, key=lambda a: seen[a])
            why = (f"Host: {format_addr(addr)}, one of {len(tied)} busiest responders ({count} kernel-made "
                   f"replies each: SYN-ACKs, RSTs, ICMP errors, echo replies), the one in the most packets "
                   f"({seen[addr]}); pass --address to choose another.")
    else:
        seen = Counter(a for p in packets for a in (p.src, p.dst) if not ipaddress.ip_address(a).is_multicast)
        if not seen:
            return None, "Host: none found (no IP packet in the capture); pass --address."
        addr, count = seen.most_common(1)[0]
        why = (f"Host: {format_addr(addr)}, the address in the most packets ({count}); the capture holds "
               "no kernel-made reply to judge by. Pass --address to choose another.")
    ip = ipaddress.ip_address(addr)
    if ip.is_loopback:
        why += " It is a loopback address: the host file describes lo."
        return ipaddress.ip_interface(f"{ip}/{8 if ip.version == 4 else 128}"), why
    why += f" Prefix /{GUESSED_PREFIX[ip.version]} guessed."
    return ipaddress.ip_interface(f"{ip}/{GUESSED_PREFIX[ip.version]}"), why


def _interface_of(addr: bytes) -> Address:
    ip = ipaddress.ip_address(addr)
    if ip.is_loopback:
        return ipaddress.ip_interface(f"{ip}/{8 if ip.version == 4 else 128}")
    return ipaddress.ip_interface(f"{ip}/{GUESSED_PREFIX[ip.version]}")


def _same_host(packets: list[_Pkt], chosen: Address) -> tuple[list[Address], list[str]]:
    """The chosen responder's other addresses, and why each is taken.

    * A packet whose source is its destination (or a loopback address)
      travels over lo: the capture was taken on that host, and every address
      it sends to itself is its own.  Its address on the wire is then the
      one in the most other packets, when it is in at least half of them.
    * An IPv6 address whose interface identifier is the EUI-64 of a
      link-layer address the host sends from (SLAAC) is the host's; so is
      the one IPv4 address sent from the link-layer address an IPv6 address
      of the host was derived from.
    * A responder whose kernel-made replies all carry the host's TTL (or hop
      limit), and that answered one of the host's peers or sent the same
      kinds of reply, is taken as another address of one configuration: the
      capture cannot tell such hosts apart, and one host with both addresses
      replays the replies of each.
    """
    me = chosen.ip.packed
    found: dict[bytes, str] = {}
    notes: list[str] = []

    def evidence(ns: list[int]) -> str:
        return _Evidence(sorted(set(ns))).text()

    self_sent: dict[bytes, list[int]] = defaultdict(list)
    loop_packets = 0
    for p in packets:
        if p.src == p.dst:
            self_sent[p.src].append(p.n)
        if ipaddress.ip_address(p.src).is_loopback:
            loop_packets += 1
    wire = [p for p in packets if p.src != p.dst and not ipaddress.ip_address(p.src).is_loopback
            and not ipaddress.ip_address(p.dst).is_loopback]
    seen = Counter(a for p in wire for a in {p.src, p.dst}
                   if not ipaddress.ip_address(a).is_multicast and a not in self_sent)
    on_wire, on_wire_count = seen.most_common(1)[0] if seen else (b"", 0)
    if 2 * on_wire_count < len(wire) or not any(on_wire):
        on_wire = b""
    on_host = chosen.ip.is_loopback or me in self_sent or (loop_packets > 0 and me == on_wire)
    if on_host:
        if not chosen.ip.is_loopback:
            found[ipaddress.ip_address("127.0.0.1").packed] = "lo: the capture holds traffic over lo"
        for addr, ns in self_sent.items():
            if addr != me and not ipaddress.ip_address(addr).is_loopback:
                found[addr] = f"it sends packets to itself (over lo: {evidence(ns)})"
        if on_wire and on_wire != me and on_wire not in found:
            found[on_wire] = (f"the capture holds the host's loopback traffic, so it was taken on the host; "
                              f"{format_addr(on_wire)} is in {on_wire_count} of the {len(wire)} packets on the "
                              "wire")
    # EUI-64 ties between IPv4 and IPv6 addresses of one interface
    macs: dict[bytes, set[bytes]] = defaultdict(set)
    first_with: dict[tuple[bytes, bytes], int] = {}
    for p in packets:
        if p.mac:
            macs[p.src].add(p.mac)
            first_with.setdefault((p.src, p.mac), p.n)
    mine = [me, *found]
    for addr in mine:
        for mac in macs.get(addr, ()):
            iid = _eui64(mac)
            for other in macs:
                if other in found or other == me or len(other) != 16 or other[8:] != iid:
                    continue
                found[other] = (f"its interface identifier is the EUI-64 of {mac.hex(':')}, the link-layer "
                                f"address {format_addr(addr)} sends from (packets {first_with[(addr, mac)]} "
                                f"and {first_with.get((other, mac), '-')})")
        if len(addr) == 16 and addr[11:13] == b"\xff\xfe":
            for mac in {m for ms in macs.values() for m in ms if _eui64(m) == addr[8:]}:
                v4 = [a for a, ms in macs.items() if len(a) == 4 and mac in ms]
                if len(v4) == 1 and v4[0] not in found and v4[0] != me:
                    found[v4[0]] = (f"the only IPv4 address sent from {mac.hex(':')} (packet "
                                    f"{first_with[(v4[0], mac)]}), whose EUI-64 is {format_addr(addr)}'s "
                                    "interface identifier")
    # responders of one configuration
    ttls: dict[bytes, Counter[int]] = defaultdict(Counter)
    peers: dict[bytes, set[bytes]] = defaultdict(set)
    kinds: dict[bytes, set[tuple[int, int]]] = defaultdict(set)
    replies: dict[bytes, list[int]] = defaultdict(list)
    prints: dict[bytes, set[tuple[int, ...]]] = defaultdict(set)
    for p in packets:
        if _is_kernel_reply(p):
            prints[p.src].add(_fingerprint(p))
            ttls[p.src][p.ttl] += 1
            peers[p.src].add(p.dst)
            kinds[p.src].add((p.proto, _reply_kind(p)))
            replies[p.src].append(p.n)
    if len(ttls.get(me, ())) == 1 and not chosen.ip.is_loopback:
        (ttl,) = ttls[me]
        for addr, counts in ttls.items():
            if addr == me or addr in found or len(addr) != len(me) or set(counts) != {ttl}:
                continue
            if ipaddress.ip_address(addr).is_loopback or me in peers[addr] or addr in peers[me]:
                continue
            if _clash(prints[addr], prints[me]):
                continue
            common = peers[addr] & peers[me]
            if common:
                why = f"answered {format_addr(min(common))} as the host did"
            elif kinds[addr] == kinds[me]:
                why = "sent the same kinds of reply"
            else:
                continue
            found[addr] = (f"its {len(replies[addr])} kernel-made replies ({evidence(replies[addr])}) all have "
                           f"the host's {'TTL' if len(me) == 4 else 'hop limit'} {ttl} and it {why}: taken as "
                           "one more address of the same configuration")
    result = []
    for addr, why in found.items():
        result.append(_interface_of(addr))
        notes.append(f"Also the host's: {format_addr(addr)}: {why}.")
    return result, notes


def _fingerprint(p: _Pkt) -> tuple[int, ...]:
    """(protocol, IPv4 ID is zero, DF) of a kernel-made reply: what one stack does the same way every time.

    Linux sends its RSTs and SYN-ACKs with DF and ID 0, other stacks with a
    counter; ICMP messages are told apart by DF alone.
    """
    if p.family != 4:
        return (p.proto,)
    return (p.proto, int(p.ip_id == 0) if p.proto == 6 else -1, p.df)


def _clash(a: set[tuple[int, ...]], b: set[tuple[int, ...]]) -> bool:
    """True when two responders answer one protocol differently."""
    by_proto_a = {f[0]: f for f in a}
    return any(f[0] in by_proto_a and f != by_proto_a[f[0]] for f in b) or \
        any(len({f for f in x if f[0] == proto}) > 1 for x in (a, b) for proto in {f[0] for f in x})


def _reply_kind(p: _Pkt) -> int:
    if p.proto == 6:
        return p.l4[13] & (_SYN | _RST) if len(p.l4) > 13 else 0
    return p.l4[0] if p.l4 else -1


# -- evidence ------------------------------------------------------------------------------

_Key = tuple[int, bytes, int]  # family, address, port

#: seconds: the delayed-ACK timeout a reply must come within to count (TCP_ATO_MIN, 40 ms)
_DELACK_TIMEOUT = 0.040
#: seconds: an ACK this soon after the data was not left to the delayed-ACK timer
_QUICK_ACK_WITHIN = 0.020
#: seconds: an ACK this late came from the delayed-ACK timer (36 to 40 ms at HZ=250)
_TIMER_ACK_AFTER = 0.030
#: bytes: data shorter than this (TCP_MSS_DEFAULT) is ACKed at once only outside pingpong mode
_SMALL_SEGMENT = 536


@dataclass
class _Talk:
    """One endpoint of a host's connection, for the delayed-ACK evidence."""

    #: capture time of the last data it received, seconds
    received: float | None = None
    #: the last data it received is short, without FIN, and not answered yet
    small_data: bool = False
    #: data it sent within the delayed-ACK timeout of receiving data
    replies: int = 0


class _Collector:
    """Walks the host's packets once, keeping what each port revealed."""

    def __init__(self, is_local) -> None:  # type: ignore[no-untyped-def]
        self.is_local = is_local
        self.syns: dict[tuple[bytes, int, bytes, int], int] = {}
        self.listening: dict[_Key, _Evidence] = defaultdict(_Evidence)
        self.refused: dict[_Key, _Evidence] = defaultdict(_Evidence)
        self.flows_first: dict[tuple[int, bytes, int, bytes, int], tuple[int, bool]] = {}
        self.tcp_first: dict[tuple[bytes, int, bytes, int], tuple[int, int]] = {}
        self.udp_open: dict[_Key, _Evidence] = defaultdict(_Evidence)
        self.udp_closed: dict[_Key, _Evidence] = defaultdict(_Evidence)
        self.udp_unanswered: dict[_Key, _Evidence] = defaultdict(_Evidence)
        #: per (family, local port): the host's UDP packets in capture order,
        #: (packet, time, what): "sent" from the port, "received" to it, or
        #: "unreachable" (the host's ICMP port unreachable for it)
        self.udp_timeline: dict[tuple[int, int], list[tuple[int, float | None, str]]] = defaultdict(list)
        self.ttl: dict[int, Counter[int]] = {4: Counter(), 6: Counter()}
        self.ttl_packets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.synacks: list[tuple[int, int, int, dict[str, int]]] = []  # n, family, window, options
        #: the routes' initrwnd the SYN-ACK windows show (0: none), and the
        #: evidence for [host] keys (initrwnd, mtu); set by :meth:`sysctls`
        self.initrwnd = 0
        self.host_notes: list[str] = []
        #: SYN-ACKs to the host's own addresses: sent over lo
        self.looped_synacks: set[int] = set()
        self.host_opened = 0
        #: SYNs by 4-tuple: (packet, options, flags, TOS)
        self.syn_info: dict[tuple[bytes, int, bytes, int], tuple[int, dict[str, int], int, int]] = {}
        #: SYN-ACKs with their SYN: (packet, SYN info, options, flags, TOS)
        self.answered: list[tuple[int, tuple[int, dict[str, int], int, int], dict[str, int], int, int]] = []
        #: IPv4 RSTs and SYN-ACKs by (ID, DF) behaviour
        self.ip_behaviour: dict[tuple[str, str], list[int]] = defaultdict(list)
        #: SYN-ACKs whose options are not laid out as Linux writes them
        self.odd_layout: list[int] = []
        #: ICMP errors by TOS
        self.icmp_tos: dict[int, list[int]] = defaultdict(list)
        #: connections in which the host sent something other than a RST: it had a socket
        self.host_spoke: set[tuple[bytes, int, bytes, int]] = set()
        #: per host endpoint (its address and port, the peer's): the delayed-ACK
        #: evidence of :meth:`_pingpong`
        self.talk: dict[tuple[bytes, int, bytes, int], _Talk] = defaultdict(_Talk)
        #: pure ACKs sent at once to small data after the endpoint had answered
        #: data with data: the host was not in pingpong (interactive) mode
        self.quick_after_reply: list[int] = []

    # one packet
    def add(self, p: _Pkt) -> None:
        src_local, dst_local = self.is_local(p.src), self.is_local(p.dst)
        if not (src_local or dst_local):
            return
        if src_local and _is_kernel_reply(p):
            self.ttl[p.family][p.ttl] += 1
            self.ttl_packets[(p.family, p.ttl)].append(p.n)
        if p.proto == 6:
            self._tcp(p, src_local, dst_local)
        elif p.proto == 17 and len(p.l4) >= 8:
            self._udp(p, src_local, dst_local)
        elif src_local and (p.family, p.proto) in ((4, 1), (6, 58)):
            self._icmp_error(p)

    def _tcp(self, p: _Pkt, src_local: bool, dst_local: bool) -> None:
        seg = _tcp(p)
        if seg is None:
            return
        sport, dport, flags, seq, ack, window, opts = seg
        tup = (p.src, sport, p.dst, dport)
        self.tcp_first.setdefault(tup, (p.n, flags))
        rev = (p.dst, dport, p.src, sport)
        if src_local and not flags & _RST:
            self.host_spoke.add(tup)
        if flags & (_SYN | _ACK) == _SYN:
            self.syns[tup] = seq
            self.syn_info[tup] = (p.n, opts, flags, p.tos)
            if src_local and not dst_local:
                self.host_opened += 1
            return
        self._pingpong(p, tup, flags, src_local, dst_local)
        if not src_local:
            return
        syn_seq = self.syns.get(rev)
        key = (p.family, p.src, sport)
        if flags & (_SYN | _ACK) == _SYN | _ACK:
            self.listening[key].add(p.n)
            self.synacks.append((p.n, p.family, window, opts))
            if dst_local:
                self.looped_synacks.add(p.n)
            if not _linux_layout(p.l4[20:(p.l4[12] >> 4) * 4], opts):
                self.odd_layout.append(p.n)
            if rev in self.syn_info:
                self.answered.append((p.n, self.syn_info[rev], opts, flags, p.tos))
        if p.family == 4 and (flags & (_SYN | _ACK) == _SYN | _ACK or flags & _RST):
            self.ip_behaviour[("ID not 0" if p.ip_id else "ID 0", "DF" if p.df else "no DF")].append(p.n)
        if flags & (_SYN | _ACK) != _SYN | _ACK and flags & _RST and syn_seq is not None and ack == (syn_seq + 1) & 0xFFFFFFFF:
            self.refused[key].add(p.n)

    def _udp(self, p: _Pkt, src_local: bool, dst_local: bool) -> None:
        sport, dport = struct.unpack_from("!HH", p.l4)
        if src_local != dst_local:
            port = sport if src_local else dport
            self.udp_timeline[(p.family, port)].append((p.n, p.time, "sent" if src_local else "received"))
        flow = (p.family, p.src, sport, p.dst, dport)
        rev = (p.family, p.dst, dport, p.src, sport)
        if rev in self.flows_first:
            first_n, first_in = self.flows_first[rev]
            if first_in and src_local:
                self.udp_open[(p.family, p.src, sport)].add(first_n)
                self.udp_open[(p.family, p.src, sport)].add(p.n)
            return
        if flow not in self.flows_first:
            self.flows_first[flow] = (p.n, dst_local)
            if dst_local and not src_local:
                self.udp_unanswered[(p.family, p.dst, dport)].add(p.n)

    def _icmp_error(self, p: _Pkt) -> None:
        if p.family == 4 and len(p.l4) >= 8 and p.l4[0] in (3, 11, 12):
            self.icmp_tos[p.tos].append(p.n)
        if len(p.l4) < 8 or (p.l4[0], p.l4[1]) != _PORT_UNREACH[p.family]:
            return
        quoted = _Pkt(p.n, p.family, b"", b"", 0, 0, b"")
        inner = p.l4[8:]
        if p.family == 4 and len(inner) >= 28 and inner[9] == 17:
            ihl = (inner[0] & 0x0F) * 4
            quoted.dst, udp = inner[16:20], inner[ihl:ihl + 8]
        elif p.family == 6 and len(inner) >= 48 and inner[6] == 17:
            quoted.dst, udp = inner[24:40], inner[40:48]
        else:
            return
        if len(udp) == 8 and self.is_local(quoted.dst):
            port = struct.unpack_from("!H", udp, 2)[0]
            self.udp_closed[(p.family, quoted.dst, port)].add(p.n)
            self.udp_timeline[(p.family, port)].append((p.n, p.time, "unreachable"))

    # results
    def sockets(self) -> list[Observed]:
        result: list[Observed] = []
        result += self._listeners(Proto.TCP, self.listening, self.refused, LISTEN, "answered a SYN with a SYN-ACK")
        result += self._listeners(Proto.UDP, self.udp_open, self.udp_closed, UNCONN, "answered datagrams")
        result += self._implicit_closed({(f, p) for f, _, p in self.udp_open})
        result += self._in_progress()
        return result

    def _close_time(self, family: int, port: int) -> tuple[float, str] | None:
        """When the UDP socket on ``port`` was closed, and why: midway between
        the last packet that shows it open and the first datagram it answered
        with ICMP port unreachable; None without such evidence (or times).

        The socket must have shown itself open first; a datagram received
        without an ICMP error counts as open (Linux answers every datagram
        to a closed port, rate limit aside).
        """
        timeline = self.udp_timeline.get((family, port), [])
        first = next((i for i, (_, _, what) in enumerate(timeline) if what == "unreachable"), None)
        if first is None:
            return None
        received = [i for i in range(first) if timeline[i][2] == "received"]
        if not received or received[-1] == 0:
            return None
        (alive_n, alive_time, _), (found_n, found_time, _) = timeline[received[-1] - 1], timeline[received[-1]]
        if alive_time is None or found_time is None or found_time <= alive_time:
            return None
        closed = (alive_time + found_time) / 2
        return closed, (f"closed = {closed:.6f}: open at packet {alive_n}, closed by packet {found_n}, which drew "
                        f"ICMP port unreachable (packet {timeline[first][0]}); the close time is midway")

    def _implicit_closed(self, listed: set[tuple[int, int]]) -> list[Observed]:
        """Sockets the host bound by sending from a port (no entry needed:
        the replay binds them) that were closed later: they need an entry
        for their close time."""
        result = []
        for (family, port), timeline in self.udp_timeline.items():
            if (family, port) in listed or not timeline or timeline[0][2] != "sent":
                continue
            lifetime = self._close_time(family, port)
            if lifetime is None:
                continue
            closed, why = lifetime
            obs = Observed(proto=Proto.UDP, family=family, address=bytes(4 if family == 4 else 16), port=port,
                           state=UNCONN, where=f"port {port}", closed=closed)
            obs.notes.append(f"bound by the host's first datagram from it (packet {timeline[0][0]}: an implicit "
                             f"bind); {why}")
            obs.notes.append("A host file cannot say when a socket was opened: this one exists from the start.")
            result.append(obs)
        return result

    def _listeners(self, proto: Proto, open_: dict[_Key, _Evidence], closed: dict[_Key, _Evidence],
                   state: str, what: str) -> list[Observed]:
        by_port: dict[tuple[int, int], list[tuple[bytes, _Evidence]]] = defaultdict(list)
        for (family, addr, port), ev in open_.items():
            by_port[(family, port)].append((addr, ev))
        families_of_port: dict[int, set[int]] = defaultdict(set)
        for family, _, port in list(open_) + list(closed):
            families_of_port[port].add(family)
        result = []
        for (family, port), items in sorted(by_port.items(), key=lambda kv: min(e.packets[0] for _, e in kv[1])):
            refused_here = [a for (f, a, p) in closed if f == family and p == port and a not in dict(items)]
            if refused_here:
                binds = [(addr, [ev]) for addr, ev in items]
            else:
                binds = [(bytes(4 if family == 4 else 16), [ev for _, ev in items])]
            for addr, evs in binds:
                packets = _Evidence()
                for ev in evs:
                    for n in ev.packets:
                        packets.add(n)
                packets.packets.sort()
                obs = Observed(proto=proto, family=family, address=addr, port=port, state=state,
                               where=f"port {port}")
                obs.notes.append(f"{what}: {packets.text()}")
                lifetime = self._close_time(family, port) if proto is Proto.UDP and not refused_here else None
                if lifetime is not None:
                    obs.closed = lifetime[0]
                    obs.notes.append(lifetime[1])
                if refused_here:
                    obs.notes.append("bound to the address that answered: the same port was refused on "
                                     + ", ".join(format_addr(a) for a in refused_here))
                if family == 6 and not any(addr):
                    obs.v6only = 4 in families_of_port[port]
                    if obs.v6only:
                        obs.notes.append("IPV6_V6ONLY: IPv4 packets to this port are answered otherwise "
                                         "(or by another socket)")
                result.append(obs)
        return result

    def _in_progress(self) -> list[Observed]:
        result = []
        seen: set[tuple[bytes, int, bytes, int]] = set()
        for (src, sport, dst, dport), (n, flags) in self.tcp_first.items():
            canon = (src, sport, dst, dport)
            if flags & (_SYN | _RST) or canon in seen:
                continue
            reverse = (dst, dport, src, sport)
            if reverse in self.tcp_first and self.tcp_first[reverse][0] < n:
                continue
            if canon not in self.host_spoke and reverse not in self.host_spoke:
                continue  # answered with RSTs only (or not at all): no socket
            seen.update({canon, reverse})
            for local, lport, peer, pport in ((src, sport, dst, dport), (dst, dport, src, sport)):
                if not self.is_local(local):
                    continue
                family = 4 if len(local) == 4 else 6
                obs = Observed(proto=Proto.TCP, family=family, address=local, port=lport, state=ESTAB,
                               peer=(peer, pport), where=f"packet {n}")
                obs.notes.append(f"in progress when the capture starts: packet {n} is its first and carries "
                                 "no SYN")
                result.append(obs)
        return result

    def header_lines(self) -> list[str]:
        lines = []
        refused = {k: v for k, v in self.refused.items() if k not in self.listening}
        if refused:
            lines.append("No socket (a SYN answered with a RST): " + "; ".join(
                f"tcp {format_endpoint(a, p)} ({ev.text()})" for (_, a, p), ev in sorted(refused.items())))
        both = [k for k in self.refused if k in self.listening]
        if both:
            lines.append("Both a SYN-ACK and a RST to a SYN (the listener kept; it may have started or stopped "
                         "during the capture): " + ", ".join(format_endpoint(a, p) for _, a, p in both))
        if self.udp_closed:
            lines.append("No socket (ICMP port unreachable): " + "; ".join(
                f"udp {format_endpoint(a, p)} ({ev.text()})" for (_, a, p), ev in sorted(self.udp_closed.items())))
        unanswered = {k: v for k, v in self.udp_unanswered.items()
                      if k not in self.udp_open and k not in self.udp_closed}
        if unanswered:
            lines.append("Datagrams without an answer (open or closed is unknown; left out): " + "; ".join(
                f"udp {format_endpoint(a, p)} ({ev.text()})" for (_, a, p), ev in sorted(unanswered.items())[:20]))
        if self.host_opened:
            lines.append(f"Connections the host opened ({self.host_opened} SYNs) need no socket here: the replay "
                         "follows them.")
        return lines

    def sysctls(self, loopback_host: bool) -> tuple[dict[str, object], list[str], int | None]:
        values: dict[str, object] = {}
        notes: list[str] = []
        for family, name in ((4, "net.ipv4.ip_default_ttl"), (6, "net.ipv6.conf.all.hop_limit")):
            if not self.ttl[family]:
                continue
            ttl, count = self.ttl[family].most_common(1)[0]
            total = sum(self.ttl[family].values())
            if ttl != DEFAULTS[name]:
                values[name] = ttl
                packets = _Evidence(self.ttl_packets[(family, ttl)])
                notes.append(f"{name} = {ttl}: {count} of the host's {total} IPv{family} kernel-made replies have "
                             f"it ({packets.text()}); seen hops away, the host's own value is higher.")
        mtu = None
        self.initrwnd, self.host_notes = 0, []
        if self.synacks:
            rmem, rmem_notes, mtu = self._from_synacks(loopback_host)
            if rmem is not None:
                values["net.ipv4.tcp_rmem"] = rmem
            notes += rmem_notes
        self._tcp_options(values, notes)
        if self.quick_after_reply:
            values["net.ipv4.tcp_pingpong_thresh"] = 255
            notes.append("net.ipv4.tcp_pingpong_thresh = 255: the host ACKed small segments at once after it had "
                         f"answered data with data ({_Evidence(self.quick_after_reply).text()}), where 6.18 would "
                         "be in pingpong mode and let the ACK ride on its answer; the highest threshold keeps it "
                         "out of that mode.")
        return values, notes, mtu

    def _pingpong(self, p: _Pkt, tup: tuple[bytes, int, bytes, int], flags: int, src_local: bool,
                  dst_local: bool) -> None:
        """Delayed-ACK evidence: does the host ACK small data at once after it
        answered data with data?

        On 6.18 an endpoint that sends data within the delayed-ACK timeout
        (40 ms) of receiving data counts one reply (tcp_event_data_sent);
        with net.ipv4.tcp_pingpong_thresh (1) replies it is interactive and
        delays its ACKs of small segments, so that they ride on its answers
        (__tcp_ack_snd_check).  A pure ACK of a segment shorter than 536
        bytes sent within 20 ms of it, after such a reply, shows a host that
        was not interactive: older kernels (5.1 to 6.0 needed a jiffy between
        receiving and answering, which traffic over lo never has) or a
        raised threshold.  An ACK the delayed-ACK timer sent (30 ms or more
        after the data) ends the count: tcp_delack_timer_handler leaves
        pingpong mode, so the next small segment is ACKed at once on 6.18 too.
        """
        if p.time is None:
            return
        payload = len(p.l4) - (p.l4[12] >> 4) * 4
        sender, receiver = tup, (tup[2], tup[3], tup[0], tup[1])
        if src_local:
            talk = self.talk[sender]
            if payload > 0 and talk.received is not None and p.time - talk.received < _DELACK_TIMEOUT:
                talk.replies += 1
            elif payload == 0 and flags & (_SYN | _FIN | _RST) == 0 and talk.small_data and talk.received is not None:
                waited = p.time - talk.received
                if waited < _QUICK_ACK_WITHIN and talk.replies:
                    self.quick_after_reply.append(p.n)
                elif waited >= _TIMER_ACK_AFTER:
                    talk.replies = 0  # the delayed-ACK timer fired: it leaves pingpong mode
            talk.small_data = False  # whatever the endpoint sends carries the ACK
        if dst_local and payload > 0:
            talk = self.talk[receiver]
            talk.received = p.time
            talk.small_data = payload < _SMALL_SEGMENT and not flags & _FIN

    def _tcp_options(self, values: dict[str, object], notes: list[str]) -> None:
        """tcp_timestamps, tcp_sack, tcp_window_scaling, tcp_ecn, tcp_reflect_tos from SYN-ACKs and their SYNs.

        Linux answers an option the SYN offers whenever its sysctl is on
        (tcp_openreq_init / tcp_synack_options): a SYN-ACK that leaves out an
        offered option in every case means the sysctl is 0.  An ECN setup SYN
        (ECE and CWR) is answered with ECE under tcp_ecn 1 or 2.  With
        tcp_reflect_tos the SYN-ACK carries the SYN's DSCP.
        """
        for key, name in (("ts", "net.ipv4.tcp_timestamps"), ("sack", "net.ipv4.tcp_sack"),
                          ("wscale", "net.ipv4.tcp_window_scaling")):
            offered = [(n, key in opts) for n, (_, syn_opts, _, _), opts, _, _ in self.answered if key in syn_opts]
            if offered and not any(has for _, has in offered):
                values[name] = 0
                shown = _Evidence([n for n, _ in offered]).text()
                notes.append(f"{name} = 0: the SYN offered {_OPTION_NAMES[key]} and the SYN-ACK left it out "
                             f"({shown}).")
            elif offered and not all(has for _, has in offered):
                left = _Evidence([n for n, has in offered if not has]).text()
                notes.append(f"{name} kept at its default: some SYN-ACKs answer {_OPTION_NAMES[key]}, others "
                             f"({left}) do not.")
        ecn = [(n, bool(flags & _ECE)) for n, (_, _, syn_flags, _), _, flags, _ in self.answered
               if syn_flags & (_ECE | _CWR) == _ECE | _CWR]
        if ecn and not any(has for _, has in ecn):
            values["net.ipv4.tcp_ecn"] = 0
            notes.append("net.ipv4.tcp_ecn = 0: ECN setup SYNs answered without ECE "
                         f"({_Evidence([n for n, _ in ecn]).text()}).")
        dscp = [(n, syn_tos & 0xFC, tos & 0xFC) for n, (_, _, _, syn_tos), _, _, tos in self.answered]
        if dscp and all(a == b for _, a, b in dscp) and any(a for _, a, _ in dscp):
            values["net.ipv4.tcp_reflect_tos"] = 1
            notes.append("net.ipv4.tcp_reflect_tos = 1: the SYN-ACKs carry their SYN's DSCP "
                         f"({_Evidence([n for n, _, _ in dscp]).text()}).")
        elif any(b for _, _, b in dscp):
            odd = _Evidence([n for n, a, b in dscp if b and a != b]).text()
            notes.append(f"Cannot be set: SYN-ACKs with a TOS their SYN did not carry ({odd}); the listener's "
                         "IP_TOS is not in the host-file format, or a router on the path rewrote the field.")

    def caveats(self) -> list[str]:
        """What the replies show that no host-file setting reproduces."""
        lines = []
        odd_id = {k: v for k, v in self.ip_behaviour.items() if k != ("ID 0", "DF")}
        if odd_id:
            lines.append("Cannot be set: Linux sends its RSTs and SYN-ACKs with DF and IPv4 ID 0 "
                         "(ip_select_ident_segs); these differ: " + "; ".join(
                             f"{a}, {b} ({_Evidence(ns).text()})" for (a, b), ns in sorted(odd_id.items()))
                         + ". Not a Linux host, or a middlebox rewrote them: those replies cannot match.")
        if self.odd_layout:
            lines.append("Cannot be set: SYN-ACK options not in the order Linux writes them (MSS, SACK-permitted "
                         f"and timestamps, window scale; tcp_options_write) in {_Evidence(self.odd_layout).text()}: "
                         "another stack; those SYN-ACKs cannot match.")
        odd_tos = {t: ns for t, ns in self.icmp_tos.items() if t & 0xE0 != 0xC0}
        if odd_tos:
            lines.append("Cannot be set: Linux sends ICMP errors with precedence 0xc0 in the TOS; these carry "
                         + "; ".join(f"TOS {t:#04x} ({_Evidence(ns).text()})" for t, ns in sorted(odd_tos.items()))
                         + ".")
        return lines

    def _from_synacks(self, loopback_host: bool) -> tuple[tuple[int, int, int] | None, list[str], int | None]:
        notes = []
        default = DEFAULTS["net.ipv4.tcp_rmem"]
        rmem = list(default)
        mtu = None
        first = self.synacks[0]
        n, family, window, opts = first
        scales = Counter(o.get("wscale") for _, _, _, o in self.synacks if "wscale" in o)
        if scales:
            wscale, count = scales.most_common(1)[0]
            if 2 <= wscale <= 14 and wscale != _wscale(default[2]):
                rmem[2] = 3 << (wscale + 14)
                notes.append(f"tcp_rmem[2] = {rmem[2]}: window scale {wscale} in {count} SYN-ACK(s) "
                             f"(first: packet {self._first_with('wscale', wscale)}).")
        mss = opts.get("mss")
        if mss:
            rcv_mss = mss - 12 if "ts" in opts else mss
            rmem1 = _default_rmem1()
            if _window(rmem1, rcv_mss) != window and window < 0xFFFF:
                initrwnd = window // rcv_mss
                # a SYN-ACK over lo on a host on another device: [host] initrwnd is not lo's
                over_device = loopback_host or n not in self.looped_synacks
                if over_device and window % rcv_mss == 0 and _window(rmem1, rcv_mss, initrwnd) == window:
                    self.initrwnd = initrwnd
                    self.host_notes.append(self._initrwnd_note(initrwnd, rmem1))
                else:
                    candidate = 2 * window
                    if _window(candidate, rcv_mss) == window:
                        rmem[1] = candidate
                        notes.append(f"tcp_rmem[1] = {candidate}: SYN-ACK window {window} (packet {n}) is half of "
                                     f"it{' rounded to the MSS' if window >= rcv_mss else ''}.")
            headers = 40 if family == 4 else 60
            if not loopback_host and mss + headers != 1500:
                mtu = mss + headers
                self.host_notes.append(f"MTU {mtu} ([host] mtu): the SYN-ACK in packet {n} announces MSS {mss}.")
        rmem_t = tuple(rmem)
        return (rmem_t if rmem_t != tuple(default) else None), notes, mtu

    def _initrwnd_note(self, initrwnd: int, rmem1: int) -> str:
        """The evidence for ``[host] initrwnd``: the first SYN-ACK's window
        in segments, and how many SYN-ACKs the value explains."""
        n, _, window, opts = self.synacks[0]
        rcv_mss = opts["mss"] - 12 if "ts" in opts else opts["mss"]
        segment = f"{rcv_mss} (MSS {opts['mss']} less 12 for timestamps)" if "ts" in opts else f"MSS {rcv_mss}"
        sized = [(w, o) for _, _, w, o in self.synacks if o.get("mss")]
        agree = sum(1 for w, o in sized
                    if w == min(_window(rmem1, o["mss"] - 12 if "ts" in o else o["mss"], initrwnd), 0xFFFF))
        return (f"initrwnd = {initrwnd}: SYN-ACK window {window} (packet {n}) is {initrwnd} x {segment}, the "
                f"initial window of a route with initrwnd {initrwnd} (ip route ... initrwnd {initrwnd}; kernels "
                f"before 4.19 capped it so by default), below the {_window(rmem1, rcv_mss)} of tcp_rmem[1] = "
                f"{rmem1}, which is kept so that the window grows as Linux's does; {agree} of {len(sized)} "
                "SYN-ACK(s) agree.")

    def _first_with(self, key: str, value: int) -> int:
        return next(n for n, _, _, o in self.synacks if o.get(key) == value)


def _wscale(rmem_max: int) -> int:
    largest = max(rmem_max, DEFAULTS["net.core.rmem_max"])
    return min(max(largest.bit_length() - 1 - 15, 0), 14)


def _default_rmem1() -> int:
    """6.18's default tcp_rmem[1]."""
    value = DEFAULTS["net.ipv4.tcp_rmem"]
    return value[1] if isinstance(value, tuple) else value


def _window(rmem1: int, rcv_mss: int, initrwnd: int = 0) -> int:
    """The SYN-ACK window tcp_rmem[1] and the route's initrwnd give
    (pktdemux.tcp_listen.initial_window)."""
    space = rmem1 // 2
    if space > rcv_mss > 0:
        space -= space % rcv_mss
    if initrwnd:
        space = min(space, initrwnd * rcv_mss)
    return min(space, 0xFFFF)
