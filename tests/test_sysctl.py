"""Sysctl defaults and overrides (spec §0.1)."""

from __future__ import annotations

import pytest

from pktdemux.sysctl import DEFAULTS, Sysctls


def test_defaults_are_linux_6_18() -> None:
    s = Sysctls()
    assert s.int("net.ipv4.icmp_ratelimit") == 1000
    assert s.int("net.ipv6.icmp.ratelimit") == 100
    assert s.tuple("net.ipv4.ip_local_port_range") == (32768, 60999)
    assert s.changed() == {}


@pytest.mark.parametrize(
    ("name", "value", "want"),
    [("net.ipv4.icmp_ratelimit", 0, 0), ("net.ipv4.icmp_ratemask", "0x1818", 0x1818),
     ("net.ipv4.ip_local_port_range", [40000, 40009], (40000, 40009)),
     ("net.ipv4.ip_local_port_range", "40000 40009", (40000, 40009))],
)
def test_overrides_are_coerced(name: str, value: object, want: object) -> None:
    s = Sysctls({name: value})
    assert s[name] == want
    assert (name in s.changed()) is (DEFAULTS[name] != want)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [("net.ipv4.icmp_ratelimitt", 1, KeyError), ("net.ipv4.icmp_ratelimit", "fast", ValueError),
     ("net.ipv4.ip_local_port_range", 5, ValueError), ("net.ipv4.icmp_ratelimit", True, ValueError)],
    ids=["unknown-name", "not-an-integer", "pair-expected", "bool-is-not-int"],
)
def test_bad_overrides_are_refused(name: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        Sysctls({name: value})
