"""The seeded stand-ins for the kernel's random fields."""

from __future__ import annotations

from pktdemux.entropy import Entropy

A, B = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])


def draws(e: Entropy) -> tuple[int, ...]:
    return (e.isn(), e.ts_offset(), e.socket_ip_id(), e.ip_id(A, 1), e.ip_id(A, 1),
            e.flow_label(A, B, 1, 2, 6), e.reuseport_hash(A, 1, B, 2, 6))


def test_same_seed_same_values() -> None:
    """Two generators with one seed produce identical sequences: replays are reproducible."""
    assert draws(Entropy(7)) == draws(Entropy(7))


def test_other_seed_other_values() -> None:
    assert draws(Entropy(7)) != draws(Entropy(8))


def test_ip_ids_to_one_destination_are_consecutive() -> None:
    """Like ip_idents_reserve within a jiffy: one destination, consecutive IDs (spec §9)."""
    e = Entropy(1)
    first, second = e.ip_id(A, 1), e.ip_id(A, 1)
    assert second == (first + 1) & 0xFFFF


def test_flow_hashes_are_stable_per_flow_and_differ_between_flows() -> None:
    """Flow label and reuseport hash depend only on the flow (spec §2.3, §9)."""
    e = Entropy(3)
    assert e.flow_label(A, B, 1, 2, 6) == e.flow_label(A, B, 1, 2, 6)
    assert e.flow_label(A, B, 1, 2, 6) != e.flow_label(A, B, 1, 3, 6)
    assert 0 <= e.flow_label(A, B, 1, 2, 6) < 1 << 20
    assert e.reuseport_hash(A, 1, B, 2, 6) == e.reuseport_hash(A, 1, B, 2, 6)
    assert 0 <= e.reuseport_hash(A, 1, B, 2, 6) < 1 << 32
