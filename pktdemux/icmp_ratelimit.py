"""The two ICMP rate limiters of Linux (spec §5.4), sans I/O.

* The global bucket, one per network namespace and shared by IPv4 and IPv6
  (net/ipv4/icmp.c: icmp_global_allow, icmp_global_consume).
* The per-destination token bucket (net/ipv4/inetpeer.c:
  inet_peer_xrlim_allow), keyed by the ICMP message's destination address.

Time is the kernel clock (seconds since the epoch) converted to jiffies at
HZ=1000, i.e. milliseconds, as the kernel counts.  The random 0–2 credit
consumption comes from the kernel's seeded :class:`~pktdemux.entropy.Entropy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .entropy import Entropy

HZ = 1000
#: tokens cap at this many message costs (XRLIM_BURST_FACTOR)
XRLIM_BURST_FACTOR = 6
#: a new peer entry's last update lies this far in the past (inet_getpeer):
#: it starts with a full bucket
NEW_PEER_AGE = 60 * HZ
#: the global bucket refills at most every HZ/50 jiffies
GLOBAL_MIN_REFILL = HZ // 50

NR_ICMP_TYPES = 18
ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMPV6_MSG_MAX = 255


def jiffies(now: float) -> int:
    """Seconds since the epoch as jiffies (ms, HZ=1000), via whole microseconds."""
    return round(now * 1_000_000) * HZ // 1_000_000


def icmpv4_limited(type_: int, code: int, ratemask: int) -> bool:
    """Whether an ICMPv4 type/code is rate limited (icmpv4_mask_allow negated).

    Types above 18 and fragmentation-needed are never limited; the others
    when their bit is set in net.ipv4.icmp_ratemask.
    """
    if type_ > NR_ICMP_TYPES:
        return False
    if type_ == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
        return False
    return bool(ratemask >> type_ & 1)


def icmpv6_limited(type_: int, ratemask: int) -> bool:
    """Whether an ICMPv6 type is rate limited (icmpv6_mask_allow negated):
    its bit is set in net.ipv6.icmp.ratemask (a 256-bit map)."""
    return type_ <= ICMPV6_MSG_MAX and bool(ratemask >> type_ & 1)


class IcmpRateLimiter:
    """Global and per-destination ICMP buckets of one network namespace.

    Args:
        entropy: draws the 0–2 credits each sent limited message consumes.
    """

    __slots__ = ("_entropy", "_peers", "_stamp", "credit")

    def __init__(self, entropy: Entropy) -> None:
        self._entropy = entropy
        #: global credit (may go negative after consumption, as in the kernel)
        self.credit = 0
        self._stamp: int | None = None
        #: destination address -> (tokens, last update in jiffies)
        self._peers: dict[bytes, tuple[int, int]] = {}

    def global_allow(self, now_j: int, msgs_per_sec: int, burst: int) -> bool:
        """icmp_global_allow: True while credit remains or after a refill.

        Refills credit by msgs_per_sec × elapsed (elapsed capped at 1 s,
        at least 20 ms since the last refill), capped at ``burst``.
        """
        if self.credit > 0:
            return True
        delta = HZ if self._stamp is None else min(now_j - self._stamp, HZ)
        if delta < GLOBAL_MIN_REFILL:
            return False
        incr = msgs_per_sec * delta // HZ
        if not incr:
            return False
        self._stamp = now_j
        self.credit = min(self.credit + incr, burst)
        return True

    def global_consume(self) -> None:
        """icmp_global_consume: subtract a uniform random 0, 1 or 2 credits."""
        self.credit -= self._entropy.choice_range(3)

    def peer_allow(self, dst: bytes, now_j: int, timeout: int) -> bool:
        """inet_peer_xrlim_allow for the peer ``dst`` with cost ``timeout`` (ms).

        Tokens grow by elapsed jiffies up to 6 × timeout; a message takes
        ``timeout`` tokens.  A new peer starts full.
        """
        tokens, last = self._peers.get(dst, (0, now_j - NEW_PEER_AGE))
        delta = now_j - last
        if delta:
            last = now_j
            tokens = min(tokens + delta, XRLIM_BURST_FACTOR * timeout)
        allowed = tokens >= timeout
        if allowed:
            tokens -= timeout
        self._peers[dst] = (tokens, last)
        return allowed
