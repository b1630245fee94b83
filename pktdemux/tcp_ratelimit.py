"""The per-socket limit on replies to invalid segments (net/ipv4/tcp_input.c:
tcp_oow_rate_limited, __tcp_oow_rate_limited; sysctl
net.ipv4.tcp_invalid_ratelimit, milliseconds; spec §3.6).

Times are ``kernel.now`` (seconds since the epoch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .tcp_segment import SYN, Segment

if TYPE_CHECKING:
    from .kernel import Kernel
    from .tcp_tcb import Tcb


def limited(kernel: Kernel, tcb: Tcb) -> bool:
    """True when a reply went out less than tcp_invalid_ratelimit ago
    (__tcp_oow_rate_limited); otherwise records now and returns False."""
    last = tcb.last_oow_ack_time
    now = kernel.now
    if last is not None and 0 <= now - last < kernel.ip_sysctls.tcp_invalid_ratelimit / 1000:
        return True
    tcb.last_oow_ack_time = now
    return False


def oow_rate_limited(kernel: Kernel, tcb: Tcb, seg: Segment) -> bool:
    """tcp_oow_rate_limited: segments carrying data (without SYN) are never
    limited, since they cannot be part of an ACK loop."""
    if seg.end_seq != seg.seq and not seg.flags & SYN:
        return False
    return limited(kernel, tcb)
