"""Replays of the shipped captures against their host files (pcaps/*.toml).

Each test states what the capture shows -- which packets reach a socket,
which get a RST or an ICMP error, and whether the host's own replies are
reproduced -- from the facts recorded in the host file's comment.  Where
the host was Linux (possibly with sysctls set to match an older kernel) its
kernel-generated replies must be matched; where it was not, the emulated
reply must differ from the captured one exactly where the other stack
differs.

Packet numbers are 1-based positions in the capture, as Wireshark shows them.
"""

from __future__ import annotations

import csv
import pathlib
import struct
from collections import defaultdict
from functools import cache

import pytest

from pktdemux.dropreason import DropReason
from pktdemux.matching import mask_random_fields

PCAPS = pathlib.Path(__file__).resolve().parent.parent / "pcaps"

# --------------------------------------------------------------------------
# helpers


@cache
def replay_capture(capture: str, host: str | None = None, seed: int = 0):  # type: ignore[no-untyped-def]
    """(results, totals) of replaying ``pcaps/capture`` with its host file."""
    from pktdemux.capture import read_capture
    from pktdemux.hostfile import build_kernel, load_host
    from pktdemux.replay import Replay

    stem = host or capture.rsplit(".", 1)[0]
    kernel = build_kernel(load_host(PCAPS / f"{stem}.toml"), seed=seed)
    replay = Replay(kernel)
    results = list(replay.run(read_capture(PCAPS / capture)))
    return results, replay.totals


def ip_datagram(ip: bytes) -> bytes:
    """The IP packet trimmed to its own length (link padding removed)."""
    if ip[0] >> 4 == 4:
        return ip[: struct.unpack_from("!H", ip, 2)[0]]
    return ip[: 40 + struct.unpack_from("!H", ip, 4)[0]]


def l4_offset(ip: bytes) -> int:
    return (ip[0] & 0x0F) * 4 if ip[0] >> 4 == 4 else 40


def proto(ip: bytes) -> int:
    return ip[9] if ip[0] >> 4 == 4 else ip[6]


def tcp_flags(ip: bytes) -> str:
    """TCP flags as tcpdump-like letters, e.g. "SA", "RA", "R"."""
    if proto(ip) != 6:
        return ""
    bits = ip[l4_offset(ip) + 13]
    return "".join(ch for bit, ch in ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"))
                   if bits & bit)


def tcp_field(ip: bytes, name: str) -> int:
    off = l4_offset(ip)
    fmt, pos = {"sport": ("!H", 0), "dport": ("!H", 2), "seq": ("!I", 4), "ack": ("!I", 8),
                "window": ("!H", 14)}[name]
    return struct.unpack_from(fmt, ip, off + pos)[0]


def tcp_options(ip: bytes) -> bytes:
    off = l4_offset(ip)
    return ip[off + 20: off + (ip[off + 12] >> 4) * 4]


def icmp_type_code(ip: bytes) -> tuple[int, int]:
    off = l4_offset(ip)
    return ip[off], ip[off + 1]


def masked_equal(a: bytes, b: bytes) -> bool:
    return mask_random_fields(ip_datagram(a)) == mask_random_fields(ip_datagram(b))


def differing_bytes(emulated: bytes, captured: bytes) -> set[int]:
    """Offsets where the two packets differ once the random fields are masked."""
    a = mask_random_fields(ip_datagram(emulated))
    b = mask_random_fields(ip_datagram(captured))
    assert len(a) == len(b), f"lengths differ: {len(a)} != {len(b)}"
    return {i for i in range(len(a)) if a[i] != b[i]}


def by_n(results):  # type: ignore[no-untyped-def]
    return {r.n: r for r in results}


def only_reply(result) -> bytes:  # type: ignore[no-untyped-def]
    assert result.verdict is not None, f"packet {result.n} ({result.direction}) has no verdict"
    assert len(result.replies) == 1, f"packet {result.n}: {len(result.replies)} replies, {result.verdict}"
    return result.replies[0]


def host_kernel_packets(results, flags: str):  # type: ignore[no-untyped-def]
    """The host's own TCP packets with exactly these flags."""
    return [r for r in results if r.direction == "out" and r.ip and tcp_flags(ip_datagram(r.ip)) == flags]


# --------------------------------------------------------------------------
# every host file


HOST_FILES = sorted(p.name for p in PCAPS.glob("*.toml"))


@pytest.mark.parametrize("name", HOST_FILES)
def test_host_file_builds_a_kernel(name: str) -> None:
    """Every host file in pcaps/ loads and gives a kernel with its addresses."""
    import tomllib

    from pktdemux.hostfile import build_kernel, load_host

    data = tomllib.loads((PCAPS / name).read_text())
    kernel = build_kernel(load_host(PCAPS / name))
    addresses = {str(a.ip) for iface in kernel.interfaces for a in iface.addresses}
    for text in data["host"]["addresses"]:
        assert text.split("/")[0] in addresses
    assert len(kernel.sockets) >= len(data.get("sockets", []))


def test_every_host_file_is_named_in_sources() -> None:
    """SOURCES.tsv names the host file of each capture that has one, and each exists."""
    rows = list(csv.DictReader((PCAPS / "SOURCES.tsv").open(), delimiter="\t"))
    named = {r["host_file"] for r in rows if r["host_file"]}
    for name in named:
        assert (PCAPS / name).is_file(), name
    stems = {p.stem for p in PCAPS.glob("*.toml")} - {"bench"}
    assert {n.removesuffix(".toml") for n in named} == stems


# --------------------------------------------------------------------------
# Linux 6.18 itself: the recorded vectors


def test_linux618_vectors_every_reply_reproduced() -> None:
    """Each vector is one second of the capture: the packets the kernel
    received, then what it sent.  The emulation sends the same packets, in
    the same order, for every vector (random fields masked)."""
    results, totals = replay_capture("linux618_vectors.pcap")
    seconds: dict[int, list] = defaultdict(list)
    for r in results:
        seconds[int(r.time)].append(r)
    assert len(seconds) == 60
    mismatches = []
    for second, group in sorted(seconds.items()):
        emulated = [rep for r in group if r.direction == "in" for rep in r.replies]
        captured = [ip_datagram(r.ip) for r in group if r.direction == "out"]
        if [mask_random_fields(x) for x in emulated] != [mask_random_fields(x) for x in captured]:
            mismatches.append((group[0].n, [x.hex() for x in emulated], [x.hex() for x in captured]))
    assert mismatches == []
    assert totals.own_generated == totals.own_matched == totals.directions["out"] == 40


def test_linux618_vectors_silent_drops() -> None:
    """Packets Linux answered with nothing are dropped with the kernel's reason."""
    results, _ = replay_capture("linux618_vectors.pcap")
    first = {}
    for r in results:
        first.setdefault(int(r.time), r)
    vec = [first[s] for s in sorted(first)]  # vec[i] is vector i (T01 is 0)
    t13, t14, t15 = vec[12], vec[13], vec[14]
    assert t13.reason is DropReason.TCP_CSUM and t13.replies == ()
    assert t14.direction == "in" and t14.verdict is not None and not t14.verdict.delivered and t14.replies == ()
    assert t15.direction == "other"  # 10.0.0.99 is not the host's
    u05 = vec[36]
    assert u05.reason is DropReason.UDP_CSUM and u05.replies == ()


# --------------------------------------------------------------------------
# refused connections


def test_tcp_syn_refused() -> None:
    """SYN to closed 10.1.1.6:20000: NO_SOCKET and a RST+ACK that equals the
    captured one except for the IPv4 ID (62817 on the wire, 0 on Linux 6.18)
    and so the header checksum."""
    results, totals = replay_capture("tcp_syn_refused.pcap")
    syn, rst = results
    assert syn.direction == "in" and syn.reason is DropReason.NO_SOCKET
    reply = only_reply(syn)
    assert tcp_flags(reply) == "RA"
    assert tcp_field(reply, "seq") == 0 and tcp_field(reply, "ack") == 3820339061
    assert tcp_field(reply, "window") == 0 and tcp_options(reply) == b""
    assert reply[8] == 64 and reply[6] & 0x40 and reply[4:6] == b"\0\0"
    assert rst.direction == "out" and rst.matched is False
    assert differing_bytes(reply, rst.ip) == {4, 5, 10, 11}
    assert totals.directions == {"in": 1, "out": 1}


def test_pop3_refused_and_accepted() -> None:
    """Servers .188 and .171 refuse port 110 (three SYNs each, RST each time);
    .166 accepts.  With TTL 57, the old kernel's window scale (tcp_rmem[2])
    and its 4-segment initial window (the route's initrwnd) every RST and
    every SYN-ACK of the servers is reproduced."""
    results, totals = replay_capture("pop3_refused_retries.pcap")
    refused = [r for r in results if r.direction == "in" and tcp_flags(ip_datagram(r.ip)) == "S"
               and r.ip[16:20] in (bytes((212, 227, 15, 188)), bytes((212, 227, 15, 171)))]
    assert len(refused) == 6
    for r in refused:
        assert r.reason is DropReason.NO_SOCKET
        assert tcp_flags(only_reply(r)) == "RA"
    rsts = host_kernel_packets(results, "RA")
    assert len(rsts) == 6 and all(r.matched is True for r in rsts)
    synacks = host_kernel_packets(results, "SA")
    assert len(synacks) == 5
    assert [r.n for r in synacks if r.matched is not True] == []
    first_syns = {}
    for r in results:
        if r.direction == "in" and tcp_flags(ip_datagram(r.ip)) == "S" and r.ip[16:20] == bytes((212, 227, 15, 166)):
            first_syns.setdefault(tcp_field(r.ip, "sport"), r)
    assert len(first_syns) == 5
    for r in first_syns.values():
        assert r.verdict.delivered and r.socket_names == ["pop3"]
        assert tcp_flags(only_reply(r)) == "SA"
    assert totals.packets == 125 and totals.directions["other"] == 0


def test_localhost_v6_refused_http() -> None:
    """Over lo: [::1]:8080 is refused, 127.0.0.1:8080 accepts; both host
    replies (the RST and the SYN-ACK with window scale 7) are reproduced."""
    results, totals = replay_capture("localhost_v6_refused_http.pcap")
    p = by_n(results)
    assert all(r.direction == "out" and r.looped for r in results if r.direction != "timer")
    assert p[1].reason is DropReason.NO_SOCKET and tcp_flags(only_reply(p[1])) == "RA"
    assert p[2].matched is True
    assert p[3].verdict.delivered and p[3].socket_names == ["http"]
    synack = only_reply(p[3])
    assert tcp_flags(synack) == "SA" and tcp_options(synack)[-4:] == bytes.fromhex("01030307")
    assert p[4].matched is True
    assert totals.packets == 53


def test_null_redis_v6_refused_macos() -> None:
    """macOS loopback: the IPv6 SYN is refused (its RST carries nothing Linux
    would set differently once the flow label is masked); the IPv4 SYN reaches
    Redis, and macOS's SYN-ACK (MSS 16344, BSD option order) is not Linux's."""
    results, _ = replay_capture("null_redis_v6_refused.pcap")
    p = by_n(results)
    assert p[1].ip[0] >> 4 == 6 and p[1].reason is DropReason.NO_SOCKET
    assert masked_equal(only_reply(p[1]), p[2].ip)
    assert p[3].verdict.delivered and p[3].socket_names == ["redis"]
    synack = only_reply(p[3])
    assert tcp_options(synack)[:4] == bytes.fromhex("0204ffd7")  # Linux lo: MSS 65495
    assert tcp_options(p[4].ip)[:4] == bytes.fromhex("02043fd8")  # macOS lo: MSS 16344
    assert p[4].matched is False


def test_pcapng_eth_sll_mysql() -> None:
    """Loopback MySQL handshake (interface 0) and a refused SYN to
    130.217.250.13:8810 (interface 1): both host replies reproduced; the
    snap length of interface 1 cuts packets with payload."""
    results, totals = replay_capture("pcapng_eth_sll_mysql.pcapng")
    p = by_n(results)
    assert p[1].looped and p[1].socket_names == ["mysqld"]
    synack = only_reply(p[1])
    assert tcp_flags(synack) == "SA"
    # The capture stamps the SYN-ACK 46 years after the SYN (a broken
    # timestamp in the file); the replay runs it at the next packet's time,
    # so the request is still there and the SYN-ACK is paired with it.
    assert p[2].time - p[1].time > 1e9
    assert masked_equal(synack, p[2].ip) and p[2].matched is True
    assert p[3].verdict.delivered and p[3].socket_names == ["mysqld"]  # the handshake completes
    assert p[90].direction == "in" and p[90].reason is DropReason.NO_SOCKET
    assert tcp_flags(only_reply(p[90])) == "RA"
    assert p[91].direction == "out" and p[91].matched is True
    assert totals.reasons["CAPTURE_TRUNCATED"] > 0
    assert totals.packets == 159


# --------------------------------------------------------------------------
# SYN-ACKs of listeners


@pytest.mark.parametrize("capture, syn, synack, socket", [
    ("smtp_ipv6_tcp.pcap", 1, 2, "smtp"),
    ("vlan0_http.pcap", 1, 2, "httpd"),
    ("http_ns_be.pcap", 1, 2, "http.server"),
])
def test_linux_synack_reproduced(capture: str, syn: int, synack: int, socket: str) -> None:
    """Linux servers (sysctls set to their kernel's values): the SYN reaches
    the listener and the emulated SYN-ACK is the captured one, options and
    window included."""
    results, _ = replay_capture(capture)
    p = by_n(results)
    assert p[syn].verdict.delivered and p[syn].socket_names == [socket]
    reply = only_reply(p[syn])
    captured = ip_datagram(p[synack].ip)
    # options compared with TSval masked (drawn at random)
    assert tcp_options(mask_random_fields(reply)) == tcp_options(mask_random_fields(captured))
    assert tcp_field(reply, "window") == tcp_field(captured, "window")
    assert masked_equal(reply, p[synack].ip)
    assert p[synack].matched is True


@pytest.mark.parametrize("capture, syn, synack, socket, differ", [
    # 6.18 rounds the initial window to the MSS: 5520, not 5840.
    ("http_get_dns.pcap", 1, 2, "httpd", "window"),
    # the server's network marks TOS 0x20; a Linux SYN-ACK has the listener's 0.
    ("http_3streams.pcap", 2, 7, "httpd", "tos"),
])
def test_linux_synack_one_field_differs(capture: str, syn: int, synack: int, socket: str, differ: str) -> None:
    """Linux servers whose SYN-ACK differs from 6.18's in one field the host
    file cannot set: everything else is equal."""
    results, _ = replay_capture(capture)
    p = by_n(results)
    assert p[syn].verdict.delivered and p[syn].socket_names == [socket]
    reply = only_reply(p[syn])
    captured = p[synack].ip
    l4 = l4_offset(reply)
    field, checksum = {"window": ({l4 + 14, l4 + 15}, {l4 + 16, l4 + 17}), "tos": ({1}, {10, 11})}[differ]
    differ_at = differing_bytes(reply, captured)
    # the field differs, and nothing else but the checksum that covers it
    assert differ_at & field and differ_at - field <= checksum
    assert p[synack].matched is False


@pytest.mark.parametrize("capture, syn, synack, socket", [
    ("tcp_handshake_nano_sll.pcap", 1, 2, "httpd"),  # Windows server
    ("ipv6_http_raw101.pcap", 1, 2, "httpd"),  # BSD server
])
def test_non_linux_synack_not_matched(capture: str, syn: int, synack: int, socket: str) -> None:
    """Not Linux: the SYN reaches the listener, the emulation answers with a
    Linux SYN-ACK whose option layout the captured one does not have."""
    results, _ = replay_capture(capture)
    p = by_n(results)
    assert p[syn].verdict.delivered and p[syn].socket_names == [socket]
    reply = only_reply(p[syn])
    assert tcp_flags(reply) == "SA"
    assert tcp_options(reply) != tcp_options(ip_datagram(p[synack].ip))
    assert p[synack].matched is False


def test_other_hosts_traffic_is_left_alone() -> None:
    """http_get_dns: the DNS exchange and the second web server are not the host's."""
    results, totals = replay_capture("http_get_dns.pcap")
    p = by_n(results)
    for n in (13, 17, 24, 28):
        assert p[n].direction == "other" and p[n].verdict is None
    assert totals.directions["other"] > 0
    assert totals.packets == 43


# --------------------------------------------------------------------------
# ICMP errors


def alone(capture: str, n: int):  # type: ignore[no-untyped-def]
    """Packet ``n`` of the capture received by a fresh kernel of its host
    file, without the traffic before it: (verdict, the captured IP packet)."""
    from pktdemux.hostfile import build_kernel, load_host

    results, _ = replay_capture(capture)
    record = by_n(results)[n]
    kernel = build_kernel(load_host(PCAPS / f"{capture.rsplit('.', 1)[0]}.toml"))
    return kernel.receive(record.ip, now=record.time), record


def test_pppoe_late_dns_answer_icmp_format() -> None:
    """The late answer of 109.0.66.10 to port 32623 (packet 33), on a closed
    port: NO_SOCKET and an ICMP 3/3 like packet 34 -- Linux's format, TOS
    0xc0, DF clear, TTL 64, the whole datagram quoted.  The gateway's quote
    differs from the datagram it received in two bytes, the low bytes of the
    quoted IPv4 and UDP checksums (both 10 higher: a NAT rewrite undone
    without its checksum adjustment), so the captured error is not
    reproducible, and only those bytes and the ICMP checksum differ."""
    verdict, answer = alone("pppoe_nb6_http.pcap", 33)
    results, _ = replay_capture("pppoe_nb6_http.pcap")
    p = by_n(results)
    assert p[1].direction == "out"  # PPPoE session decoded
    assert p[17].direction == "other"  # ARP
    assert verdict.reason is DropReason.NO_SOCKET and len(verdict.replies) == 1
    reply = verdict.replies[0]
    assert icmp_type_code(reply) == (3, 3)
    assert reply[1] == 0xC0 and reply[8] == 64 and not reply[6] & 0x40
    assert reply[28:] == ip_datagram(answer.ip)
    quoted_checksums, icmp_checksum = {28 + 11, 28 + 27}, {20 + 2, 20 + 3}
    assert quoted_checksums <= differing_bytes(reply, p[34].ip) <= quoted_checksums | icmp_checksum


@pytest.mark.parametrize("capture, answered, late, error, matched", [
    # the first answer (packet 32) reaches the resolver; its socket is closed
    # (host file: closed) before the late one (33), whose ICMP error (34)
    # differs only where the gateway's NAT left its mark
    ("pppoe_nb6_http.pcap", 32, 33, 34, False),
    # the KAME workstation's late answer (136) and its ICMPv6 error (137),
    # which the emulation reproduces
    ("v6_traceroute_unreach.pcap", None, 136, 137, True),
])
def test_late_dns_answer_in_replay(capture: str, answered: int | None, late: int, error: int, matched: bool) -> None:
    """A resolver socket with a close time in the host file: the answer that
    comes before it is delivered, the late answer after it gets NO_SOCKET and
    the ICMP port unreachable the host sent."""
    results, _ = replay_capture(capture)
    p = by_n(results)
    if answered is not None:
        assert p[answered].verdict.delivered and p[answered].socket_names == ["resolver"]
    assert p[late].reason is DropReason.NO_SOCKET and len(p[late].replies) == 1
    assert p[error].direction == "out" and p[error].matched is matched
    assert [r.note for r in results if r.direction == "timer" and r.note != "tcp_delack_timer"] == ["close"]


def test_v6_traceroute_late_dns_answer_icmpv6() -> None:
    """KAME workstation: the DNS answer to port 2410 comes 5.3 s after the
    query, the socket is gone: ICMPv6 1/4 quoting the 238-byte datagram,
    which the emulation reproduces (flow label masked)."""
    verdict, _ = alone("v6_traceroute_unreach.pcap", 136)
    results, _ = replay_capture("v6_traceroute_unreach.pcap")
    captured = by_n(results)[137]
    assert captured.direction == "out"
    assert verdict.reason is DropReason.NO_SOCKET and len(verdict.replies) == 1
    reply = verdict.replies[0]
    assert icmp_type_code(reply) == (1, 4)
    assert len(reply) == 40 + 8 + 238
    assert masked_equal(reply, captured.ip)



# --------------------------------------------------------------------------
# ICMP echo


@pytest.mark.parametrize("capture, requests, replies", [
    ("dns_ptr_icmp_echo.pcap", [3, 5, 7, 11, 12, 14], [4, 6, 8, 13]),
    ("vlan_qinq_icmp.pcap", [1, 3, 5, 7, 9, 11, 13, 15, 17, 19], [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]),
    ("dot1ad_qinq_icmp.pcap", [1], [2]),
    ("icmp_echo_be.pcap", [1, 2], []),
])
def test_echo_requests_answered(capture: str, requests: list[int], replies: list[int]) -> None:
    """Every echo request to the host is answered with one echo reply (same
    identifier, sequence and data); every captured echo reply of the host is
    matched once its TTL is set (the IP ID is compared masked)."""
    results, _ = replay_capture(capture)
    p = by_n(results)
    for n in requests:
        req = ip_datagram(p[n].ip)
        assert p[n].direction == "in" and p[n].verdict.delivered
        reply = only_reply(p[n])
        assert icmp_type_code(reply) == (0, icmp_type_code(req)[1])
        assert reply[l4_offset(reply) + 4:] == req[l4_offset(req) + 4:]
    for n in replies:
        assert p[n].direction == "out" and p[n].matched is True
    assert not [r for r in results if r.direction == "out" and r.n not in replies]


def test_sll2_self_ping_over_lo() -> None:
    """A Linux host pings its own IPv4 and link-local IPv6 address over lo."""
    results, totals = replay_capture("sll2_icmp_v4v6.pcap")
    p = by_n(results)
    for req, rep in ((1, 2), (3, 4)):
        assert p[req].looped and p[req].verdict.delivered
        assert icmp_type_code(only_reply(p[req]))[0] in (0, 129)
        assert p[rep].matched is True
    assert p[5].direction == "other" and p[6].direction == "other"
    assert totals.packets == 6


# --------------------------------------------------------------------------
# Linux hosts: no kernel reply goes unmatched


LINUX_CAPTURES = [
    "linux618_vectors.pcap",
    "pop3_refused_retries.pcap",
    "localhost_v6_refused_http.pcap",
    # (pcapng_eth_sll_mysql.pcapng: see its own test, the file's clock jumps)
    "smtp_ipv6_tcp.pcap",
    "vlan0_http.pcap",
    "http_ns_be.pcap",
]


@pytest.mark.parametrize("capture", LINUX_CAPTURES)
def test_linux_host_rsts_and_synacks_matched(capture: str) -> None:
    """In captures of Linux hosts whose settings the host file reproduces,
    every RST and SYN-ACK the host sent is one the emulation sent too."""
    results, _ = replay_capture(capture)
    own = [r for r in results if r.direction == "out" and r.ip
           and (tcp_flags(ip_datagram(r.ip)) in ("SA", "R", "RA"))]
    assert own, "the capture has RSTs or SYN-ACKs of the host"
    assert [(r.n, r.transmission.note if r.transmission else "") for r in own if r.matched is not True] == []


@pytest.mark.parametrize("capture, matched, unmatched", [
    # TIME_WAIT ACKs carry the window the connection had when it entered
    # TIME_WAIT (tw_rcv_wnd): 12 << 9, not one unit less for the FIN
    ("pop3_refused_retries.pcap", [24, 42, 54, 73, 125], []),
    # window scale 7 on lo: the free space 65483 is rounded up to 65536
    # (512); after unread data the right edge stays (511).  The capture's
    # kernel ACKs every request at once; its host file keeps 6.18 out of
    # pingpong mode (tcp_pingpong_thresh 255) so the ACKs do not ride on the
    # answers.  Packet 47 came after the server read the request, which a
    # replay cannot know.
    ("localhost_v6_refused_http.pcap", [5, 7, 11, 17, 19, 29, 53], [47]),
    # packet 9: the window grew past tcp_rmem[1] / 2 after a full-sized
    # segment (the receive buffer's scaling ratio), which is not modelled
    ("http_ns_be.pcap", [3, 5, 7], [9]),
    # the route's initrwnd (10 and 4 segments): the window starts there with
    # the buffer of 6.18's tcp_rmem[1] behind it, and grows after the request
    ("vlan0_http.pcap", [5], []),
    ("http_3streams.pcap", [28], []),
])
def test_linux_host_acks(capture: str, matched: list[int], unmatched: list[int]) -> None:
    """The pure ACKs of Linux hosts, window included, where the emulation
    models the kernel's window selection; the packets listed as unmatched
    say what it does not."""
    p = by_n(replay_capture(capture)[0])
    assert [n for n in matched if p[n].matched is not True] == []
    assert [n for n in unmatched if p[n].matched is not False] == []
    assert all("tcp.window" in p[n].transmission.note for n in unmatched)


# --------------------------------------------------------------------------
# which way each packet went


@pytest.mark.parametrize("capture, counts", [
    # 6 echo requests to 8.8.8.8/8.8.4.4, 4 replies; DNS at the hotspot and the other pings
    ("dns_ptr_icmp_echo.pcap", {"in": 6, "out": 4, "other": 22}),
    # the three streams' packets with 98.138.19.88 vs the other two servers
    ("http_3streams.pcap", {"in": 5, "out": 5, "other": 18}),
    ("http_get_dns.pcap", {"in": 16, "out": 18, "other": 9}),
    # loopback captures: every packet is the host's to itself
    ("http_ns_be.pcap", {"out": 10}),
    ("localhost_v6_refused_http.pcap", {"out": 53}),
    ("null_redis_v6_refused.pcap", {"out": 12}),
    # 59 loopback MySQL packets (looped), the rest on the cooked interface
    ("pcapng_eth_sll_mysql.pcapng", {"in": 45, "out": 114}),
    ("pop3_refused_retries.pcap", {"in": 58, "out": 67}),
    # 6 ARP frames are the only non-host frames
    ("pppoe_nb6_http.pcap", {"in": 25, "out": 31, "other": 6}),
    ("smtp_ipv6_tcp.pcap", {"in": 9, "out": 8}),
    ("tcp_handshake_nano_sll.pcap", {"in": 2, "out": 1}),
    ("v6_traceroute_unreach.pcap", {"in": 80, "out": 81}),
    ("vlan_qinq_icmp.pcap", {"in": 10, "out": 10, "other": 6}),
])
def test_directions(capture: str, counts: dict[str, int]) -> None:
    """Packets to the host are "in", from it "out", the rest "other"."""
    _, totals = replay_capture(capture)
    assert dict(totals.directions) == counts
