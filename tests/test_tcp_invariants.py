"""Invariants of the TCP receive path over random segment sequences
(Hypothesis): never a RST in reply to a RST, every reply swaps the endpoints
of the segment it answers, every reply has correct checksums, nothing raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_helpers import T0, listen, make_kernel, segment, tcp_header

from pktdemux.tcp_segment import RST
from pktdemux.wire import PROTO_TCP, checksum, transport_checksum_ok

PEERS = ["10.0.0.2", "10.0.0.7"]
FLAG_SETS = ["S", "A", "R", "RA", "SA", "F", "FA", "PA", "", "SF", "SR", "SE C".replace(" ", ""), "U"]

segments = st.tuples(
    st.sampled_from(PEERS), st.sampled_from([40000, 40001]), st.sampled_from([80, 81]),
    st.sampled_from(FLAG_SETS), st.integers(0, 2**32 - 1) | st.sampled_from([100, 101, 102]),
    st.integers(0, 2**32 - 1), st.binary(max_size=8), st.floats(0, 2),
)


def checksums_ok(packet: bytes) -> bool:
    ihl = (packet[0] & 0x0F) * 4
    return checksum(packet[:ihl]) == 0 and transport_checksum_ok(packet[12:16], packet[16:20], PROTO_TCP, packet[ihl:])


@settings(max_examples=200, deadline=None)
@given(st.lists(segments, max_size=25))
def test_replies_answer_their_segment(sequence) -> None:  # type: ignore[no-untyped-def]
    kernel = make_kernel()
    listen(kernel, "10.0.0.1", 80, backlog=2)
    now = T0
    for peer, sport, dport, flags, seq, ack, payload, gap in sequence:
        now += gap
        verdict = kernel.receive(segment(peer, "10.0.0.1", sport, dport, flags, seq, ack, payload=payload), now, "tun0")
        for reply in verdict.replies:
            assert checksums_ok(reply)
            assert reply[12:16] == bytes([10, 0, 0, 1]) and reply[16:20] == bytes(int(x) for x in peer.split("."))
            assert tcp_header(reply)[:2] == (dport, sport)
            if "R" in flags:
                assert not tcp_header(reply)[4] & RST, (flags, verdict.note)
