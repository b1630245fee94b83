"""Timers compared with Linux (pktdemux.oracle): SYN-ACK retransmission of
a half-open request and its expiry, on the kernel's timeline
(tcp_synack_retries=1 keeps the wall time near 3.5 s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kernel_support import host_toml
from tcp_helpers import segment, tcp_header, tsval
from test_fragments_kernel import assert_same_timeline

TS_SYN = b"\x02\x04\x05\xb4\x04\x02\x08\x0a\x00\x00\x03\x09\x00\x00\x00\x00\x01\x03\x03\x07"
HOST = host_toml(
    [{"name": "web4", "label": "tcp://0.0.0.0:80", "listen": 8},
     {"name": "web6", "label": "tcp://[::]:80", "listen": 8, "v6only": True}],
    sysctls={"net.ipv4.tcp_synack_retries": 1},
)


@pytest.mark.kernel
def test_synack_retransmitted_once_then_the_request_expires(kernel_oracle: Callable[..., Any]) -> None:
    syn4 = segment("10.0.0.2", "10.0.0.1", 5000, 80, "S", seq=1000, options=TS_SYN)
    syn6 = segment("fd00::2", "fd00::1", 5000, 80, "S", seq=1000, options=TS_SYN)
    # the same SYNs after the request's 3 s lifetime start new requests
    packets = [(0.0, syn4), (0.01, syn6), (3.3, syn4), (3.31, syn6)]
    kernel, emulated, _ = assert_same_timeline(kernel_oracle, HOST, packets, settle=0.2)
    for timeline in (kernel, emulated):
        assert len(timeline) == 6
        for family in (4, 6):
            sent = sorted((t, p) for t, p in timeline if p[0] >> 4 == family)
            (t0, first), (t1, again), (_, renewed) = sent
            # same ISN and everything else; TSval moved on with the clock
            assert tcp_header(again)[2] == tcp_header(first)[2] != tcp_header(renewed)[2]
            assert abs(((tsval(again) - tsval(first)) & 0xFFFFFFFF) - (t1 - t0) * 1000) < 60
