"""pktdemux.explain: one-line verdicts and numbered steps."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP

from pktdemux.dropreason import DropReason
from pktdemux.explain import describe, numbered_steps, peek, reply_kind
from pktdemux.host import Host
from pktdemux.verdict import Verdict, drop

SYN = bytes(IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=1, dport=81, flags="S"))


def test_numbered_steps_align_their_numbers() -> None:
    steps = tuple(f"step {i} (source {i})" for i in range(1, 11))
    text = numbered_steps(steps).splitlines()
    assert text[0] == " 1. step 1 (source 1)" and text[9] == "10. step 10 (source 10)"
    assert numbered_steps(()) == "(no steps recorded)"


def test_explanation_renders_the_kernel_trace(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    host = Host(["10.0.0.1/24"])
    real_receive = host.kernel.receive.__func__  # type: ignore[attr-defined]

    def traced(kernel, packet, now, device=None):  # type: ignore[no-untyped-def]
        verdict = real_receive(kernel, packet, now, device)
        fake = ("IPv4 header valid (ip_rcv_core)", "no socket on tcp port 81 (__inet_lookup_skb)")
        return Verdict(verdict.delivered, verdict.sockets, verdict.reason, verdict.replies, verdict.handler,
                       verdict.note, fake)

    monkeypatch.setattr(type(host.kernel), "receive", traced)
    explanation = host.explain(SYN)
    assert repr(explanation).splitlines() == [
        "dropped: NO_SOCKET — nothing listens on tcp 10.0.0.1:81; the kernel answers with a RST (RFC 9293 §3.10.7.1)",
        "1. IPv4 header valid (ip_rcv_core)",
        "2. no socket on tcp port 81 (__inet_lookup_skb)",
    ]


def test_explain_uses_the_steps_the_core_records() -> None:
    host = Host(["10.0.0.1/24"])
    steps = host.explain(SYN).steps
    assert isinstance(steps, tuple) and all(isinstance(s, str) for s in steps)
    assert all("(" in s and s.endswith(")") for s in steps), steps
    assert any("tcp_v4_send_reset" in s for s in steps), steps
    assert repr(host.explain(SYN)).splitlines()[1].startswith("1. ")


def test_peek_reads_addresses_and_ports() -> None:
    flow = peek(SYN)
    assert flow is not None and (flow.proto_name, flow.sport, flow.dport) == ("tcp", 1, 81)
    assert flow.destination == "tcp 10.0.0.1:81"
    assert peek(b"\x45") is None


def test_reply_kinds() -> None:
    host = Host(["10.0.0.1/24"])
    rst = host.receive(SYN).verdict.replies[0]
    icmp = host.receive(IP() / UDP(dport=9)).verdict.replies[0]
    assert reply_kind(rst).startswith("a RST") and reply_kind(icmp).startswith("ICMP port unreachable")


def test_other_drops_show_their_note() -> None:
    verdict = drop(DropReason.TCP_CSUM, "bad TCP checksum: dropped silently")
    assert describe(verdict, SYN) == "dropped: TCP_CSUM — bad TCP checksum: dropped silently"
    no_reply = drop(DropReason.NO_SOCKET, "no socket on tcp port 81; a RST is never answered")
    assert describe(no_reply, SYN).endswith("no answer (no socket on tcp port 81; a RST is never answered)")
