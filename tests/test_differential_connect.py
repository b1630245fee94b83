"""The host as a client (spec §3.8, §8), compared with Linux
(pktdemux.oracle) on the kernel's timeline: connect() on an unbound socket
(the SYN byte for byte, ISN and TSval masked: ports, window, MSS, option
layout), then what SYN_SENT does with a SYN-ACK, a RST with the right or a
wrong ACK, a RST without ACK, an ACK of something else, and ICMP / ICMPv6
unreachables quoting the SYN: replies and retransmissions, the socket's
state and SO_ERROR.

net.ipv4.ip_local_port_range is 40000-40001: connect() takes ports of the
range's low parity first (spec §8.1), so every connection, each to another
peer port, gets 40000 on both sides.  The emulation adopts the ISN of the
kernel's SYN (Kernel.transmit), so what follows from it compares exactly;
each vector's socket is closed within 1 s of its SYN (before the SYN
retransmission timer's first expiry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ip_vectors import icmp4, icmp6
from kernel_support import Case, assert_agree, host_toml
from lifecycle_support import Timeline, differences, run_timeline
from tcp_helpers import segment, tcp_flags, tcp_header, tcp_options

LOCAL4, LOCAL6, PEER4, PEER6, ROUTER4, ROUTER6 = "10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2", "10.0.0.254", "fd00::fe"
PORT = 40000
RST, SYN, SYN_ACK, ACK = 0x04, 0x02, 0x12, 0x10
#: Replies come at once, or TCP_TIMEOUT_MIN (8 ms here) later for the SYN
#: retransmitted after an unacceptable ACK.
SLACK = 0.03
GAP = 0.02
#: SYN-ACK options: MSS 1460, SACK-permitted, TS 5555/0 (TSecr is set by the
#: test), NOP, WS 7
FULL_OPTIONS = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + (5555).to_bytes(4, "big") + bytes(4) + b"\x01\x03\x03\x07"
MSS_ONLY = b"\x02\x04\x05\xb4"

#: vector id → peer address and port (the host's end is LOCAL4/LOCAL6:40000)
PEERS = {
    "SYNACK": (PEER4, 7001), "SYNACKOPTS": (PEER4, 7002), "REFUSED": (PEER4, 7003), "RSTBADACK": (PEER4, 7004),
    "RSTNOACK": (PEER4, 7005), "ACKBAD": (PEER4, 7006), "ICMPPORT": (PEER4, 7007), "ICMPHOST": (PEER4, 7008),
    "V6SYNACK": (PEER6, 7009), "V6REFUSED": (PEER6, 7010), "V6ICMPPORT": (PEER6, 7011), "V6ICMPADDR": (PEER6, 7012),
}


def _local(vid: str) -> str:
    return LOCAL6 if ":" in PEERS[vid][0] else LOCAL4


def _peer_text(vid: str) -> str:
    addr, port = PEERS[vid]
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _from_peer(vid: str, flags: str, *, ack: int = 0, options: bytes = b"") -> bytes:
    """A segment from the vector's peer; ``ack`` counts from the host's ISN."""
    addr, port = PEERS[vid]
    return segment(addr, _local(vid), port, PORT, flags, seq=5000, ack=ack, window=65535, options=options)


def _unreachable(vid: str, source: str, code: int) -> bytes:
    """An ICMP (IPv4) or ICMPv6 Destination Unreachable quoting the SYN (its
    sequence number counts from the ISN: 0 is the SYN's)."""
    addr, port = PEERS[vid]
    quote = segment(_local(vid), addr, PORT, port, "S", seq=0, window=64240)
    build = icmp6 if ":" in addr else icmp4
    return build(source, _local(vid), 1 if ":" in addr else 3, code, rest=bytes(4), data=quote)


#: vector id → what the peer answers the SYN with, how the oracle rebases it
#: on the ISN, and whether the application still holds the socket at the end
ANSWERS: dict[str, tuple[str, Callable[[], bytes], str, bool]] = {
    "SYNACK": ("SYN-ACK", lambda: _from_peer("SYNACK", "SA", ack=1, options=MSS_ONLY), "ack_from_isn", True),
    "SYNACKOPTS": ("SYN-ACK", lambda: _from_peer("SYNACKOPTS", "SA", ack=1, options=FULL_OPTIONS), "ack_from_isn",
                   True),
    "REFUSED": ("RST+ACK", lambda: _from_peer("REFUSED", "RA", ack=1), "ack_from_isn", False),
    "RSTBADACK": ("RST+ACK with a wrong ACK", lambda: _from_peer("RSTBADACK", "RA", ack=1001), "ack_from_isn", False),
    "RSTNOACK": ("RST without ACK", lambda: _from_peer("RSTNOACK", "R"), "", False),
    "ACKBAD": ("ACK with a wrong ACK", lambda: _from_peer("ACKBAD", "A", ack=1001), "ack_from_isn", False),
    "ICMPPORT": ("port unreachable", lambda: _unreachable("ICMPPORT", PEER4, 3), "quote_from_isn", False),
    "ICMPHOST": ("host unreachable", lambda: _unreachable("ICMPHOST", ROUTER4, 1), "quote_from_isn", False),
    "V6SYNACK": ("SYN-ACK", lambda: _from_peer("V6SYNACK", "SA", ack=1, options=FULL_OPTIONS), "ack_from_isn", True),
    "V6REFUSED": ("RST+ACK", lambda: _from_peer("V6REFUSED", "RA", ack=1), "ack_from_isn", False),
    "V6ICMPPORT": ("port unreachable", lambda: _unreachable("V6ICMPPORT", PEER6, 4), "quote_from_isn", False),
    "V6ICMPADDR": ("address unreachable", lambda: _unreachable("V6ICMPADDR", ROUTER6, 3), "quote_from_isn", False),
}


def _client_case() -> Case:
    """Per vector: connect(), the peer's answer, SO_ERROR and the state,
    then close() unless the connection was established."""
    case = Case("connect", host_toml([], sysctls={"net.ipv4.ip_local_port_range": [40000, 40001]}), settle=0.1)
    for vid, (what, answer, rebase, kept) in ANSWERS.items():
        case.call(vid, "connect", peer=_peer_text(vid), gap=GAP, label=f"{vid} connect")
        case.add(answer(), gap=GAP, label=f"{vid} {what}", **({rebase: True} if rebase else {}))
        case.call(vid, "status", gap=GAP, label=f"{vid} status")
        if not kept:
            case.call(vid, "close", gap=GAP, label=f"{vid} close")
    return case


@pytest.fixture(scope="module")
def client(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = _client_case()
    return case, run_timeline(kernel_oracle, case)



#: vector id → (Linux's replies after the connect call and after the
#: injected packet, as TCP flags; the socket's state and SO_ERROR then)
EXPECTED: dict[str, tuple[list[list[int]], tuple[str, str | None]]] = {
    "SYNACK": ([[SYN], [ACK]], ("ESTABLISHED", None)),
    "SYNACKOPTS": ([[SYN], [ACK]], ("ESTABLISHED", None)),
    "REFUSED": ([[SYN], []], ("CLOSE", "ECONNREFUSED")),
    "RSTBADACK": ([[SYN], [SYN]], ("SYN_SENT", None)),        # ignored, but the SYN goes again at once
    "RSTNOACK": ([[SYN], []], ("SYN_SENT", None)),
    "ACKBAD": ([[SYN], [RST, SYN]], ("SYN_SENT", None)),       # RST seq=SEG.ACK, then the SYN again
    "ICMPPORT": ([[SYN], []], ("CLOSE", "ECONNREFUSED")),
    "ICMPHOST": ([[SYN], []], ("CLOSE", "EHOSTUNREACH")),
    "V6SYNACK": ([[SYN], [ACK]], ("ESTABLISHED", None)),
    "V6REFUSED": ([[SYN], []], ("CLOSE", "ECONNREFUSED")),
    "V6ICMPPORT": ([[SYN], []], ("CLOSE", "ECONNREFUSED")),
    "V6ICMPADDR": ([[SYN], []], ("CLOSE", "EHOSTUNREACH")),
}


def _call(run: Timeline, case: Case, label: str) -> Any:
    return run.oracle.calls[case.call_labels.index(label)]


@pytest.mark.kernel
@pytest.mark.parametrize("vid", list(EXPECTED))
def test_syn_sent(client: tuple[Case, Timeline], vid: str) -> None:
    """Linux as spec §3.8 says, then the emulation: replies byte for byte
    (the SYN included, timer output included), the socket's state and
    SO_ERROR."""
    case, run = client
    replies, (state, so_error) = EXPECTED[vid]
    connect, status = _call(run, case, f"{vid} connect"), _call(run, case, f"{vid} status")
    packet = run.oracle.packets[case.labels.index(next(x for x in case.labels if x.startswith(vid + " ")))]
    assert [[tcp_flags(p) for p in connect.reply_bytes], [tcp_flags(p) for p in packet.reply_bytes]] == replies, \
        "Linux did not reply as spec §3.8 says"
    assert (connect.error, connect.local) == ("EINPROGRESS", (_local(vid), PORT))
    assert (status.state, status.so_error) == (state, so_error), "Linux's socket is not as spec §3.8 says"
    for rst in (p for p in packet.reply_bytes if tcp_flags(p) == RST):
        assert tcp_header(rst)[2] == tcp_header(packet.packet)[3]  # seq = SEG.ACK
    assert_agree(differences(case, run, SLACK, labels=vid + " ", sockets=[]))


@pytest.mark.kernel
@pytest.mark.parametrize(("vid", "mss", "window"), [("SYNACK", 1460, 64240), ("V6SYNACK", 1440, 64800)])
def test_the_syn(client: tuple[Case, Timeline], vid: str, mss: int, window: int) -> None:
    """The SYN: from the even port 40000, window 64240 (IPv6 64800: 45 MSS),
    options MSS, SACK-permitted + TS (TSecr 0), NOP, WS 10 (spec §3.8), the
    same in the emulation (its ISN and TSval are its own)."""
    case, run = client
    (kernel,) = _call(run, case, f"{vid} connect").reply_bytes
    (emulated,) = run.calls[case.call_labels.index(f"{vid} connect")].replies
    for syn in (kernel, emulated):
        sport, _, _, ack, flags, win = tcp_header(syn)
        options = tcp_options(syn)
        assert (sport, ack, flags & 0x3F, win) == (PORT, 0, SYN, window)
        assert options[:4] == b"\x02\x04" + mss.to_bytes(2, "big") and options[4:8] == b"\x04\x02\x08\x0a"
        assert options[12:] == bytes(4) + b"\x01\x03\x03\x0a"


@pytest.mark.kernel
def test_an_unacceptable_ack_brings_the_syn_retransmission_forward(client: tuple[Case, Timeline]) -> None:
    """After an ACK that acknowledges something else (RST or not), the SYN
    is retransmitted ~TCP_TIMEOUT_MIN later (same ISN), not 1 s later."""
    case, run = client
    for vid in ("RSTBADACK", "ACKBAD"):
        (syn,) = _call(run, case, f"{vid} connect").replies
        packet = run.oracle.packets[case.labels.index(next(x for x in case.labels if x.startswith(vid + " ")))]
        (again,) = [r for r in packet.replies if tcp_flags(r.packet) == SYN]
        assert tcp_header(again.packet)[2] == tcp_header(syn.packet)[2]
        assert 0.004 <= again.at - packet.sent_at <= 0.05
