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
  answered with ICMP port unreachable was closed.
* Connections in progress when the capture starts (their first packet is
  not a SYN, nor a RST, and the host sent something other than a RST in
  them) become ESTABLISHED sockets.  Connections the host
  opens itself, and datagrams it sends first, need no socket: the replay
  follows them (a SYN is a connect(), a datagram from an unbound port an
  implicit bind).
* Sysctls the replies reveal, each with its evidence: the TTL or hop limit
  of the host's kernel-made replies (net.ipv4.ip_default_ttl,
  net.ipv6.conf.all.hop_limit), the SYN-ACK window scale (tcp_rmem[2]) and
  window (tcp_rmem[1]), and the SYN-ACK MSS (the device MTU).  A TTL is as
  captured: seen hops away, it is lower than the host's setting, and the
  proposed value is the one that makes the replies compare.

Without ``addresses`` the busiest responder is taken: the address that sent
the most kernel-made replies (SYN-ACK, RST, ICMP errors, echo replies), else
the address seen in the most packets.  A loopback responder makes a host on
``lo``.
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
_V6_SKIPPED_HEADERS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_V6_FRAGMENT = 44
#: ICMP / ICMPv6 types a kernel sends on its own.
_ICMP_REPLIES = {4: frozenset({0, 3, 14}), 6: frozenset({1, 4, 129})}
_PORT_UNREACH = {4: (3, 3), 6: (1, 4)}  # (type, code)
#: Evidence packet numbers listed per item before "...".
MAX_LISTED = 5


class RecordLike(Protocol):
    """What inference reads from a capture record."""

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
    local = {a.ip.packed for a in given}
    loopback_host = bool(given) and all(a.ip.is_loopback for a in given)

    def is_local(addr: bytes) -> bool:
        return addr in local or (loopback_host and ipaddress.ip_address(addr).is_loopback)

    evidence = _Collector(is_local)
    for p in packets:
        evidence.add(p)
    header += evidence.header_lines()
    sysctl, sysctl_notes, mtu = evidence.sysctls(loopback_host)
    host_addresses = [] if loopback_host else given
    return build_host(evidence.sockets(), source=header[0], addresses=host_addresses,
                      interface="lo" if loopback_host else None, mtu=mtu,
                      sysctl=sysctl, sysctl_notes=sysctl_notes, header=header[1:])


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
        return _Pkt(record.n, 4, ip[12:16], ip[16:20], ip[8], ip[9], ip[ihl:end])
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
        return _Pkt(record.n, 6, ip[8:24], ip[24:40], ip[7], nxt, ip[offset:end])
    return None


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
        elif kind == 8 and len(body) == 8:
            opts["ts"] = 1
        i += size
    return opts


def _is_kernel_reply(p: _Pkt) -> bool:
    if p.proto == 6:
        seg = _tcp(p)
        return seg is not None and (seg[2] & (_SYN | _ACK) == _SYN | _ACK or bool(seg[2] & _RST))
    if (p.family, p.proto) in ((4, 1), (6, 58)) and p.l4:
        return p.l4[0] in _ICMP_REPLIES[p.family]
    return False


def _busiest_responder(packets: list[_Pkt]) -> tuple[Address | None, str]:
    replies = Counter(p.src for p in packets if _is_kernel_reply(p))
    if replies:
        addr, count = replies.most_common(1)[0]
        why = (f"Host: {format_addr(addr)}, the capture's busiest responder ({count} kernel-made replies: "
               "SYN-ACKs, RSTs, ICMP errors, echo replies); pass --address to choose another.")
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


# -- evidence ------------------------------------------------------------------------------

_Key = tuple[int, bytes, int]  # family, address, port


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
        self.ttl: dict[int, Counter[int]] = {4: Counter(), 6: Counter()}
        self.ttl_packets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.synacks: list[tuple[int, int, int, dict[str, int]]] = []  # n, family, window, options
        self.host_opened = 0
        #: connections in which the host sent something other than a RST: it had a socket
        self.host_spoke: set[tuple[bytes, int, bytes, int]] = set()

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
            if src_local and not dst_local:
                self.host_opened += 1
            return
        if not src_local:
            return
        syn_seq = self.syns.get(rev)
        key = (p.family, p.src, sport)
        if flags & (_SYN | _ACK) == _SYN | _ACK:
            self.listening[key].add(p.n)
            self.synacks.append((p.n, p.family, window, opts))
        elif flags & _RST and syn_seq is not None and ack == (syn_seq + 1) & 0xFFFFFFFF:
            self.refused[key].add(p.n)

    def _udp(self, p: _Pkt, src_local: bool, dst_local: bool) -> None:
        sport, dport = struct.unpack_from("!HH", p.l4)
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
            self.udp_closed[(p.family, quoted.dst, struct.unpack_from("!H", udp, 2)[0])].add(p.n)

    # results
    def sockets(self) -> list[Observed]:
        result: list[Observed] = []
        result += self._listeners(Proto.TCP, self.listening, self.refused, LISTEN, "answered a SYN with a SYN-ACK")
        result += self._listeners(Proto.UDP, self.udp_open, self.udp_closed, UNCONN, "answered datagrams")
        result += self._in_progress()
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
        if self.synacks:
            rmem, rmem_notes, mtu = self._from_synacks(loopback_host)
            if rmem is not None:
                values["net.ipv4.tcp_rmem"] = rmem
            notes += rmem_notes
        return values, notes, mtu

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
            if _window(default[1], rcv_mss) != window and window < 0xFFFF:
                candidate = 2 * window
                if _window(candidate, rcv_mss) == window:
                    rmem[1] = candidate
                    notes.append(f"tcp_rmem[1] = {candidate}: SYN-ACK window {window} (packet {n}) is half of it"
                                 f"{' rounded to the MSS' if window >= rcv_mss else ''}.")
            headers = 40 if family == 4 else 60
            if not loopback_host and mss + headers != 1500:
                mtu = mss + headers
                notes.append(f"MTU {mtu} ([host] mtu): the SYN-ACK in packet {n} announces MSS {mss}.")
        rmem_t = tuple(rmem)
        return (rmem_t if rmem_t != tuple(default) else None), notes, mtu

    def _first_with(self, key: str, value: int) -> int:
        return next(n for n, _, _, o in self.synacks if o.get(key) == value)


def _wscale(rmem_max: int) -> int:
    largest = max(rmem_max, DEFAULTS["net.core.rmem_max"])
    return min(max(largest.bit_length() - 1 - 15, 0), 14)


def _window(rmem1: int, rcv_mss: int) -> int:
    """The SYN-ACK window tcp_rmem[1] gives (pktdemux.tcp_listen.initial_window)."""
    space = rmem1 // 2
    if space > rcv_mss > 0:
        space -= space % rcv_mss
    return min(space, 0xFFFF)
