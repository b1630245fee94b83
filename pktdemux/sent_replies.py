"""The replies the emulation sent recently, so that the host's own packets in a
capture can be matched against them (:meth:`pktdemux.kernel.Kernel.transmit`).

Bounded by age (capture time) and by count, so memory stays constant on long
captures.  Packets are compared with their random fields masked
(:func:`pktdemux.matching.mask_random_fields`).
"""

from __future__ import annotations

import struct
from collections import deque

from .matching import mask_random_fields

#: A reply older than this (seconds of capture time) no longer matches.
MAX_AGE = 5.0
#: At most this many replies are kept.
MAX_COUNT = 4096

PeerKey = tuple[bytes, int, int, int]


def peer_key(packet: bytes) -> PeerKey | None:
    """(destination address, protocol, source port, destination port) of an
    IPv4/IPv6 packet; ports are 0 for protocols without them.  None when the
    packet cannot be parsed."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        dst, proto, l4 = packet[16:20], packet[9], (packet[0] & 0x0F) * 4
    elif version == 6 and len(packet) >= 40:
        dst, proto, l4 = packet[24:40], packet[6], 40
    else:
        return None
    if proto in (6, 17) and len(packet) >= l4 + 4:
        sport, dport = struct.unpack_from("!HH", packet, l4)
        return (dst, proto, sport, dport)
    return (dst, proto, 0, 0)


class _Entry:
    __slots__ = ("time", "masked", "packet", "peer", "used")

    def __init__(self, time: float, masked: bytes, packet: bytes, peer: PeerKey | None) -> None:
        self.time, self.masked, self.packet, self.peer, self.used = time, masked, packet, peer, False


class SentReplies:
    """Recent replies of the emulation, oldest first."""

    __slots__ = ("_order", "_by_mask", "max_age", "max_count")

    def __init__(self, max_age: float = MAX_AGE, max_count: int = MAX_COUNT) -> None:
        self._order: deque[_Entry] = deque()
        self._by_mask: dict[bytes, deque[_Entry]] = {}
        self.max_age = max_age
        self.max_count = max_count

    def __len__(self) -> int:
        return len(self._order)

    def record(self, replies: tuple[bytes, ...], now: float) -> None:
        """Remember ``replies``, sent at ``now`` (seconds since the epoch)."""
        for packet in replies:
            masked = mask_random_fields(packet)
            entry = _Entry(now, masked, packet, peer_key(packet))
            self._order.append(entry)
            self._by_mask.setdefault(masked, deque()).append(entry)
        self.prune(now)

    def prune(self, now: float) -> None:
        """Forget replies older than ``max_age`` or beyond ``max_count``."""
        order = self._order
        while order and (len(order) > self.max_count or now - order[0].time > self.max_age):
            entry = order.popleft()
            if not entry.used:
                same = self._by_mask[entry.masked]
                same.popleft()
                if not same:
                    del self._by_mask[entry.masked]

    def take(self, masked: bytes) -> bool:
        """Consume the oldest unused reply equal to ``masked`` (already masked);
        False when there is none."""
        same = self._by_mask.get(masked)
        if not same:
            return False
        entry = same.popleft()
        entry.used = True
        if not same:
            del self._by_mask[masked]
        return True

    def closest(self, packet: bytes) -> bytes | None:
        """The most recent unused reply to the same peer and ports (else to the
        same peer address), or None."""
        key = peer_key(packet)
        if key is None:
            return None
        fallback = None
        for entry in reversed(self._order):
            if entry.used or entry.peer is None:
                continue
            if entry.peer == key:
                return entry.packet
            if fallback is None and entry.peer[0] == key[0]:
                fallback = entry.packet
        return fallback
