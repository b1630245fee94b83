"""IPv4 and IPv6 fragment reassembly before transport demux.

Sources: net/ipv4/ip_fragment.c (ip_defrag, ip_frag_queue, ip_frag_reasm,
ip_expire), net/ipv6/reassembly.c (ipv6_frag_rcv, ip6_frag_queue,
ip6_frag_reasm, ip6_frag_expire), net/ipv4/inet_fragment.c
(inet_frag_find, inet_frag_queue_insert), include/net/inet_frag.h; spec §1.1
#8, §1.2; RFC 791, RFC 8200 §4.5, RFC 5722.  Checked on Linux 6.18
(tests/test_fragments_kernel.py).

Rules, as Linux 6.x applies them:

* Queues are keyed as the kernel keys them: IPv4 by (source, destination,
  ID, protocol) and the VRF (none is modelled, so the device is not part of
  the key); IPv6 by (source, destination, ID), plus the ingress device when
  the destination is link-local or multicast.
* A queue lives ``net.ipv4.ipfrag_time`` (30 s) / ``net.ipv6.ip6frag_time``
  (60 s) from its first fragment; later fragments do not extend it.  When it
  expires and the offset-0 fragment had arrived, ICMP Time Exceeded 11/1
  (IPv4) or ICMPv6 3/1 (IPv6) quotes that fragment as received.
* A fragment wholly inside a run of fragments already held is a duplicate:
  dropped with DUP_FRAG, the queue kept.  Any other overlap discards the
  whole queue (RFC 5722; for IPv4 too since Linux 4.19).  So does a
  zero-length fragment, a last fragment that disagrees with the length
  already known, or data past the last fragment's end.
* A non-last IPv4 fragment's length is cut down to a multiple of 8; an IPv6
  one that is not a multiple of 8 gets ICMPv6 4/0 pointing at the payload
  length, and an IPv6 fragment ending past 65535 bytes gets 4/0 pointing at
  the fragment offset.  An IPv6 first fragment without the whole upper-layer
  header (TCP 20, UDP 8, ICMPv6 8 bytes) gets 4/3 with pointer 0 (RFC 8200
  §4.5) and is not queued.
* The datagram is rebuilt from the offset-0 fragment's header: IPv4 total
  length and checksum recomputed, fragment field 0 (DF when the largest
  fragment carried DF); IPv6 fragment header removed.  An IPv4 datagram
  above 65535 bytes is discarded (ReasmFails).  Mixing ECN-capable and
  not-ECN-capable fragments discards the datagram; CE on any fragment is
  carried into the rebuilt header (ip_frag_ecn_table).
* ``net.ipv4.ipfrag_max_dist`` (64): when more than that many fragments from
  the same source arrive between two fragments of one queue, the queue's
  fragments are thrown away (FRAG_TOO_FAR) and it starts again (IPv4 only).
* Memory (``net.ipv4.ipfrag_high_thresh``, ``net.ipv6.ip6frag_high_thresh``,
  4 MiB): modelled coarsely, each held fragment costing its length plus
  :data:`SKB_OVERHEAD` bytes and each queue :data:`QUEUE_OVERHEAD`; above the
  threshold no fragment is taken, as inet_frag_find returns nothing.

Verdicts: a fragment that is only queued is a drop with FRAG_PENDING (a
pktdemux reason: the kernel holds the buffer, nothing is freed yet); the
fragment that completes the datagram gets the datagram's verdict; DUP_FRAG
for a duplicate; NOT_SPECIFIED (the kernel's reason for these paths) when
the fragment discards its queue or is refused.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .dropreason import DropReason
from .packet import IpPacket
from .verdict import Verdict, drop
from .wire import checksum

if TYPE_CHECKING:
    from .kernel import Kernel
    from .timers import Timer

#: Coarse truesize of one held fragment beyond its bytes (sk_buff + shared info).
SKB_OVERHEAD = 768
#: Coarse size of one queue (struct ipq / struct frag_queue).
QUEUE_OVERHEAD = 256
#: Largest IPv4 datagram / IPv6 payload (IP_MAX_MTU, IPV6_MAXPLEN).
MAX_DATAGRAM = 65535

_MF = 0x2000
_DF = 0x4000
_ECN_NOT_ECT, _ECN_ECT1, _ECN_ECT0, _ECN_CE = 1, 2, 4, 8  # IPFRAG_ECN_* bits
ICMPV6_HDR_INCOMP = 3
_V6_PAYLOAD_LEN_FIELD = 4
#: bytes of the upper-layer header a first IPv6 fragment must hold (ipv6frag_thdr_truncated)
_V6_UPPER_HEADER = {6: 20, 17: 8, 58: 8}
HANDLER4 = "ip defrag"
HANDLER6 = "ip6 defrag"

QueueKey = tuple[bytes, bytes, int, int, str]


@dataclass(slots=True)
class FragQueue:
    """One datagram being reassembled (struct inet_frag_queue).

    Offsets and lengths are bytes of the fragmentable part.  ``runs`` are the
    kernel's fragment runs: [start, end) ranges, each grown only by fragments
    arriving right after its end, sorted and disjoint; ``pieces`` maps offset
    to data.
    """

    key: QueueKey
    version: int
    created: float
    timer: Timer | None = None
    length: int = 0
    meat: int = 0
    first_in: bool = False
    last_in: bool = False
    runs: list[list[int]] = field(default_factory=list)
    pieces: dict[int, bytes] = field(default_factory=dict)
    first: IpPacket | None = None
    device: str = ""
    ecn: int = 0
    max_size: int = 0
    max_df_size: int = 0
    mem: int = QUEUE_OVERHEAD
    rid: int = 0


class Reassembly:
    """Every fragment queue of one kernel, both families (``kernel.frags``).

    Attributes:
        queues: key → queue.
        mem: bytes charged to the fragment memory, per family (4 and 6).
    """

    __slots__ = ("_peers", "mem", "queues")

    def __init__(self) -> None:
        self.queues: dict[QueueKey, FragQueue] = {}
        self.mem = {4: 0, 6: 0}
        #: IPv4 source → [fragments counted (inet_peer rid), queues open]
        self._peers: dict[bytes, list[int]] = {}

    def __len__(self) -> int:
        return len(self.queues)

    def kill(self, q: FragQueue) -> None:
        """inet_frag_kill: unhash the queue, stop its timer, free its memory."""
        if self.queues.get(q.key) is q:
            del self.queues[q.key]
            self.mem[q.version] -= q.mem
            if q.timer is not None:
                q.timer.cancel()
            if q.version == 4:
                peer = self._peers.get(q.key[0])
                if peer is not None:
                    peer[1] -= 1
                    if peer[1] <= 0:
                        del self._peers[q.key[0]]


# -- shared queue logic ----------------------------------------------------------

_DUP, _OVERLAP, _OK = "duplicate", "overlap", "ok"


def _insert(q: FragQueue, offset: int, end: int) -> str:
    """inet_frag_queue_insert: where [offset, end) goes among the runs."""
    runs = q.runs
    if not runs:
        runs.append([offset, end])
        return _OK
    tail = runs[-1]
    if tail[1] < end:
        if offset < tail[1]:
            return _OVERLAP
        if offset == tail[1]:
            tail[1] = end
        else:
            runs.append([offset, end])
        return _OK
    for i, (start, stop) in enumerate(runs):
        if end <= start:
            runs.insert(i, [offset, end])
            return _OK
        if offset >= stop:
            continue
        return _DUP if start <= offset and end <= stop else _OVERLAP
    runs.append([offset, end])  # unreachable: the tail ends at or after ``end``
    return _OK


def _check_end(q: FragQueue, end: int, more: bool) -> str | None:
    """The length checks of ip_frag_queue / ip6_frag_queue; a reason to
    discard the queue, or None.  Updates the known length."""
    if not more:
        if end < q.length or (q.last_in and end != q.length):
            return f"last fragment ends at {end} but the datagram is {q.length} bytes"
        q.last_in = True
        q.length = end
    elif end > q.length:
        if q.last_in:
            return f"fragment ends at {end}, past the last fragment's end {q.length}"
        q.length = end
    return None


def _ecn_bit(tos: int) -> int:
    return (_ECN_NOT_ECT, _ECN_ECT1, _ECN_ECT0, _ECN_CE)[tos & 3]


def _reasm_ecn(bits: int) -> int | None:
    """ip_frag_ecn_table: the ECN value OR-ed into the rebuilt header, None
    for an invalid mix (not-ECT with ECT or CE)."""
    if bits & _ECN_NOT_ECT and bits & ~_ECN_NOT_ECT:
        return None
    if bits & _ECN_CE and bits & (_ECN_ECT0 | _ECN_ECT1):
        return 3
    return 0


def _queue_for(kernel: Kernel, key: QueueKey, version: int) -> FragQueue | None:
    """inet_frag_find: the queue for ``key``, created with its timer; None
    when the fragment memory is above the high threshold."""
    frags = kernel.frags
    name = "net.ipv4.ipfrag_high_thresh" if version == 4 else "net.ipv6.ip6frag_high_thresh"
    high = kernel.sysctls.int(name)
    if not high or frags.mem[version] > high:
        return None
    q = frags.queues.get(key)
    if q is not None:
        return q
    q = FragQueue(key, version, kernel.now)
    frags.queues[key] = q
    frags.mem[version] += q.mem
    timeout = kernel.sysctls.int("net.ipv4.ipfrag_time" if version == 4 else "net.ipv6.ip6frag_time")
    q.timer = kernel.timers.arm(kernel.now + timeout, "ip_expire" if version == 4 else "ip6_frag_expire",
                                lambda now: _expire(kernel, q))
    if version == 4:
        peer = frags._peers.setdefault(key[0], [0, 0])
        peer[1] += 1
    return q


def _add(kernel: Kernel, q: FragQueue, pkt: IpPacket, offset: int, end: int, data: bytes,
         fragsize: int, df: bool) -> None:
    """Account a fragment that was inserted (ip_frag_queue after the insert)."""
    q.pieces[offset] = data
    q.device = pkt.device
    q.meat += len(data)
    q.ecn |= _ecn_bit(pkt.tos)
    cost = len(data) + SKB_OVERHEAD
    q.mem += cost
    kernel.frags.mem[q.version] += cost
    if offset == 0:
        q.first_in = True
        q.first = pkt
    q.max_size = max(q.max_size, fragsize)
    if df:
        q.max_df_size = max(q.max_df_size, fragsize)


def _complete(q: FragQueue) -> bool:
    return q.first_in and q.last_in and q.meat == q.length


def _data(q: FragQueue) -> bytes:
    return b"".join(q.pieces[o] for o in sorted(q.pieces))


def _pending(q: FragQueue, handler: str, note: str = "") -> Verdict:
    held = len(q.pieces)
    what = f"fragment held for reassembly ({held} held, {q.meat} of "
    what += f"{q.length} bytes)" if q.last_in else "an unknown length)"
    return drop(DropReason.FRAG_PENDING, what + (f"; {note}" if note else ""), handler=handler)


def _discard(kernel: Kernel, q: FragQueue, handler: str, why: str) -> Verdict:
    kernel.frags.kill(q)
    return drop(DropReason.NOT_SPECIFIED, f"{why}: the whole queue is discarded (ReasmFails)", handler=handler)


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A datagram rebuilt from its fragments, ready for the protocol handler.

    Attributes:
        datagram: the whole datagram (``raw`` from the rebuilt IP header).
        fragments: how many fragments it was made of.
    """

    datagram: IpPacket
    fragments: int

    def annotate(self, verdict: Verdict) -> Verdict:
        """The datagram's verdict, its note saying it was reassembled."""
        note = f"reassembled from {self.fragments} fragments ({len(self.datagram.raw)} bytes)"
        return dataclasses.replace(verdict, note=f"{note}; {verdict.note}" if verdict.note else note)


def _expire(kernel: Kernel, q: FragQueue) -> list[bytes]:
    """ip_expire / ip6_frag_expire: the queue dies; ICMP 11/1 or ICMPv6 3/1
    quoting the offset-0 fragment when it had arrived."""
    from . import icmp

    kernel.frags.kill(q)
    kernel.stats[DropReason.FRAG_REASM_TIMEOUT.value] += len(q.pieces)
    first = q.first
    if not q.first_in or first is None:
        return []
    first.device = q.device  # the error is routed as for the last fragment's device (qp->iif)
    if q.version == 4:
        reply = icmp.send_error4(kernel, first, icmp.ICMP_TIME_EXCEEDED, icmp.ICMP_EXC_FRAGTIME)
    else:
        reply = icmp.send_error6(kernel, first, icmp.ICMPV6_TIME_EXCEED, 1)
    return [] if reply is None else [reply]


# -- IPv4 --------------------------------------------------------------------

def _too_far(kernel: Kernel, q: FragQueue) -> bool:
    """ip_frag_too_far: more than ipfrag_max_dist fragments from this source
    since this queue's previous fragment."""
    max_dist = kernel.sysctls.int("net.ipv4.ipfrag_max_dist")
    if not max_dist:
        return False
    peer = kernel.frags._peers.setdefault(q.key[0], [0, 1])
    peer[0] += 1
    start, q.rid = q.rid, peer[0]
    return bool(q.pieces) and q.rid - start > max_dist


def _reinit(kernel: Kernel, q: FragQueue) -> int:
    """ip_frag_reinit: drop the held fragments (FRAG_TOO_FAR), restart the timer."""
    dropped = len(q.pieces)
    kernel.frags.mem[4] -= q.mem - QUEUE_OVERHEAD
    kernel.stats[DropReason.FRAG_TOO_FAR.value] += dropped
    q.mem = QUEUE_OVERHEAD
    q.pieces.clear()
    q.runs.clear()
    q.first_in = q.last_in = False
    q.length = q.meat = 0
    q.first = None
    if q.timer is not None:
        q.timer.cancel()
        q.timer = kernel.timers.arm(kernel.now + kernel.sysctls.int("net.ipv4.ipfrag_time"), "ip_expire",
                                    lambda now: _expire(kernel, q))
    return dropped


def defrag4(kernel: Kernel, pkt: IpPacket) -> Verdict | Reassembled:
    """ip_defrag for one IPv4 fragment (``pkt.raw`` as received, header
    checked, options compiled).

    Returns:
        The reassembled datagram (:class:`Reassembled`: header rebuilt,
        ``l4_offset`` after the first fragment's header) when this fragment
        completes it; otherwise the fragment's verdict (FRAG_PENDING,
        DUP_FRAG, NOT_SPECIFIED).  Never raises.
    """
    raw = pkt.raw
    key = (pkt.src, pkt.dst, pkt.ip_id, pkt.proto, "")
    q = _queue_for(kernel, key, 4)
    if q is None:
        return drop(DropReason.NOT_SPECIFIED, "fragment memory above ipfrag_high_thresh: fragment refused",
                    handler=HANDLER4)
    note = ""
    if _too_far(kernel, q):
        note = f"ipfrag_max_dist exceeded: {_reinit(kernel, q)} held fragments dropped (FRAG_TOO_FAR)"
    flags = raw[6] << 8 | raw[7]
    ihl = pkt.l4_offset
    offset = pkt.frag_offset
    end = offset + len(raw) - ihl
    more = bool(flags & _MF)
    if more:
        end &= ~7
    why = _check_end(q, end, more)
    if why is None and end == offset:
        why = "fragment without data"
    if why is not None:
        return _discard(kernel, q, HANDLER4, why)
    where = _insert(q, offset, end)
    if where == _DUP:
        return drop(DropReason.DUP_FRAG, f"duplicate of bytes {offset}-{end} already held", handler=HANDLER4)
    if where == _OVERLAP:
        return _discard(kernel, q, HANDLER4, f"fragment {offset}-{end} overlaps one held (ReasmOverlaps)")
    _add(kernel, q, pkt, offset, end, raw[ihl:ihl + end - offset], end - offset + ihl, bool(flags & _DF))
    if not _complete(q):
        return _pending(q, HANDLER4, note)
    return _reasm4(kernel, q, pkt)


def _reasm4(kernel: Kernel, q: FragQueue, last: IpPacket) -> Verdict | Reassembled:
    """ip_frag_reasm: the datagram from the offset-0 fragment's header and
    every fragment's data."""
    kernel.frags.kill(q)
    first = q.first
    assert first is not None
    ecn = _reasm_ecn(q.ecn)
    if ecn is None:
        return drop(DropReason.NOT_SPECIFIED, "fragments mix ECN-capable and not-ECT marks: datagram discarded",
                    handler=HANDLER4)
    ihl = first.l4_offset
    size = ihl + q.length
    if size > MAX_DATAGRAM:
        return drop(DropReason.NOT_SPECIFIED, f"oversized IP packet: {size} bytes reassembled (ReasmFails)",
                    handler=HANDLER4)
    header = bytearray(first.raw[:ihl])
    tos = header[1] | ecn
    header[1] = tos
    struct.pack_into("!HHH", header, 2, size, header[4] << 8 | header[5],
                     _DF if q.max_df_size == q.max_size else 0)
    header[10:12] = b"\0\0"
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    datagram = dataclasses.replace(first, raw=bytes(header) + _data(q), tos=tos, device=last.device,
                                   route=last.route, frag_offset=0)
    return Reassembled(datagram, len(q.pieces))


# -- IPv6 --------------------------------------------------------------------

def _v6_truncated(raw: bytes) -> bool:
    """ipv6frag_thdr_truncated: an offset-0 fragment that does not hold its
    upper-layer header; False when the kernel cannot walk the header chain
    (cut short, No Next Header) or it ends at a non-first fragment."""
    from .ipv6 import skip_exthdr

    found = skip_exthdr(raw)
    if found is None or found[2] & 0xFFF8:
        return False
    proto, off, _ = found
    return off + _V6_UPPER_HEADER.get(proto, 1) > len(raw)


def defrag6(kernel: Kernel, pkt: IpPacket) -> Verdict | Reassembled:
    """ipv6_frag_rcv for a fragment (not atomic): ``pkt.l4_offset`` is the
    fragment header, ``pkt.nh_offset`` the byte naming it.

    Returns:
        The reassembled datagram (fragment header removed, ``l4_offset``
        where it was, ``proto`` its next header) when complete; otherwise
        the fragment's verdict, with ICMPv6 parameter problems where the
        kernel sends them.  Never raises.
    """
    from . import icmp

    raw, fhoff = pkt.raw, pkt.l4_offset
    frag = raw[fhoff + 2] << 8 | raw[fhoff + 3]
    offset, more = frag & 0xFFF8, bool(frag & 1)
    if offset == 0 and _v6_truncated(raw):
        reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_PARAMPROB, ICMPV6_HDR_INCOMP, 0)
        return drop(DropReason.NOT_SPECIFIED, "first fragment without the whole upper-layer header "
                    "(RFC 8200 §4.5): ICMPv6 4/3", replies=icmp.replies(reply), handler=HANDLER6)
    end = offset + len(raw) - fhoff - 8
    pointer = None
    if end > MAX_DATAGRAM:
        pointer, problem = fhoff + 2, f"fragment ends at {end}, past 65535"
    elif more and end & 7:
        pointer, problem = _V6_PAYLOAD_LEN_FIELD, "non-last fragment not a multiple of 8 bytes"
    if pointer is not None:
        reply = icmp.send_error6(kernel, pkt, icmp.ICMPV6_PARAMPROB, icmp.ICMPV6_HDR_FIELD, pointer)
        return drop(DropReason.IP_INHDR, f"{problem}: ICMPv6 4/0 pointer {pointer}", replies=icmp.replies(reply),
                    handler=HANDLER6)
    dst = pkt.dst
    scoped = dst[0] == 0xFF or (dst[0] == 0xFE and dst[1] & 0xC0 == 0x80)
    ident = int.from_bytes(raw[fhoff + 4:fhoff + 8], "big")
    q = _queue_for(kernel, (pkt.src, dst, ident, 0, pkt.device if scoped else ""), 6)
    if q is None:
        return drop(DropReason.NOT_SPECIFIED, "fragment memory above ip6frag_high_thresh: fragment refused",
                    handler=HANDLER6)
    why = _check_end(q, end, more)
    if why is None and end == offset:
        why = "fragment without data"
    if why is not None:
        return _discard(kernel, q, HANDLER6, why)
    where = _insert(q, offset, end)
    if where == _DUP:
        return drop(DropReason.DUP_FRAG, f"duplicate of bytes {offset}-{end} already held", handler=HANDLER6)
    if where == _OVERLAP:
        return _discard(kernel, q, HANDLER6, f"fragment {offset}-{end} overlaps one held (RFC 5722)")
    _add(kernel, q, pkt, offset, end, raw[fhoff + 8:], len(raw), False)
    if not _complete(q):
        return _pending(q, HANDLER6)
    return _reasm6(kernel, q, pkt)


def _reasm6(kernel: Kernel, q: FragQueue, last: IpPacket) -> Verdict | Reassembled:
    """ip6_frag_reasm: the unfragmentable part of the offset-0 fragment, its
    fragment header removed, then every fragment's data."""
    kernel.frags.kill(q)
    first = q.first
    assert first is not None
    ecn = _reasm_ecn(q.ecn)
    if ecn is None:
        return drop(DropReason.NOT_SPECIFIED, "fragments mix ECN-capable and not-ECT marks: datagram discarded",
                    handler=HANDLER6)
    fhoff, nhoff = first.l4_offset, first.nh_offset
    plen = fhoff - 40 + q.length
    if plen > MAX_DATAGRAM:
        return drop(DropReason.NOT_SPECIFIED, f"oversized IPv6 payload: {plen} bytes (ReasmFails)",
                    handler=HANDLER6)
    unfrag = bytearray(first.raw[:fhoff])
    nexthdr = first.raw[fhoff]
    unfrag[nhoff] = nexthdr
    unfrag[4:6] = plen.to_bytes(2, "big")
    tos = first.tos | ecn
    unfrag[1] |= ecn << 4
    datagram = dataclasses.replace(first, raw=bytes(unfrag) + _data(q), proto=nexthdr, tos=tos,
                                   device=last.device, route=last.route)
    return Reassembled(datagram, len(q.pieces))
