"""Replays of the shipped fragment captures with their host files
(pcaps/frag*.pcap, pcaps/frag*.toml), and the two small IPv4 ones on Linux."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_fragments_kernel import assert_same_timeline

from pktdemux.capture import read_capture
from pktdemux.dropreason import DropReason
from pktdemux.hostfile import build_kernel, load_host
from pktdemux.linklayer import decode
from pktdemux.replay import Replay

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
PENDING = DropReason.FRAG_PENDING


def replay(stem: str, groups: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    kernel = build_kernel(load_host(PCAPS / f"{stem}.toml"), seed=0)
    for group in groups:
        kernel.routing.joined_groups.add(ipaddress.ip_address(group).packed)
    results = list(Replay(kernel).run(read_capture(PCAPS / f"{stem}.pcap")))
    return kernel, results


def outcomes(results: list) -> list[tuple[str, Any]]:  # type: ignore[type-arg]
    return [(r.direction, r.reason or tuple(r.socket_names)) for r in results]


def test_frag4_udp_ntp_queue_is_discarded() -> None:
    kernel, results = replay("frag4_udp_ntp")
    assert outcomes(results) == [("in", PENDING), ("in", PENDING), ("in", DropReason.NOT_SPECIFIED)]
    assert "discarded" in results[2].verdict.note
    assert not any(r.replies for r in results)
    assert kernel.advance(kernel.now + 60) == [] and len(kernel.frags) == 0


def test_frag4_tcp_syn_reaches_the_listener() -> None:
    kernel, results = replay("frag4_tcp_syn")
    assert outcomes(results) == [("in", PENDING), ("in", ("web",))]
    (synack,) = results[1].replies
    assert synack[33] == 0x12
    # the request's SYN-ACK timer: +1, +3, +7, +15, +31 s, then it is gone
    kernel.advance(kernel.now + 64)
    assert [len(f.packets) for f in kernel.drain_timer_output()] == [1, 1, 1, 1, 1, 0]


def test_frag4_udp_bulk_every_train_is_delivered_once() -> None:
    kernel, results = replay("frag4_udp_bulk")
    counts = Counter(outcomes(results))
    assert counts[("in", ("nfsd",))] == 6  # IDs 7840-7845, one datagram each
    assert counts[("in", DropReason.DUP_FRAG)] == 12  # the capture holds some frames twice
    assert counts[("out", ())] == 3
    # a copy of a last fragment after its datagram completed opens a new queue, which dies silently
    kernel.advance(kernel.now + 30)
    assert [(f.what, f.packets) for f in kernel.drain_timer_output()] == [("ip_expire", ())] * 2


def test_frag6_dns_answer_in_fragments_reaches_the_resolver() -> None:
    kernel, results = replay("frag6_dns")
    got = outcomes(results)
    assert got[3] == ("in", PENDING)  # a lone non-first fragment of the lost answer
    assert got[5:7] == [("in", PENDING), ("in", PENDING)]
    assert results[7].verdict.delivered and "reassembled from 3 fragments" in results[7].verdict.note
    # the second query came from a new port: the answer goes to that socket
    assert results[7].socket_names and results[7].socket_names != results[1].socket_names
    assert not any(r.replies for r in results)
    kernel.advance(kernel.now + 60)
    assert [(f.what, f.packets) for f in kernel.drain_timer_output()] == [("ip6_frag_expire", ())]


def test_frag6_udp_bulk_multicast_trains_are_delivered() -> None:
    _, results = replay("frag6_udp_bulk", ("ff02::fb", "ff02::c"))
    counts = Counter(outcomes(results))
    assert counts == {("in", PENDING): 32, ("in", ("mdns",)): 2, ("in", ("wsd",)): 2}


@pytest.mark.kernel
@pytest.mark.parametrize("stem", ["frag4_udp_ntp", "frag4_tcp_syn"])
def test_small_captures_on_linux(kernel_oracle: Callable[..., Any], stem: str) -> None:
    host = (PCAPS / f"{stem}.toml").read_text()
    records = list(read_capture(PCAPS / f"{stem}.pcap"))
    packets = [(r.time - records[0].time, decode(r.linktype, r.frame)[1]) for r in records]
    kernel, _, _ = assert_same_timeline(kernel_oracle, host, packets, settle=0.2)
    assert len(kernel) == (1 if stem == "frag4_tcp_syn" else 0)


def test_frag4_tcp_syn_replays_with_an_inferred_host() -> None:
    # inferred from the capture, the host is the SYN's sender: its own first
    # fragment carries only part of the TCP header and must not stop the replay
    from click.testing import CliRunner

    from pktdemux.cli import main

    result = CliRunner().invoke(main, ["replay", str(PCAPS / "frag4_tcp_syn.pcap"), "--infer"])
    assert result.exit_code == 0, result.output
    assert "2 packets" in result.stdout
