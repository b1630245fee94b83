"""SO_REUSEPORT group order and selection (spec §2.3)."""

from __future__ import annotations

import pytest

from pktdemux.reuseport import ReuseportGroup, same_group
from pktdemux.sockets import Proto, Socket, TcpState

ANY4 = bytes(4)


def member(**kw: object) -> Socket:
    fields: dict[str, object] = dict(proto=Proto.TCP, family=4, local_addr=ANY4, local_port=130, reuseport=True)
    fields.update(kw)
    return Socket(**fields)  # type: ignore[arg-type]


def test_selection_is_reciprocal_scale_over_listen_order() -> None:
    """index = (hash × n) >> 32 over members in the order they joined."""
    group = ReuseportGroup()
    socks = [member() for _ in range(4)]
    for s in socks:
        group.add(s)
    for h, want in [(0, 0), (0x3FFFFFFF, 0), (0x40000000, 1), (0xBFFFFFFF, 2), (0xFFFFFFFF, 3)]:
        assert group.select(h) is socks[want]


def test_doubling_the_group_keeps_the_monotonic_split() -> None:
    """p04b: for every flow, index with 4 members // 2 == index with 2 members."""
    two, four = ReuseportGroup(), ReuseportGroup()
    socks = [member() for _ in range(4)]
    for s in socks[:2]:
        two.add(s)
    for s in socks:
        four.add(s)
    for h in range(0, 1 << 32, 0x01234567):
        assert socks.index(four.select(h)) // 2 == socks.index(two.select(h))


def test_removal_moves_the_last_member_into_the_gap() -> None:
    """__reuseport_detach_sock: closing member 0 of [a, b, c] leaves [c, b]."""
    group = ReuseportGroup()
    a, b, c = member(), member(), member()
    for s in (a, b, c):
        group.add(s)
    group.remove(a)
    assert group.members == [c, b]


def test_connected_members_are_skipped() -> None:
    """A connected (ESTABLISHED) UDP member is passed over for the next one."""
    group = ReuseportGroup()
    a, b = member(proto=Proto.UDP), member(proto=Proto.UDP, state=TcpState.ESTABLISHED)
    group.add(a)
    group.add(b)
    assert group.select(0xFFFFFFFF) is a


@pytest.mark.parametrize(
    ("change", "joins"),
    [({}, True), ({"uid": 1000}, False), ({"device": "lo"}, False), ({"reuseport": False}, False),
     ({"local_addr": bytes([10, 0, 0, 1])}, False), ({"proto": Proto.UDP}, False)],
    ids=["same", "other-uid", "other-device", "no-reuseport", "other-address", "other-proto"],
)
def test_group_membership_rules(change: dict[str, object], joins: bool) -> None:
    assert same_group(member(), member(**change)) is joins
