"""The replies the emulation sent recently, so that the host's own packets in a
capture can be matched against them (:meth:`pktdemux.kernel.Kernel.transmit`).

Bounded by age (capture time) and by count, so memory stays constant on long
captures.  Each reply is masked once when recorded
(:func:`pktdemux.matching.mask_random_fields`) and indexed by its masked
bytes, so matching a host packet is one dict lookup; a second index by peer
serves :meth:`SentReplies.closest`, which only a mismatch needs.  Expiry pops
the oldest entries from a deque, whose order both indexes share.
"""

from __future__ import annotations

from collections import deque

from .matching import mask_random_fields

#: A reply older than this (seconds of capture time) no longer matches.
MAX_AGE = 5.0
#: At most this many replies are kept.
MAX_COUNT = 4096

PeerKey = tuple[bytes, int, bytes]


def peer_key(packet: bytes) -> PeerKey | None:
    """(destination address, protocol, the 4 port bytes) of an IPv4/IPv6
    packet; the port bytes are empty for protocols without ports.  None when
    the packet cannot be parsed."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        dst, proto, l4 = packet[16:20], packet[9], (packet[0] & 0x0F) * 4
    elif version == 6 and len(packet) >= 40:
        dst, proto, l4 = packet[24:40], packet[6], 40
    else:
        return None
    ports = packet[l4:l4 + 4] if proto in (6, 17) else b""
    return (dst, proto, ports)


class _Entry:
    __slots__ = ("masked", "packet", "peer", "time", "used")

    def __init__(self, time: float, packet: bytes, peer: PeerKey | None, masked: bytes) -> None:
        self.time, self.packet, self.peer, self.masked = time, packet, peer, masked
        self.used = False


class SentReplies:
    """Recent replies of the emulation, oldest first, indexed by masked bytes and by peer."""

    __slots__ = ("_by_mask", "_by_peer", "_order", "max_age", "max_count")

    def __init__(self, max_age: float = MAX_AGE, max_count: int = MAX_COUNT) -> None:
        self._order: deque[_Entry] = deque()
        self._by_mask: dict[bytes, deque[_Entry]] = {}
        self._by_peer: dict[PeerKey | None, deque[_Entry]] = {}
        self.max_age = max_age
        self.max_count = max_count

    def __len__(self) -> int:
        return len(self._order)

    def record(self, replies: tuple[bytes, ...], now: float) -> None:
        """Remember ``replies``, sent at ``now`` (seconds since the epoch)."""
        order = self._order
        by_mask = self._by_mask
        by_peer = self._by_peer
        for packet in replies:
            masked = mask_random_fields(packet)
            entry = _Entry(now, packet, peer_key(packet), masked)
            order.append(entry)
            same = by_mask.get(masked)
            if same is None:
                by_mask[masked] = same = deque()
            same.append(entry)
            same = by_peer.get(entry.peer)
            if same is None:
                by_peer[entry.peer] = same = deque()
            same.append(entry)
        if len(order) > self.max_count or now - order[0].time > self.max_age:
            self.prune(now)

    def prune(self, now: float) -> None:
        """Forget replies older than ``max_age`` or beyond ``max_count``."""
        order = self._order
        if not order or (len(order) <= self.max_count and now - order[0].time <= self.max_age):
            return
        while order and (len(order) > self.max_count or now - order[0].time > self.max_age):
            entry = order.popleft()
            # Both indexes keep time order, so the oldest entry is at their head.
            _pop_head(self._by_mask, entry.masked)
            _pop_head(self._by_peer, entry.peer)

    def take(self, packet: bytes, masked: bytes | None = None) -> bool:
        """Consume the oldest unused reply equal to ``packet`` once masked;
        False when there is none.  ``masked`` may give the mask already made."""
        same = self._by_mask.get(mask_random_fields(packet) if masked is None else masked)
        if same:
            for entry in same:
                if not entry.used:
                    entry.used = True
                    return True
        return False

    def closest(self, packet: bytes) -> bytes | None:
        """The most recent unused reply to the same peer and ports (else to the
        same peer address), or None."""
        key = peer_key(packet)
        if key is None:
            return None
        same = self._by_peer.get(key)
        for entry in reversed(same or ()):
            if not entry.used:
                return entry.packet
        for entry in reversed(self._order):
            if not entry.used and entry.peer is not None and entry.peer[0] == key[0]:
                return entry.packet
        return None


def _pop_head(index: dict, key: object) -> None:  # type: ignore[type-arg]
    same = index[key]
    same.popleft()
    if not same:
        del index[key]
