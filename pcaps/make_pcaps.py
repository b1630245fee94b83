#!/usr/bin/env python3
"""Build the synthetic captures of pktdemux, byte for byte reproducibly.

Usage::

    python pcaps/make_pcaps.py                       # rebuild the shipped synthetic captures
    python pcaps/make_pcaps.py mixed OUT.pcap        # mixed traffic for pcaps/bench.toml
    python pcaps/make_pcaps.py mixed OUT.pcap -n 50000 --seed 7

Shipped synthetic captures (written next to this script):

``linux618_vectors.pcap``
    The single-packet vectors recorded from a Linux 6.18.44 kernel in a
    private network namespace (../shared/kernel-probes/p20_vectors.json):
    each injected packet, then the kernel's replies, as LINKTYPE_RAW records
    one second apart.  The host is pcaps/linux618_vectors.toml.  Rebuilt only
    when that JSON file is present.

The mixed capture (``mixed``) is never committed: it is built on demand (the
benchmark does it in a temporary directory).  Every packet is crafted once as
a template with Scapy, with explicit addresses, ports, TTLs, IP IDs and
sequence numbers; the N packets are then instances of those templates whose
client address, client port and sequence numbers are patched in the bytes and
whose checksums are recomputed, so that 200,000 packets take seconds, not
minutes.  Timestamps start at a fixed epoch and advance by pseudo-random
steps drawn from ``--seed``: the same arguments give the same file.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pktdemux.wire import checksum, pseudo_header_sum  # noqa: E402

#: Where the recorded kernel vectors live when the shared tree is present.
VECTORS_JSON = HERE.parent.parent / "shared" / "kernel-probes" / "p20_vectors.json"

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

#: First timestamp of every synthetic capture: 2026-01-01T00:00:00Z.
EPOCH = 1767225600

# The host of pcaps/bench.toml and its neighbours.
HOST_MAC = bytes.fromhex("020000000001")
GATEWAY_MAC = bytes.fromhex("020000000fe0")
LAN_MAC_PREFIX = bytes.fromhex("0200000a")
BROADCAST_MAC = b"\xff" * 6
HOST4 = "10.0.0.1"
HOST6 = "fd00::1"


# --------------------------------------------------------------------------
# pcap writing


def pcap_header(linktype: int, snaplen: int = 262144) -> bytes:
    """A little-endian microsecond pcap file header (version 2.4)."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts_us: int, frame: bytes) -> bytes:
    """One pcap record: timestamp in microseconds since the epoch, whole frame."""
    sec, usec = divmod(ts_us, 1_000_000)
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame


def write_pcap(path: pathlib.Path, linktype: int, records: Iterable[tuple[int, bytes]]) -> int:
    """Write ``records`` (timestamp in µs, frame) to ``path``; returns the count."""
    count = 0
    with open(path, "wb") as out:
        out.write(pcap_header(linktype))
        buf = []
        for ts_us, frame in records:
            buf.append(pcap_record(ts_us, frame))
            count += 1
            if len(buf) >= 4096:
                out.write(b"".join(buf))
                buf.clear()
        out.write(b"".join(buf))
    return count


# --------------------------------------------------------------------------
# The recorded Linux 6.18 vectors


def build_vectors(out: pathlib.Path, vectors_json: pathlib.Path = VECTORS_JSON) -> int:
    """Write the recorded kernel vectors as a LINKTYPE_RAW capture.

    Each vector gets its own second: the injected packet at ``EPOCH + i`` s,
    the kernel's replies 100 µs apart after it.  Where the recording probe
    reset a half-open connection after its SYN-ACK, that RST is included
    too (it is what the kernel received), so the capture is the full exchange.
    """
    vectors = json.loads(vectors_json.read_text())
    records: list[tuple[int, bytes]] = []
    for i, vec in enumerate(vectors):
        t = (EPOCH + i) * 1_000_000
        incoming = bytes.fromhex(vec["incoming_hex"])
        records.append((t, incoming))
        for j, reply in enumerate(vec["replies"]):
            raw = bytes.fromhex(reply["hex"])
            records.append((t + 100 * (j + 1), raw))
            reset = _probe_reset(incoming, raw)
            if reset is not None:
                records.append((t + 100 * (j + 1) + 50, reset))
    return write_pcap(out, LINKTYPE_RAW, records)


def _probe_reset(incoming: bytes, reply: bytes) -> bytes | None:
    """The RST the recording probe sent after a SYN-ACK (seq = SYN seq + 1)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    version = reply[0] >> 4
    pkt = IP(reply) if version == 4 else IPv6(reply)
    if TCP not in pkt or not (pkt[TCP].flags.S and pkt[TCP].flags.A):
        return None
    syn = IP(incoming) if version == 4 else IPv6(incoming)
    l3 = IP if version == 4 else IPv6
    rst = l3(src=pkt.dst, dst=pkt.src) / TCP(
        sport=pkt[TCP].dport, dport=pkt[TCP].sport, flags="R", seq=syn[TCP].seq + 1, window=8192)
    if version == 4:
        rst[IP].id = 1
        rst[IP].ttl = 64
    return bytes(rst)


# --------------------------------------------------------------------------
# Templates for the mixed capture


@dataclass(frozen=True, slots=True)
class Pkt:
    """One packet of a flow template.

    Attributes:
        frame: the Ethernet frame built by Scapy, with the template's client
            address and port.
        from_client: True when the client sent it (client fields are the
            source), False when the host (or the other end) sent it.
        icmp_quote_of: for an ICMP error, the index in the flow of the packet
            it quotes (re-quoted after patching), else -1.
    """

    frame: bytes
    from_client: bool
    icmp_quote_of: int = -1


@dataclass(frozen=True, slots=True)
class Flow:
    """A template flow: packets in order, the client's family, and whether
    the client address and port are patched per instance."""

    name: str
    family: int
    packets: tuple[Pkt, ...]
    patch: bool = True


CLIENT4 = "10.0.0.100"
CLIENT6 = "fd00::100"
CLIENT_PORT = 40000
C_ISN = 1_000_000
S_ISN = 3_000_000_000


def _eth(dst: bytes, src: bytes, ethertype: int) -> bytes:
    return dst + src + struct.pack("!H", ethertype)


def _frame(pkt, to_host: bool, family: int, dst_mac: bytes | None = None) -> bytes:  # type: ignore[no-untyped-def]
    ethertype = 0x0800 if family == 4 else 0x86DD
    if dst_mac is None:
        dst_mac = HOST_MAC if to_host else GATEWAY_MAC
    src_mac = GATEWAY_MAC if to_host else HOST_MAC
    return _eth(dst_mac, src_mac, ethertype) + bytes(pkt)


def make_templates() -> list[tuple[Flow, int]]:
    """The flow templates of the mixed capture, each with its weight."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, Ether

    def ip(family: int, src: str, dst: str, *, ttl: int = 64, ident: int = 0, df: bool = True, tos: int = 0):  # type: ignore[no-untyped-def]
        if family == 4:
            return IP(src=src, dst=dst, ttl=ttl, id=ident, flags="DF" if df else 0, tos=tos)
        return IPv6(src=src, dst=dst, hlim=ttl, fl=0, tc=tos)

    syn_opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1000, 0)), ("NOP", None), ("WScale", 7)]

    def tcp_flow(name: str, family: int, port: int, request: bytes, response: bytes) -> Flow:
        c, h = (CLIENT4, HOST4) if family == 4 else (CLIENT6, HOST6)
        mss = 1460 if family == 4 else 1440
        win_syn = 65160 if family == 4 else 64260
        ts = lambda a, b: [("NOP", None), ("NOP", None), ("Timestamp", (a, b))]  # noqa: E731
        cseq, sseq = C_ISN, S_ISN
        pk = []
        pk.append(Pkt(_frame(ip(family, c, h, ident=0x1000) / TCP(
            sport=CLIENT_PORT, dport=port, flags="S", seq=cseq, window=64240, options=syn_opts), True, family), True))
        pk.append(Pkt(_frame(ip(family, h, c) / TCP(
            sport=port, dport=CLIENT_PORT, flags="SA", seq=sseq, ack=cseq + 1, window=win_syn,
            options=[("MSS", mss), ("SAckOK", b""), ("Timestamp", (7000, 1000)), ("NOP", None), ("WScale", 10)]),
            False, family), False))
        pk.append(Pkt(_frame(ip(family, c, h, ident=0x1001) / TCP(
            sport=CLIENT_PORT, dport=port, flags="A", seq=cseq + 1, ack=sseq + 1, window=502,
            options=ts(1001, 7000)), True, family), True))
        pk.append(Pkt(_frame(ip(family, c, h, ident=0x1002) / TCP(
            sport=CLIENT_PORT, dport=port, flags="PA", seq=cseq + 1, ack=sseq + 1, window=502,
            options=ts(1001, 7000)) / request, True, family), True))
        pk.append(Pkt(_frame(ip(family, h, c, ident=0x2000) / TCP(
            sport=port, dport=CLIENT_PORT, flags="A", seq=sseq + 1, ack=cseq + 1 + len(request), window=509,
            options=ts(7001, 1001)), False, family), False))
        pk.append(Pkt(_frame(ip(family, h, c, ident=0x2001) / TCP(
            sport=port, dport=CLIENT_PORT, flags="PA", seq=sseq + 1, ack=cseq + 1 + len(request), window=509,
            options=ts(7002, 1001)) / response, False, family), False))
        cnext, snext = cseq + 1 + len(request), sseq + 1 + len(response)
        pk.append(Pkt(_frame(ip(family, c, h, ident=0x1003) / TCP(
            sport=CLIENT_PORT, dport=port, flags="A", seq=cnext, ack=snext, window=501,
            options=ts(1002, 7002)), True, family), True))
        pk.append(Pkt(_frame(ip(family, c, h, ident=0x1004) / TCP(
            sport=CLIENT_PORT, dport=port, flags="FA", seq=cnext, ack=snext, window=501,
            options=ts(1003, 7002)), True, family), True))
        pk.append(Pkt(_frame(ip(family, h, c, ident=0x2002) / TCP(
            sport=port, dport=CLIENT_PORT, flags="FA", seq=snext, ack=cnext + 1, window=509,
            options=ts(7003, 1003)), False, family), False))
        pk.append(Pkt(_frame(ip(family, c, h, ident=0x1005) / TCP(
            sport=CLIENT_PORT, dport=port, flags="A", seq=cnext + 1, ack=snext + 1, window=501,
            options=ts(1004, 7003)), True, family), True))
        return Flow(name, family, tuple(pk))

    def refused(family: int, port: int) -> Flow:
        c, h = (CLIENT4, HOST4) if family == 4 else (CLIENT6, HOST6)
        syn = _frame(ip(family, c, h, ident=0x1000) / TCP(
            sport=CLIENT_PORT, dport=port, flags="S", seq=C_ISN, window=64240, options=syn_opts), True, family)
        rst = _frame(ip(family, h, c) / TCP(
            sport=port, dport=CLIENT_PORT, flags="RA", seq=0, ack=C_ISN + 1, window=0), False, family)
        return Flow(f"tcp{family} refused :{port}", family, (Pkt(syn, True), Pkt(rst, False)))

    def dns(family: int) -> Flow:
        c, h = (CLIENT4, HOST4) if family == 4 else (CLIENT6, HOST6)
        query = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")
        answer = bytes.fromhex("123481800001000100000000076578616d706c6503636f6d0000010001"
                               "c00c000100010000012c00045db8d822")
        q = _frame(ip(family, c, h, ident=0x3000, df=False) / UDP(sport=CLIENT_PORT, dport=53) / query, True, family)
        a = _frame(ip(family, h, c, ident=0x4000) / UDP(sport=53, dport=CLIENT_PORT) / answer, False, family)
        return Flow(f"udp{family} dns", family, (Pkt(q, True), Pkt(a, False)))

    def udp_closed(family: int, port: int) -> Flow:
        c, h = (CLIENT4, HOST4) if family == 4 else (CLIENT6, HOST6)
        dgram = ip(family, c, h, ident=0x3001, df=False) / UDP(sport=CLIENT_PORT, dport=port) / b"probe-0123456789"
        d = _frame(dgram, True, family)
        if family == 4:
            err = IP(src=h, dst=c, ttl=64, id=0x5000, flags=0, tos=0xC0) / ICMP(type=3, code=3) / bytes(dgram)
        else:
            err = IPv6(src=h, dst=c, hlim=64, fl=0) / ICMPv6DestUnreach(code=4) / bytes(dgram)
        return Flow(f"udp{family} closed :{port}", family, (Pkt(d, True), Pkt(_frame(err, False, family), False, 0)))

    def ping(family: int) -> Flow:
        c, h = (CLIENT4, HOST4) if family == 4 else (CLIENT6, HOST6)
        data = bytes(range(48))
        if family == 4:
            req = IP(src=c, dst=h, ttl=64, id=0x6000, flags="DF") / ICMP(type=8, id=0x77, seq=1) / data
            rep = IP(src=h, dst=c, ttl=64, id=0x7000, flags=0) / ICMP(type=0, id=0x77, seq=1) / data
        else:
            req = IPv6(src=c, dst=h, hlim=64, fl=0) / ICMPv6EchoRequest(id=0x77, seq=1, data=data)
            rep = IPv6(src=h, dst=c, hlim=64, fl=0) / ICMPv6EchoReply(id=0x77, seq=1, data=data)
        return Flow(f"icmp{family} echo", family, (Pkt(_frame(req, True, family), True), Pkt(_frame(rep, False, family), False)))

    def broadcast(dst: str, port: int) -> Flow:
        dgram = IP(src=CLIENT4, dst=dst, ttl=64, id=0x3100, flags=0) / UDP(sport=68 if port == 67 else 137, dport=port) / (b"\x01" * 40)
        return Flow(f"udp4 broadcast {dst}:{port}", 4, (Pkt(_frame(dgram, True, 4, dst_mac=BROADCAST_MAC), True),))

    def other_hosts() -> Flow:
        seg = IP(src="10.0.0.7", dst="10.0.0.9", ttl=64, id=0x0707, flags="DF") / TCP(
            sport=5432, dport=51000, flags="PA", seq=77777, ack=88888, window=501) / (b"row" * 30)
        frame = _eth(LAN_MAC_PREFIX + b"\x00\x09", LAN_MAC_PREFIX + b"\x00\x07", 0x0800) + bytes(seg)
        mdns = IPv6(src="fe80::7", dst="ff02::fb", hlim=255, fl=0) / UDP(sport=5353, dport=5353) / (b"\x00" * 30)
        mframe = _eth(bytes.fromhex("3333000000fb"), LAN_MAC_PREFIX + b"\x00\x07", 0x86DD) + bytes(mdns)
        return Flow("other hosts", 4, (Pkt(frame, True), Pkt(mframe, True)), patch=False)

    def arp() -> Flow:
        a = Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:0a:00:07") / ARP(
            op=1, hwsrc="02:00:00:0a:00:07", psrc="10.0.0.7", pdst=HOST4)
        return Flow("arp", 4, (Pkt(bytes(a), True),), patch=False)

    get = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    return [
        (refused(4, 81), 8), (refused(4, 8080), 4), (refused(6, 81), 4),
        (tcp_flow("tcp4 http", 4, 80, get, ok), 25), (tcp_flow("tcp6 https", 6, 443, get, ok), 10),
        (tcp_flow("tcp4 https", 4, 443, get, ok), 5),
        (dns(4), 12), (dns(6), 5),
        (udp_closed(4, 9999), 2), (udp_closed(6, 9999), 2),
        (ping(4), 5), (ping(6), 3),
        (broadcast("10.0.0.255", 67), 2), (broadcast("255.255.255.255", 67), 1), (broadcast("10.0.0.255", 137), 2),
        (other_hosts(), 4), (arp(), 1),
    ]


# --------------------------------------------------------------------------
# Instances: patch client address and port, recompute checksums


def _client_addr(family: int, n: int) -> bytes:
    """The n-th client address: LAN neighbours first, then a large external
    range (198.18.0.0/15, 2001:db8::/32) so that per-source ICMP limits rarely bite."""
    if family == 4:
        if n % 4 == 0:
            return bytes((10, 0, 0, 2 + (n // 4) % 250))
        k = n % 131072
        return bytes((198, 18 + (k >> 16), (k >> 8) & 0xFF, k & 0xFF))
    if n % 4 == 0:
        return bytes.fromhex("fd00000000000000") + (0x1000 + n % 4096).to_bytes(8, "big")
    return bytes.fromhex("20010db8") + bytes(4) + n.to_bytes(8, "big")


def _fix_checksums(buf: bytearray, l3: int) -> None:
    """Recompute the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum in place."""
    version = buf[l3] >> 4
    if version == 4:
        ihl = (buf[l3] & 0x0F) * 4
        buf[l3 + 10:l3 + 12] = b"\0\0"
        buf[l3 + 10:l3 + 12] = checksum(bytes(buf[l3:l3 + ihl])).to_bytes(2, "big")
        total = int.from_bytes(buf[l3 + 2:l3 + 4], "big")
        proto = buf[l3 + 9]
        l4 = l3 + ihl
        src, dst = bytes(buf[l3 + 12:l3 + 16]), bytes(buf[l3 + 16:l3 + 20])
        end = l3 + total
    else:
        proto = buf[l3 + 6]
        l4 = l3 + 40
        src, dst = bytes(buf[l3 + 8:l3 + 24]), bytes(buf[l3 + 24:l3 + 40])
        end = l4 + int.from_bytes(buf[l3 + 4:l3 + 6], "big")
    offset = {6: 16, 17: 6, 1: 2, 58: 2}.get(proto)
    if offset is None:
        return
    buf[l4 + offset:l4 + offset + 2] = b"\0\0"
    segment = bytes(buf[l4:end])
    if proto == 1:
        value = checksum(segment)
    else:
        value = checksum(segment, pseudo_header_sum(src, dst, proto, len(segment)))
        if proto == 17 and value == 0:
            value = 0xFFFF
    buf[l4 + offset:l4 + offset + 2] = value.to_bytes(2, "big")


class _Compiled:
    """A template flow with the byte offsets of its client fields precomputed."""

    __slots__ = ("flow", "parts")

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.parts = []
        for pkt in flow.packets:
            frame = pkt.frame
            ethertype = int.from_bytes(frame[12:14], "big")
            l3 = 14
            port_off = None
            if ethertype == 0x0800:
                addr = (l3 + 12, 4) if pkt.from_client else (l3 + 16, 4)
                l4 = l3 + (frame[l3] & 0x0F) * 4
                proto = frame[l3 + 9]
            elif ethertype == 0x86DD:
                addr = (l3 + 8, 16) if pkt.from_client else (l3 + 24, 16)
                l4 = l3 + 40
                proto = frame[l3 + 6]
            else:
                addr, l4, proto = None, 0, 0
            if pkt.icmp_quote_of >= 0:
                port_off = None
            elif proto in (6, 17):
                # the client's port: source port of its packets, destination of the replies
                port_off = l4 if pkt.from_client else l4 + 2
            elif proto in (1, 58):
                port_off = l4 + 4  # echo identifier, in both directions
            self.parts.append((pkt, addr, l4, port_off))

    def instance(self, n: int) -> list[bytes]:
        """The flow's frames for client number ``n``."""
        flow = self.flow
        if not flow.patch:
            return [p.frame for p in flow.packets]
        client = _client_addr(flow.family, n)
        port = 32768 + (n * 7919) % 28000
        frames: list[bytes] = []
        for pkt, addr, l4, port_off in self.parts:
            buf = bytearray(pkt.frame)
            if addr is None:
                frames.append(pkt.frame)
                continue
            off, size = addr
            buf[off:off + size] = client
            if port_off is not None:
                buf[port_off:port_off + 2] = port.to_bytes(2, "big")
            if pkt.icmp_quote_of >= 0:
                quoted = frames[pkt.icmp_quote_of][14:]
                head = bytes(buf[:l4 + 8])
                buf = bytearray(head + quoted)
                _set_ip_length(buf, 14, len(buf) - 14)
            _fix_checksums(buf, 14)
            frames.append(bytes(buf))
        return frames


def _set_ip_length(buf: bytearray, l3: int, length: int) -> None:
    if buf[l3] >> 4 == 4:
        buf[l3 + 2:l3 + 4] = length.to_bytes(2, "big")
    else:
        buf[l3 + 4:l3 + 6] = (length - 40).to_bytes(2, "big")


def mixed_records(count: int, seed: int = 0) -> Iterator[tuple[int, bytes]]:
    """``count`` frames of mixed traffic for pcaps/bench.toml, with timestamps in µs.

    Up to eight flows run at once; each step advances one of them by one
    packet, so flows interleave as on a busy link.  Time advances by 0.2 to
    1.8 ms per packet (1,000 packets/s on average), so that 200,000 packets
    span 200 s: longer than TIME_WAIT (60 s) and the other kernel timers, as
    a long capture would.
    """
    rng = random.Random(seed)
    templates = [(_Compiled(flow), weight) for flow, weight in make_templates()]
    compiled = [c for c, _ in templates]
    weights = [w for _, w in templates]
    active: list[list[bytes]] = []
    t = EPOCH * 1_000_000
    emitted = 0
    n = 0
    while emitted < count:
        while len(active) < 8:
            flow = rng.choices(compiled, weights)[0]
            active.append(flow.instance(n))
            n += 1
        i = rng.randrange(len(active))
        frames = active[i]
        frame = frames.pop(0)
        if not frames:
            active[i] = active[-1]
            active.pop()
        t += rng.randint(200, 1800)
        yield t, frame
        emitted += 1


def build_mixed(out: pathlib.Path, count: int = 200_000, seed: int = 0) -> int:
    """Write the mixed-traffic capture for pcaps/bench.toml; returns the packet count."""
    return write_pcap(out, LINKTYPE_ETHERNET, mixed_records(count, seed))


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    mixed = sub.add_parser("mixed", help="mixed traffic against pcaps/bench.toml")
    mixed.add_argument("out", type=pathlib.Path)
    mixed.add_argument("-n", "--count", type=int, default=200_000)
    mixed.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "mixed":
        n = build_mixed(args.out, args.count, args.seed)
        print(f"{args.out}: {n} packets, {args.out.stat().st_size} bytes")
        return 0
    if VECTORS_JSON.exists():
        out = HERE / "linux618_vectors.pcap"
        n = build_vectors(out)
        print(f"{out}: {n} packets")
    else:
        print(f"{VECTORS_JSON} not found: linux618_vectors.pcap kept as it is", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
