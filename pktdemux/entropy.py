"""Seeded stand-ins for the values the kernel draws at random.

Linux takes the TCP ISN, the TCP timestamp offset, the IPv4 ID of ICMP
messages, the IPv6 flow label and the SO_REUSEPORT flow hash from secrets
drawn at boot (net/core/secure_seq.c, net/ipv4/route.c:__ip_select_ident,
include/net/ipv6.h:ip6_make_flowlabel, inet_ehashfn).  Those cannot be
reproduced outside the running kernel; here they come from one seed, so that a
replay with the same seed gives the same bytes.  Tests compare these fields
masked.
"""

from __future__ import annotations

import hashlib
import random


class Entropy:
    """Deterministic source of the kernel's random fields, from ``seed``."""

    __slots__ = ("_ip_ids", "_key", "_rng")

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._key = hashlib.blake2b(str(seed).encode(), digest_size=16).digest()
        self._ip_ids: dict[tuple[bytes, int], int] = {}

    def _hash32(self, *parts: bytes | int, salt: bytes) -> int:
        h = hashlib.blake2b(key=self._key, digest_size=4, person=salt)
        for part in parts:
            h.update(part if isinstance(part, bytes) else part.to_bytes(4, "big"))
        return int.from_bytes(h.digest(), "big")

    def isn(self) -> int:
        """A TCP initial sequence number (32 bits)."""
        return self._rng.getrandbits(32)

    def ts_offset(self) -> int:
        """A per-connection TCP timestamp offset (32 bits), added to the ms clock."""
        return self._rng.getrandbits(32)

    def socket_ip_id(self) -> int:
        """The random start of a full socket's IPv4 ID counter (16 bits)."""
        return self._rng.getrandbits(16)

    def ip_id(self, dst: bytes, proto: int) -> int:
        """The next IPv4 ID from the hashed per-destination generator.

        Consecutive packets to one destination get consecutive IDs, as the
        kernel's ip_idents_reserve does within one jiffy.
        """
        key = (dst, proto)
        ident = self._ip_ids.get(key)
        if ident is None:
            ident = self._hash32(dst, proto, salt=b"ipid")
        ident = (ident + 1) & 0xFFFF
        self._ip_ids[key] = ident
        return ident

    def flow_label(self, src: bytes, dst: bytes, sport: int, dport: int, proto: int) -> int:
        """The auto flow label (20 bits) of a flow: stable per 5-tuple, RFC 6437."""
        return self._hash32(src, dst, sport << 16 | dport, proto, salt=b"flowlbl") & 0xFFFFF

    def reuseport_hash(self, saddr: bytes, sport: int, daddr: bytes, dport: int, proto: int) -> int:
        """The 32-bit flow hash that picks an SO_REUSEPORT group member (inet_ehashfn)."""
        return self._hash32(daddr, dport, saddr, sport, proto, salt=b"reuseprt")

    def cookie_hash(self, *parts: bytes | int) -> int:
        """A keyed 32-bit hash for SYN cookies and their timestamp offset
        (stands in for net/ipv4/syncookies.c:cookie_hash with its boot secret)."""
        return self._hash32(*parts, salt=b"syncooki")

    def choice_range(self, n: int) -> int:
        """A uniform integer in ``range(n)`` (ephemeral-port offsets, ICMP credit)."""
        return self._rng.randrange(n)
