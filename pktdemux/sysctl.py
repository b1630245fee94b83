"""The sysctls the emulation reads, with the defaults of a fresh Linux 6.18
network namespace (spec §0.1, verified with probe p00).

Values are plain Python values: integers, or tuples of integers for the
multi-value sysctls (``net.ipv4.ip_local_port_range``, ``net.ipv4.tcp_rmem``).
Times are in the kernel's unit for that sysctl (milliseconds for the ICMP
rate limits, seconds for ``ipfrag_time`` and ``ip6frag_time``, bytes for
the fragment memory thresholds).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeAlias

#: A multi-value sysctl's value, e.g. ``net.ipv4.ip_local_port_range``.
Ints: TypeAlias = tuple[int, ...]
#: A sysctl's value.  (Module-level names, because :class:`Sysctls` has
#: methods called ``int`` and ``tuple`` that shadow the builtins in its body.)
Value: TypeAlias = int | Ints

#: name -> default value on Linux 6.18 (spec §0.1).
DEFAULTS: Mapping[str, Value] = MappingProxyType({
    "net.ipv4.ip_default_ttl": 64,
    "net.ipv6.conf.all.hop_limit": 64,
    "net.ipv4.icmp_ratelimit": 1000,
    "net.ipv4.icmp_ratemask": 0x1818,
    "net.ipv4.icmp_msgs_per_sec": 1000,
    "net.ipv4.icmp_msgs_burst": 50,
    "net.ipv6.icmp.ratelimit": 100,
    # a 256-bit map of ICMPv6 types, "0-1,3-127": every error but Packet Too Big
    "net.ipv6.icmp.ratemask": ((1 << 128) - 1) & ~(1 << 2),
    "net.ipv4.icmp_echo_ignore_all": 0,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1,
    "net.ipv6.icmp.echo_ignore_all": 0,
    "net.ipv6.icmp.echo_ignore_multicast": 0,
    "net.ipv6.icmp.echo_ignore_anycast": 0,
    "net.ipv4.icmp_errors_use_inbound_ifaddr": 0,
    "net.ipv4.ip_local_port_range": (32768, 60999),
    "net.ipv4.ip_unprivileged_port_start": 1024,
    "net.ipv4.ip_nonlocal_bind": 0,
    "net.ipv4.ip_autobind_reuse": 0,
    "net.ipv4.tcp_syncookies": 1,
    "net.ipv4.tcp_max_syn_backlog": 2048,
    "net.core.somaxconn": 4096,
    "net.ipv4.tcp_abort_on_overflow": 0,
    "net.ipv4.tcp_timestamps": 1,
    "net.ipv4.tcp_sack": 1,
    "net.ipv4.tcp_window_scaling": 1,
    "net.ipv4.tcp_ecn": 2,
    "net.ipv4.tcp_rmem": (4096, 131072, 33554432),
    "net.core.rmem_max": 212992,
    "net.ipv4.tcp_rfc1337": 0,
    "net.ipv4.tcp_invalid_ratelimit": 500,
    "net.ipv4.tcp_challenge_ack_limit": 2147483647,
    "net.ipv4.tcp_reflect_tos": 0,
    "net.ipv4.tcp_synack_retries": 5,
    "net.ipv4.tcp_syn_retries": 6,
    "net.ipv4.tcp_syn_linear_timeouts": 4,
    # retransmission of our FIN and the orphan's lifetime (pktdemux.tcp_rtx): seconds for
    # tcp_fin_timeout, microseconds for tcp_rto_min_us, milliseconds for tcp_rto_max_ms
    "net.ipv4.tcp_fin_timeout": 60,
    "net.ipv4.tcp_orphan_retries": 0,
    "net.ipv4.tcp_retries2": 15,
    "net.ipv4.tcp_rto_min_us": 200000,
    "net.ipv4.tcp_rto_max_ms": 120000,
    "net.ipv4.tcp_early_retrans": 3,
    # delayed ACKs (pktdemux.tcp_delack): replies within ato that make a connection interactive
    "net.ipv4.tcp_pingpong_thresh": 1,
    "net.ipv4.ipfrag_time": 30,
    "net.ipv6.ip6frag_time": 60,
    "net.ipv4.ipfrag_high_thresh": 4194304,
    "net.ipv6.ip6frag_high_thresh": 4194304,
    "net.ipv4.ipfrag_max_dist": 64,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.all.accept_local": 0,
    "net.ipv4.conf.all.route_localnet": 0,
    "net.ipv4.conf.all.accept_source_route": 0,
    "net.ipv4.ip_forward": 0,
    "net.ipv6.auto_flowlabels": 1,
    "net.ipv6.flowlabel_reflect": 0,
    "net.ipv6.bindv6only": 0,
    "net.ipv6.ip_nonlocal_bind": 0,
})


class Sysctls(Mapping[str, Value]):
    """A read-only set of sysctl values: the defaults, with overrides.

    Raises:
        KeyError: from the constructor, for a name the emulation does not know
            (so that a typo in a host file is reported, not ignored).
        ValueError: for a value of the wrong shape (an integer where a pair is
            expected, or the reverse).
    """

    __slots__ = ("_values",)

    def __init__(self, overrides: Mapping[str, object] | None = None) -> None:
        values = dict(DEFAULTS)
        for name, value in (overrides or {}).items():
            if name not in DEFAULTS:
                raise KeyError(name)
            values[name] = _coerce(name, value)
        self._values = values

    def __getitem__(self, name: str) -> Value:
        return self._values[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def int(self, name: str) -> int:
        """The value of a single-integer sysctl."""
        value = self._values[name]
        assert isinstance(value, int)
        return value

    def tuple(self, name: str) -> Ints:
        """The value of a multi-integer sysctl."""
        value = self._values[name]
        assert isinstance(value, tuple)
        return value

    def changed(self) -> dict[str, Value]:
        """The sysctls whose value differs from the Linux default."""
        return {k: v for k, v in self._values.items() if DEFAULTS[k] != v}


def _coerce(name: str, value: object) -> Value:
    default = DEFAULTS[name]
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ValueError(f"{name} takes {len(default)} integers, got {value!r}")
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} takes integers, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{name} takes an integer, got {value!r}")
    try:
        return int(value, 0) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"{name} takes an integer, got {value!r}") from None
