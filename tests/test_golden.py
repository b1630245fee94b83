"""Golden transcripts: the packet lines (random fields symbolic, everything
else shown), the header, and the comparison with its diff and wildcards."""

from __future__ import annotations

import pathlib

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from pktdemux.golden import (
    Event,
    GoldenError,
    compare,
    header,
    read_golden,
    transcript,
    verdict_text,
)
from pktdemux.golden_render import LineRenderer, tcp_flags
from pktdemux.hostfile import build_kernel, parse_host

HOST = parse_host('[host]\naddresses = ["10.0.0.1/24", "fd00::1/64"]\n\n[sysctl]\n"net.ipv4.ip_default_ttl" = 57\n\n'
                  '[[sockets]]\nname = "web"\nlabel = "tcp://10.0.0.1:80"\nlisten = 128\n')
OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]


def syn(seq: int = 1000, port: int = 80) -> bytes:
    return bytes(IP(src="10.0.0.2", dst="10.0.0.1", id=1) / TCP(sport=40000, dport=port, flags="S", seq=seq,
                                                                  window=64240, options=OPTS))


def synack(isn: int, tsval: int) -> bytes:
    return bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=0, flags="DF") /
                 TCP(sport=80, dport=40000, flags="SA", seq=isn, ack=1001, window=65160,
                     options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (tsval, 1)), ("NOP", None),
                              ("WScale", 7)]))


def test_random_fields_of_a_synack_are_symbolic_and_the_rest_literal() -> None:
    a = LineRenderer().render(synack(12345, 99), host=True)
    b = LineRenderer().render(synack(987654321, 5), host=True)
    assert a == b
    assert a == ("10.0.0.1:80 > 10.0.0.2:40000 S. seq isn ack 1001 win 65160 "
                 "<mss 1460,sackOK,TS val tsval ecr 1,nop,wscale 7> (ttl 64 id 0 DF len 60)")


def test_a_changed_deterministic_field_changes_the_line() -> None:
    base = LineRenderer().render(synack(1, 1), host=True)
    other = bytes(IP(src="10.0.0.1", dst="10.0.0.2", ttl=63, flags="DF") /
                  TCP(sport=80, dport=40000, flags="SA", seq=1, ack=1001, window=65160))
    assert base != LineRenderer().render(other, host=True)
    assert "ttl 63" in LineRenderer().render(other, host=True)


def test_received_packets_are_shown_literally() -> None:
    line = LineRenderer().render(syn(), host=False)
    assert line == ("10.0.0.2:40000 > 10.0.0.1:80 S seq 1000 win 64240 "
                    "<mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7> (ttl 64 id 1 len 60)")


def test_the_peer_ack_and_later_host_seq_count_from_the_host_isn() -> None:
    renderer = LineRenderer()
    renderer.render(synack(5000, 1), host=True)
    ack = bytes(IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=40000, dport=80, flags="A", seq=1001, ack=5001))
    data = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=80, dport=40000, flags="PA", seq=5001,
                                                           ack=1001) / b"hello")
    assert "seq 1001 ack isn+1 " in renderer.render(ack, host=False)
    assert " P. seq isn+1 ack 1001 " in renderer.render(data, host=True)
    assert "len 5 #" in renderer.render(data, host=True)


def test_icmp_ids_and_flow_labels_of_the_host_are_rand_and_quotes_are_shown() -> None:
    datagram = bytes(IP(src="10.0.0.2", dst="10.0.0.1", ttl=3) / UDP(sport=5353, dport=53) / (b"x" * 20))
    error = bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=4242, tos=0xC0) / ICMP(type=3, code=3) / datagram[:28])
    line = LineRenderer().render(error, host=True)
    assert "icmp port-unreachable quote [10.0.0.2:5353 > 10.0.0.1:53 udp len 20 (ttl 3 id 1 len 48 caplen 28)] 28 #" in line
    assert line.endswith("(ttl 64 tos 0xc0 id rand len 56)")
    v6 = bytes(IPv6(src="fd00::1", dst="fd00::2", fl=0x12345) / UDP(sport=1, dport=2))
    assert "(hlim 64 flow rand len 48)" in LineRenderer().render(v6, host=True)
    no_label = bytes(IPv6(src="fd00::1", dst="fd00::2", fl=0) / UDP(sport=1, dport=2))
    assert "flow 0" in LineRenderer().render(no_label, host=True)


def test_bad_checksums_and_cut_packets_show() -> None:
    good = bytearray(syn())
    good[36] ^= 0xFF  # a TCP checksum byte
    assert LineRenderer().render(bytes(good), host=False).endswith("bad-csum (ttl 64 id 1 len 60)")
    assert "caplen 30" in LineRenderer().render(syn()[:30], host=False)
    assert LineRenderer().render(b"\x45\x00", host=False).startswith("unreadable IP packet 2 bytes")


def test_packetdrill_flags() -> None:
    assert [tcp_flags(f) for f in (0x02, 0x12, 0x14, 0x18, 0x11, 0x10, 0)] == ["S", "S.", "R.", "P.", "F.", ".", "-"]


def test_header_names_the_profile_host_sysctls_and_sockets() -> None:
    assert header(HOST) == [
        "pktdemux-golden 1", "profile linux-6.18", "interface eth0 mtu 1500", "address 10.0.0.1/24",
        "address fd00::1/64", "sysctl net.ipv4.ip_default_ttl = 57",
        'socket tcp://10.0.0.1:80 name "web" listen 128',
    ]


def test_transcript_times_are_relative_and_verdicts_follow_received_packets() -> None:
    kernel = build_kernel(HOST, seed=3)
    verdict = kernel.receive(syn(port=81), now=1000.5, device="eth0")
    events = [Event(1000.5, True, syn(port=81), False, verdict_text(verdict, HOST))]
    events += [Event(1000.75, False, r, True) for r in verdict.replies]
    lines = transcript(HOST, events).splitlines()
    assert lines[lines.index("---") + 1].startswith("0.000000 < 10.0.0.2:40000 > 10.0.0.1:81 S ")
    assert lines[-2].endswith(" => drop NO_SOCKET")
    assert lines[-1] == "0.250000 > 10.0.0.1:81 > 10.0.0.2:40000 R. seq 0 ack 1001 win 0 (ttl 57 id 0 DF len 40)"


def test_the_transcript_does_not_depend_on_the_seed() -> None:
    def run(seed: int) -> str:
        kernel = build_kernel(HOST, seed=seed)
        verdict = kernel.receive(syn(), now=1.0, device="eth0")
        return transcript(HOST, [Event(1.0, True, syn(), False, verdict_text(verdict, HOST))] +
                          [Event(1.0, False, r, True) for r in verdict.replies])

    assert "S. seq isn ack 1001" in run(1)
    assert run(1) == run(2)


def test_compare_is_empty_when_equal_and_ignores_comments() -> None:
    text = "pktdemux-golden 1\n---\n0.000000 < a => drop NO_SOCKET\n"
    assert compare(text, text.replace("---", "# recorded on Linux\n---")) == ""


def test_compare_gives_a_unified_diff() -> None:
    diff = compare("pktdemux-golden 1\n---\n0.000000 < a => drop NO_SOCKET\n",
                   "pktdemux-golden 1\n---\n0.000000 < a => deliver \"web\"\n", "g.golden", "now")
    assert diff.startswith("--- g.golden\n+++ now\n")
    assert "-0.000000 < a => drop NO_SOCKET\n" in diff
    assert '+0.000000 < a => deliver "web"\n' in diff


def test_a_star_in_an_expected_verdict_matches_any_verdict_of_the_same_packet() -> None:
    expected = "pktdemux-golden 1\n---\n0.000000 < a => drop *\n0.100000 < b => *\n"
    assert compare(expected, "pktdemux-golden 1\n---\n0.000000 < a => drop UDP_CSUM\n0.100000 < b => deliver kernel\n") == ""
    assert compare(expected, "pktdemux-golden 1\n---\n0.000000 < a => deliver kernel\n0.100000 < b => *\n") != ""
    assert compare(expected, "pktdemux-golden 1\n---\n0.000000 < c => drop UDP_CSUM\n0.100000 < b => *\n") != ""


def test_read_golden_rejects_other_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "x.golden"
    path.write_text("hello\n")
    with pytest.raises(GoldenError, match=r"x.golden: line 1: not a golden transcript"):
        read_golden(str(path))
    with pytest.raises(GoldenError, match="No such file"):
        read_golden(str(tmp_path / "missing.golden"))
