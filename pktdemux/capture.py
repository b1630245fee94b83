"""Read pcap and pcapng captures as a stream of records, in constant memory.

The containers are read by Scapy's raw readers (``scapy.utils``
RawPcapReader for pcap, RawPcapNgReader for pcapng), one record at a time;
this module never parses a record itself.  It adds the checks Scapy leaves
out, so that a damaged file is reported instead of silently cut short:

* the pcap link-type field is masked with 0xFFFF (its upper bits carry FCS
  information and reserved bits, which readers must ignore);
* a pcap major version other than 2, a pcapng major version other than 1, a
  Section Header Block whose options run past the block, and the
  Kuznetzov-modified pcap magic are rejected at open;
* a file that ends inside a record, a pcap record longer than
  :data:`MAX_CAPLEN`, a read error (Scapy's pcap reader takes one for the
  end of the file), a pcapng block whose two length fields differ or are
  not a multiple of 4, and a packet block naming an interface the file
  never described all stop the stream with :class:`CaptureError`, after
  every complete record before them has been yielded.  For a pcap file
  these checks compare where Scapy stopped in the file with what the
  record header announced.

Sources: the pcap format (draft-ietf-opsawg-pcap), the pcapng format
(draft-ietf-opsawg-pcapng), libpcap's sf-pcap.c / sf-pcapng.c checks.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple

from .errors import CaptureError

#: The longest record Scapy's pcap reader returns whole (4 × its MTU); libpcap
#: itself refuses records longer than 262144 bytes.
MAX_CAPLEN = 4 * 0xFFFF

_NS = 1_000_000_000
_PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\x3c\x4d": (">", True),
    b"\x4d\x3c\xb2\xa1": ("<", True),
}
_KUZNETZOV_MAGICS = (b"\xa1\xb2\xcd\x34", b"\x34\xcd\xb2\xa1")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"
_SHB = 0x0A0D0D0A


class Record(NamedTuple):
    """One packet record of a capture.

    Attributes:
        n: 1-based position of the packet in the capture.
        ts_ns: capture time, integer nanoseconds since the epoch.
        time: the same, float seconds since the epoch.
        linktype: LINKTYPE_* value of the frame (16 bits).
        frame: the captured bytes, link-layer header first.
        wirelen: the frame's length on the wire, bytes (more than
            ``len(frame)`` when the capture's snap length cut it).
        ifindex: capture interface: 0 for pcap; for pcapng the Interface
            Description Block's number, counted across sections.
    """

    n: int
    ts_ns: int
    time: float
    linktype: int
    frame: bytes
    wirelen: int
    ifindex: int = 0


class Capture:
    """An open capture file.

    Args:
        path: a pcap or pcapng file (gzip-compressed files are read too).

    Raises:
        CaptureError: at "byte N" when the file is missing, unreadable, not a
            capture, or has a file/section header pktdemux rejects.

    Use as a context manager; iterate :meth:`records` once.  ``offset`` is how
    far the reader is into the (uncompressed) file, for progress bars.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        #: "pcap" or "pcapng"
        self.format = ""
        #: file size in bytes (None when unknown)
        self.size: int | None = None
        head = self._head()
        self._reader = self._open(head)

    def _head(self) -> bytes:
        try:
            self.size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(4096)
                if head[:2] == _GZIP_MAGIC:
                    import gzip

                    self.size = None
                    with gzip.open(self.path, "rb") as g:
                        head = g.read(4096)
        except (OSError, EOFError) as e:
            raise CaptureError(self.path, "", _os_reason(e)) from None
        return head

    def _open(self, head: bytes):  # type: ignore[no-untyped-def]
        magic = head[:4]
        if magic in _PCAP_MAGICS:
            self.format = "pcap"
            _check_pcap_header(self.path, head)
            reader = _open_scapy(self.path, _pcap_reader_class())
            reader.f = _ReadErrors(reader.f)
            return reader
        if magic == _PCAPNG_MAGIC:
            self.format = "pcapng"
            problem = shb_problem(head, 0)
            if problem:
                raise CaptureError(self.path, problem[0], problem[1])
            return _open_scapy(self.path, _pcapng_reader_class())
        if magic in _KUZNETZOV_MAGICS:
            raise CaptureError(self.path, "byte 0",
                               "Kuznetzov-modified pcap (magic a1b2cd34) is not supported")
        if not head:
            raise CaptureError(self.path, "byte 0", "empty file, not a pcap or pcapng capture")
        raise CaptureError(self.path, "byte 0",
                           f"not a pcap or pcapng capture (starts with 0x{head[:4].hex()})")

    @property
    def offset(self) -> int:
        """Bytes of the (uncompressed) file read so far."""
        try:
            return self._reader.f.tell()
        except (OSError, ValueError):
            return 0

    def records(self) -> Iterator[Record]:
        """Yield the records in file order.

        Raises:
            CaptureError: at "record N at byte X" for a file cut off inside a
                record or a corrupt block; the records before it were yielded.
        """
        if self.format == "pcap":
            return self._pcap_records()
        return _pcapng_records(self.path, self._reader)

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def _pcap_records(self) -> Iterator[Record]:
        """The pcap records after the file header, read by Scapy, checked as
        libpcap checks them."""
        reader = self._reader
        read = reader._read_packet  # Scapy's record reader; raises EOFError at the end
        f = reader.f
        linktype = reader.linktype & 0xFFFF  # upper bits: FCS length and reserved bits
        scale = 1 if reader.nano else 1000
        new = tuple.__new__
        start = f.tell()  # of the record being read
        n = 0
        _SCAPY_LOG.addFilter(_not_a_pcap_warning)
        try:
            while True:
                try:
                    data, meta = read(MAX_CAPLEN)
                except EOFError:
                    _pcap_end(self.path, f, n + 1, start)
                    return
                caplen = meta.caplen
                if caplen > MAX_CAPLEN or len(data) < caplen:
                    raise CaptureError(self.path, f"record {n + 1} at byte {start}",
                                       _short_record(caplen, len(data)))
                n += 1
                ts_ns = meta.sec * _NS + meta.usec * scale
                yield new(Record, (n, ts_ns, ts_ns / _NS, linktype, data, meta.wirelen, 0))
                start += 16 + caplen
        finally:
            _SCAPY_LOG.removeFilter(_not_a_pcap_warning)

    def close(self) -> None:
        """Close the file."""
        try:
            self._reader.close()
        except OSError:
            pass

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ReadErrors:
    """The file Scapy's pcap reader reads, keeping the error of a failed read
    (Scapy logs it and stops as at the end of the file)."""

    __slots__ = ("close", "error", "f", "tell")

    def __init__(self, f) -> None:  # type: ignore[no-untyped-def]
        self.f = f
        self.tell = f.tell
        self.close = f.close
        self.error: BaseException | None = None

    def read(self, size: int) -> bytes:
        try:
            return self.f.read(size)
        except (OSError, EOFError, ValueError, zlib.error) as e:  # gzip and zlib errors included
            self.error = e
            raise


#: Scapy's pcap reader logs what it skips here ("Pcap: packet has been
#: truncated", read errors); while pktdemux reads, CaptureError says it instead.
_SCAPY_LOG = logging.getLogger("scapy.runtime")


def _not_a_pcap_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Pcap: ")


def _pcap_end(path: str, f: _ReadErrors, record: int, start: int) -> None:
    """Scapy stopped reading at record ``record`` (file offset ``start``):
    return at a clean end of file, raise CaptureError otherwise."""
    where = f"record {record} at byte {start}"
    if f.error is not None:
        raise CaptureError(path, where, _os_reason(f.error))
    got = f.tell() - start
    if got:
        raise CaptureError(path, where, f"file ends inside the record header ({got} of 16 bytes)")


def read_capture(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Yield the records of the capture at ``path``, then close it.

    Raises:
        CaptureError: as :class:`Capture` and :meth:`Capture.records`.
    """
    with Capture(path) as cap:
        yield from cap.records()


# -- opening --------------------------------------------------------------

def _os_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _open_scapy(path: str, cls):  # type: ignore[no-untyped-def]
    from scapy.error import Scapy_Exception

    try:
        return cls(path)
    except _Corrupt as e:
        raise CaptureError(path, "byte 0", str(e)) from None
    except (Scapy_Exception, OSError, EOFError) as e:
        raise CaptureError(path, "byte 0", f"unreadable capture ({e})") from None


def _check_pcap_header(path: str, head: bytes) -> None:
    """Refuse what libpcap refuses and Scapy accepts: a short header, a bad version."""
    if len(head) < 24:
        raise CaptureError(path, "byte 0", f"file ends inside the pcap file header ({len(head)} of 24 bytes)")
    endian, _ = _PCAP_MAGICS[head[:4]]
    major, minor = struct.unpack_from(endian + "HH", head, 4)
    if major != 2:
        raise CaptureError(path, "byte 4", f"pcap version {major}.{minor} is not supported (only 2.x)")


def shb_problem(data: bytes, start: int) -> tuple[str, str] | None:
    """Check the pcapng Section Header Block at ``data[start:]``.

    Returns:
        None when the block is sound, else ``(position, reason)`` with the
        position as "byte N" of the problem.
    """
    block = data[start:]
    if len(block) < 28:
        return f"byte {start}", f"file ends inside the pcapng section header ({len(block)} of 28 bytes)"
    bom = block[8:12]
    if bom == b"\x1a\x2b\x3c\x4d":
        endian = ">"
    elif bom == b"\x4d\x3c\x2b\x1a":
        endian = "<"
    else:
        return f"byte {start + 8}", f"bad pcapng byte-order magic 0x{bom.hex()}"
    length, = struct.unpack_from(endian + "I", block, 4)
    major, minor = struct.unpack_from(endian + "HH", block, 12)
    if major != 1:
        return f"byte {start + 12}", f"pcapng version {major}.{minor} is not supported (only 1.x)"
    if length < 28 or length % 4:
        return f"byte {start + 4}", f"bad section header length {length}"
    if len(block) < length:
        return None  # longer than our look-ahead: Scapy reads and checks it
    return _options_problem(block, endian, 24, length - 4, start)


def _options_problem(block: bytes, endian: str, pos: int, end: int, start: int) -> tuple[str, str] | None:
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", block, pos)
        if code == 0:
            return None
        if pos + 4 + length > end:
            return (f"byte {start + pos}",
                    f"section header option {code} claims {length} bytes, past the end of its block")
        pos += 4 + length + (-length % 4)
    return None


# -- pcap -----------------------------------------------------------------

def _pcap_reader_class():  # type: ignore[no-untyped-def]
    from scapy.utils import RawPcapReader

    return RawPcapReader


def _short_record(caplen: int, got: int) -> str:
    if caplen > MAX_CAPLEN:
        return f"record claims {caplen} bytes, more than the {MAX_CAPLEN} a record may hold"
    return f"file ends inside the record ({got} of {caplen} bytes)"


# -- pcapng ---------------------------------------------------------------

class _Corrupt(Exception):
    """A pcapng block Scapy would skip or misread; the message is the reason."""


_NG_CLASS = None


def _pcapng_reader_class():  # type: ignore[no-untyped-def]
    """RawPcapNgReader with the checks it lacks (made once, on first use)."""
    global _NG_CLASS
    if _NG_CLASS is None:
        _NG_CLASS = _make_ng_class()
    return _NG_CLASS


def _make_ng_class():  # type: ignore[no-untyped-def]
    from scapy.utils import RawPcapNgReader

    class CheckedPcapNgReader(RawPcapNgReader):
        """Tracks block offsets and interface numbers; refuses corrupt blocks."""

        block_start = 0
        intid = 0
        if_base = 0  # interfaces of the earlier sections

        def _read_block(self, size=0xFFFF):  # type: ignore[no-untyped-def]
            self.block_start = self.f.tell()
            return super()._read_block(size)

        def _read_block_shb(self):  # type: ignore[no-untyped-def]
            # Interface numbers restart in every section (pcapng §4.1).
            self.if_base += len(self.interfaces)
            self.interfaces = []
            super()._read_block_shb()

        def _read_block_tail(self, blocklen):  # type: ignore[no-untyped-def]
            if blocklen % 4:
                raise _Corrupt(f"block length {blocklen} is not a multiple of 4")
            tail = self.f.read(4)
            if len(tail) < 4:
                raise _Corrupt(f"file ends inside the block ({len(tail)} of 4 trailer bytes)")
            end, = struct.unpack(self.endian + "I", tail)
            if end != blocklen:
                raise _Corrupt(f"block length {blocklen} at its start but {end} at its end")

        def _read_block_epb(self, block, size):  # type: ignore[no-untyped-def]
            if len(block) < 20:
                raise _Corrupt(f"enhanced packet block body of {len(block)} bytes, less than 20")
            intid, caplen = struct.unpack_from(self.endian + "I8xI", block)
            self._check(intid, caplen, 20, block)
            return super()._read_block_epb(block, size)

        def _read_block_pkt(self, block, size):  # type: ignore[no-untyped-def]
            if len(block) < 20:
                raise _Corrupt(f"packet block body of {len(block)} bytes, less than 20")
            intid, caplen = struct.unpack_from(self.endian + "H10xI", block)
            self._check(intid, caplen, 20, block)
            return super()._read_block_pkt(block, size)

        def _read_block_spb(self, block, size):  # type: ignore[no-untyped-def]
            # Scapy takes min(wirelen, snaplen) and so reads nothing when the
            # snap length is 0 ("no limit", pcapng §4.2); the block holds the data.
            self._check(0, 0, 4, block)
            if len(block) < 4:
                raise _Corrupt(f"simple packet block body of {len(block)} bytes, less than 4")
            wirelen, = struct.unpack_from(self.endian + "I", block)
            self.intid = 0
            snaplen = self.interfaces[0][1] or wirelen
            data = block[4:4 + min(wirelen, snaplen)]
            meta = self.PacketMetadata(linktype=self.interfaces[0][0], tsresol=self.interfaces[0][2]["tsresol"],
                                       tshigh=None, tslow=None, wirelen=wirelen, comments=None,
                                       ifname=None, direction=None, process_information={})
            return data, meta

        def _check(self, intid, caplen, header, block):  # type: ignore[no-untyped-def]
            if intid >= len(self.interfaces):
                raise _Corrupt(f"packet names interface {intid}, but the section describes "
                               f"{len(self.interfaces)}")
            if header + caplen > len(block):
                raise _Corrupt(f"captured length {caplen} runs past the end of its block")
            self.intid = intid

    return CheckedPcapNgReader


def _pcapng_records(path: str, reader) -> Iterator[Record]:  # type: ignore[no-untyped-def]
    from scapy.error import Scapy_Exception

    read = reader._read_packet  # Scapy's block loop; raises EOFError at the end
    n = 0
    last_ns = 0
    while True:
        try:
            data, meta = read(MAX_CAPLEN)
        except EOFError:
            problem = _ng_problem(reader)
            if problem:
                raise CaptureError(path, f"record {n + 1} at byte {reader.block_start}", problem) from None
            return
        except (_Corrupt, Scapy_Exception, struct.error) as e:
            raise CaptureError(path, f"record {n + 1} at byte {reader.block_start}", str(e)) from None
        n += 1
        if meta.tshigh is not None:
            # tsresol is 10**k or 2**k units per second (if_tsresol).
            last_ns = ((meta.tshigh << 32) | meta.tslow) * _NS // meta.tsresol
        yield Record(n, last_ns, last_ns / _NS, meta.linktype, data, meta.wirelen,
                     reader.if_base + reader.intid)


def _ng_problem(reader) -> str | None:  # type: ignore[no-untyped-def]
    """Why Scapy stopped at ``reader.block_start``; None at a clean end of file."""
    f = reader.f
    start = reader.block_start
    try:
        if f.tell() == start and not f.read(1):
            return None
        size = f.seek(0, os.SEEK_END)
        f.seek(start)
        head = f.read(8)
        if len(head) < 8:
            return f"file ends inside a block header ({len(head)} of 8 bytes)"
        btype, blen = struct.unpack(reader.endian + "II", head)
        if btype == _SHB:
            f.seek(start)
            problem = shb_problem(f.read(4096), 0)
            if problem:
                return problem[1]
            return "malformed section header block"
        if blen < 12:
            return f"block length {blen} is less than the minimum 12"
        if blen > size - start:
            return f"block of {blen} bytes runs past the end of the file ({size - start} bytes left)"
        return f"malformed block of type 0x{btype:08x}"
    except OSError as e:
        return _os_reason(e)
