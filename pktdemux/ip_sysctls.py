"""The per-packet sysctl values as plain attributes, read once per sysctl set.

The receive path reads a few sysctls for every packet; a
:class:`~pktdemux.sysctl.Sysctls` lookup is a Mapping call, an attribute is
not.  ``Kernel`` rebuilds this snapshot whenever its ``sysctls`` are
replaced (a ``Sysctls`` is read-only, so a snapshot never goes stale).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sysctl import Sysctls

#: attribute -> sysctl name; on/off switches become booleans
_SWITCHES = {
    "route_localnet": "net.ipv4.conf.all.route_localnet",
    "accept_local": "net.ipv4.conf.all.accept_local",
    "accept_source_route": "net.ipv4.conf.all.accept_source_route",
    "icmp_echo_ignore_all": "net.ipv4.icmp_echo_ignore_all",
    "icmp_echo_ignore_broadcasts": "net.ipv4.icmp_echo_ignore_broadcasts",
    "icmp6_echo_ignore_all": "net.ipv6.icmp.echo_ignore_all",
    "icmp6_echo_ignore_multicast": "net.ipv6.icmp.echo_ignore_multicast",
    "auto_flowlabels": "net.ipv6.auto_flowlabels",
}
_INTEGERS = {
    "ip_default_ttl": "net.ipv4.ip_default_ttl",
    "hop_limit": "net.ipv6.conf.all.hop_limit",
    "icmp_ratelimit": "net.ipv4.icmp_ratelimit",
    "icmp_ratemask": "net.ipv4.icmp_ratemask",
    "icmp_msgs_per_sec": "net.ipv4.icmp_msgs_per_sec",
    "icmp_msgs_burst": "net.ipv4.icmp_msgs_burst",
    "icmp6_ratelimit": "net.ipv6.icmp.ratelimit",
    "icmp6_ratemask": "net.ipv6.icmp.ratemask",
    "flowlabel_reflect": "net.ipv6.flowlabel_reflect",
    # TCP (pktdemux.tcp_*): switches and modes kept as the integers they are
    "tcp_syncookies": "net.ipv4.tcp_syncookies",
    "tcp_max_syn_backlog": "net.ipv4.tcp_max_syn_backlog",
    "somaxconn": "net.core.somaxconn",
    "tcp_abort_on_overflow": "net.ipv4.tcp_abort_on_overflow",
    "tcp_timestamps": "net.ipv4.tcp_timestamps",
    "tcp_sack": "net.ipv4.tcp_sack",
    "tcp_window_scaling": "net.ipv4.tcp_window_scaling",
    "tcp_ecn": "net.ipv4.tcp_ecn",
    "rmem_max": "net.core.rmem_max",
    "tcp_rfc1337": "net.ipv4.tcp_rfc1337",
    "tcp_invalid_ratelimit": "net.ipv4.tcp_invalid_ratelimit",
    "tcp_reflect_tos": "net.ipv4.tcp_reflect_tos",
    "tcp_synack_retries": "net.ipv4.tcp_synack_retries",
    "tcp_syn_retries": "net.ipv4.tcp_syn_retries",
    "tcp_syn_linear_timeouts": "net.ipv4.tcp_syn_linear_timeouts",
    "tcp_fin_timeout": "net.ipv4.tcp_fin_timeout",
    "tcp_orphan_retries": "net.ipv4.tcp_orphan_retries",
    "tcp_retries2": "net.ipv4.tcp_retries2",
    "tcp_rto_min_us": "net.ipv4.tcp_rto_min_us",
    "tcp_rto_max_ms": "net.ipv4.tcp_rto_max_ms",
    "tcp_early_retrans": "net.ipv4.tcp_early_retrans",
    "tcp_pingpong_thresh": "net.ipv4.tcp_pingpong_thresh",
}
_TUPLES = {
    "tcp_rmem": "net.ipv4.tcp_rmem",
}


class IpSysctls:
    """The sysctls of the IPv4/IPv6, UDP, ICMP and TCP paths.

    Attributes are named after the sysctl (see ``_SWITCHES`` / ``_INTEGERS``
    / ``_TUPLES`` for the exact names; meanings and Linux 6.18 defaults in
    :mod:`pktdemux.sysctl`): booleans for the IP switches, integers
    otherwise (milliseconds for ``icmp_ratelimit`` / ``icmp6_ratelimit`` /
    ``tcp_invalid_ratelimit``), a tuple of bytes for ``tcp_rmem``.
    """

    __slots__ = tuple(_SWITCHES) + tuple(_INTEGERS) + tuple(_TUPLES)

    route_localnet: bool
    accept_local: bool
    accept_source_route: bool
    icmp_echo_ignore_all: bool
    icmp_echo_ignore_broadcasts: bool
    icmp6_echo_ignore_all: bool
    icmp6_echo_ignore_multicast: bool
    auto_flowlabels: bool
    ip_default_ttl: int
    hop_limit: int
    icmp_ratelimit: int
    icmp_ratemask: int
    icmp_msgs_per_sec: int
    icmp_msgs_burst: int
    icmp6_ratelimit: int
    icmp6_ratemask: int
    flowlabel_reflect: int
    tcp_syncookies: int
    tcp_max_syn_backlog: int
    somaxconn: int
    tcp_abort_on_overflow: int
    tcp_timestamps: int
    tcp_sack: int
    tcp_window_scaling: int
    tcp_ecn: int
    rmem_max: int
    tcp_rfc1337: int
    tcp_invalid_ratelimit: int
    tcp_reflect_tos: int
    tcp_synack_retries: int
    tcp_syn_retries: int
    tcp_syn_linear_timeouts: int
    tcp_fin_timeout: int
    tcp_orphan_retries: int
    tcp_retries2: int
    tcp_rto_min_us: int
    tcp_rto_max_ms: int
    tcp_early_retrans: int
    tcp_pingpong_thresh: int
    tcp_rmem: tuple[int, ...]

    def __init__(self, sysctls: Sysctls) -> None:
        for attr, name in _SWITCHES.items():
            setattr(self, attr, bool(sysctls.int(name)))
        for attr, name in _INTEGERS.items():
            setattr(self, attr, sysctls.int(name))
        for attr, name in _TUPLES.items():
            setattr(self, attr, sysctls.tuple(name))
