"""How much of a host's own replies does a host file inferred from the capture reproduce?

For every capture (``*.pcap``, ``*.pcapng``) in a folder: infer the host
file (``pktdemux host infer``), replay the capture against it, and count the
host's own kernel-made replies (RSTs, SYN-ACKs, ACKs, ICMP errors, echo
replies) the emulation reproduced exactly.  Where a hand-written host file
sits next to the capture or in pcaps/ (``NAME.toml``), its figure is shown for comparison.

Linux or not.  The emulation is Linux's, so a host that is not Linux cannot
be reproduced; each capture's host is judged by its own kernel-made replies
(:func:`pktdemux.hostimport.stack_signs`, the rules of infer's caveats):

* "linux": every reply starts from TTL (hop limit) 64, Linux's default, and
  none contradicts Linux's formats: IPv4 SYN-ACKs and RSTs with DF and ID 0,
  SYN-ACK options in Linux's order (MSS, SACK-permitted and timestamps,
  window scale), ICMPv4 errors with precedence 0xc0 in the TOS.  "linux
  (TTL)" marks a host whose replies show only the TTL, which the BSDs share.
* "other": a reply starting from another TTL (128: Windows; 255: routers,
  Solaris) or in a format Linux does not use.

The share is given per capture, in total, and for each group.  The replies
not reproduced are counted by kind (``TCP [ACK]``, ``ICMP port
unreachable``...) and reason: "not sent" when the emulation sent nothing
like it to that peer (said of a time-exceeded error for a packet to another
host: the host was routing), else the header fields where the closest reply
the emulation sent differs (a checksum or length that follows from another
field is left out).

    python tools/infer_report.py [FOLDER]      # default ../shared/pcaps, else pcaps/

Never stops on a capture: a corrupt or unreadable one is reported as such.
Exit status 0.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections import Counter
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pktdemux.capture import Capture
from pktdemux.errors import PktdemuxError
from pktdemux.hostfile import build_kernel, load_host
from pktdemux.hostimport import infer_host, stack_signs
from pktdemux.matching import describe_fields, mask_random_fields
from pktdemux.render import brief
from pktdemux.replay import Replay
from pktdemux.wire import ip_datagram

DEFAULT_FOLDERS = (ROOT.parent / "shared" / "pcaps", ROOT / "pcaps")
LINUX, LINUX_TTL, OTHER = "linux", "linux (TTL)", "other"
#: (title, the hosts in a sentence, stacks)
GROUPS = (("Linux-looking", "hosts that look like Linux", (LINUX, LINUX_TTL)),
          ("others", "other hosts", (OTHER,)))
#: Fields that follow from others: left out of a reason when another field differs.
DERIVED = frozenset({"ip.checksum", "ip.total_length", "ipv6.payload_length", "tcp.checksum", "tcp.doff",
                     "udp.checksum", "udp.length", "icmp.checksum"})
#: Reasons listed per group.
TOP_REASONS = 12


@dataclass
class Replayed:
    """What one replay showed of the host's own replies."""

    own: int = 0
    matched: int = 0
    note: str = ""
    misses: Counter[str] = field(default_factory=Counter)
    linux_signs: Counter[str] = field(default_factory=Counter)
    other_signs: Counter[str] = field(default_factory=Counter)

    @property
    def stack(self) -> str:
        if self.other_signs:
            return OTHER
        ttl_only = all(s.startswith(("TTL", "hop limit")) for s in self.linux_signs)
        return LINUX_TTL if ttl_only else LINUX


@dataclass
class Row:
    """One capture's figures."""

    name: str
    host: str = ""
    sockets: int = 0
    replayed: Replayed = field(default_factory=Replayed)
    hand: str = ""
    note: str = ""

    @property
    def own(self) -> int:
        """The host's own kernel-made replies in the capture."""
        return self.replayed.own


def _share(matched: int, own: int) -> str:
    return f"{100 * matched / own:.1f}%" if own else "-"


def why_not(replay: Replay, ip: bytes) -> str:
    """Why the host's reply ``ip`` was not reproduced: "not sent", or the
    fields where the closest reply the emulation sent differs."""
    closest = replay.kernel.sent.closest(ip)
    if closest is None:
        return "not sent (a forwarded packet's: routing is not emulated)" if _forwarded(replay, ip) else "not sent"
    mine, theirs = describe_fields(mask_random_fields(closest)), describe_fields(mask_random_fields(ip))
    differ = [a[0] for a, b in zip(mine, theirs) if a != b]
    if len(mine) != len(theirs):
        differ.append("layers")
    kept = [name for name in differ if name not in DERIVED] or differ
    return ", ".join(kept) or "not sent"


def _forwarded(replay: Replay, ip: bytes) -> bool:
    """True for a time-exceeded error quoting a packet to another host: the
    host was routing it."""
    v6 = ip[0] >> 4 == 6
    l4 = 40 if v6 else (ip[0] & 0x0F) * 4
    exceeded = len(ip) > l4 and ip[9 if not v6 else 6] == (58 if v6 else 1) and ip[l4] == (3 if v6 else 11)
    quoted_dst = ip[l4 + 8 + 24:l4 + 8 + 40] if v6 else ip[l4 + 8 + 16:l4 + 8 + 20]
    return exceeded and len(quoted_dst) == (16 if v6 else 4) and not replay.directions.is_local(quoted_dst)


def replay_counts(capture: pathlib.Path, spec) -> Replayed:  # type: ignore[no-untyped-def]
    """The host's own replies in ``capture`` replayed against ``spec``: how
    many, how many reproduced, why the others were not, and what they say
    of the host's stack."""
    replay = Replay(build_kernel(spec))
    out = Replayed()
    try:
        with Capture(capture) as cap:
            for result in replay.run(cap.records()):
                tx = result.transmission
                if tx is None or tx.matched is None or result.ip is None:
                    continue
                ip = ip_datagram(result.ip)
                linux, other = stack_signs(ip)
                out.linux_signs.update(linux)
                out.other_signs.update(other)
                if not tx.matched:
                    out.misses[f"{brief(ip)}: {why_not(replay, ip)}"] += 1
    except PktdemuxError as err:
        out.note = f"cut short: {err}"
    out.own, out.matched = replay.totals.own_generated, replay.totals.own_matched
    return out


def examine(capture: pathlib.Path) -> Row:
    """Infer, replay and count one capture; never raises."""
    row = Row(capture.name)
    try:
        with Capture(capture) as cap:
            imported = infer_host(cap.records(), source=capture.name)
    except PktdemuxError as err:
        row.note = f"corrupt: {err}"
        return row
    except Exception as err:  # noqa: BLE001  (a bug must not stop the report)
        row.note = f"inference failed: {type(err).__name__}: {err}"
        return row
    spec = imported.spec
    row.host = ", ".join(str(a.ip) for i in spec.interfaces for a in i.addresses if not a.ip.is_loopback) or \
        (spec.interfaces[0].name if spec.interfaces else "")
    row.sockets = len(spec.sockets)
    try:
        row.replayed = replay_counts(capture, spec)
        row.note = row.replayed.note
    except PktdemuxError as err:
        row.note = f"inferred table refused: {err}"
    except Exception as err:  # noqa: BLE001
        row.note = f"replay failed: {type(err).__name__}: {err}"
    hand = next((h for h in (capture.with_suffix(".toml"), ROOT / "pcaps" / f"{capture.stem}.toml") if h.exists()),
                None)
    if hand is not None:
        try:
            done = replay_counts(capture, load_host(str(hand)))
            row.hand = f"{done.matched}/{done.own}" if done.own else "-"
        except Exception as err:  # noqa: BLE001
            row.hand = f"error ({type(err).__name__})"
    return row


def _main_miss(row: Row) -> str:
    if not row.replayed.misses:
        return ""
    reason, count = row.replayed.misses.most_common(1)[0]
    return f"{reason} ({count})"


def report(rows: list[Row]) -> list[str]:
    """The table (captures with host replies first), the figures per group,
    the reasons for the replies not reproduced, then the other captures."""
    with_replies = [r for r in rows if r.own]
    lines = [(f"{'capture':34} {'stack':11} {'host (inferred)':26} {'sockets':>7} {'reproduced':>10} {'share':>6} "
              f"{'hand-written':>12}  main reason for a miss")]
    for r in with_replies:
        lines.append(f"{r.name[:34]:34} {r.replayed.stack:11} {r.host[:26]:26} {r.sockets:7} "
                     f"{f'{r.replayed.matched}/{r.own}':>10} {_share(r.replayed.matched, r.own):>6} {r.hand:>12}  "
                     f"{_main_miss(r)}"
                     + (f"  {r.note}" if r.note else ""))
    lines.append(_total("all", with_replies))
    for title, _, stacks in GROUPS:
        lines.append(_total(title, [r for r in with_replies if r.replayed.stack in stacks]))
    for _, hosts, stacks in GROUPS:
        group = [r for r in with_replies if r.replayed.stack in stacks]
        misses: Counter[str] = sum((r.replayed.misses for r in group), Counter())
        if not misses:
            continue
        lines.append("")
        lines.append(f"Not reproduced on {hosts} ({sum(misses.values())} replies), by kind and reason:")
        for reason, count in misses.most_common(TOP_REASONS):
            where = sorted({r.name for r in group if reason in r.replayed.misses})
            lines.append(f"  {count:4}  {reason}  [{', '.join(where[:3])}{', ...' if len(where) > 3 else ''}]")
        rest = sum(misses.values()) - sum(c for _, c in misses.most_common(TOP_REASONS))
        if rest:
            lines.append(f"  {rest:4}  (other reasons)")
    lines.append("")
    lines.append("Why each host is judged so (signs in its kernel-made replies, with counts):")
    for r in with_replies:
        signs = r.replayed.other_signs if r.replayed.stack == OTHER else r.replayed.linux_signs
        lines.append(f"  {r.name}: {r.replayed.stack}: "
                     + "; ".join(f"{s} ({n})" for s, n in signs.most_common()))
    others = [r for r in rows if not r.own]
    if others:
        lines.append("")
        lines.append(f"Without host replies to compare ({len(others)}):")
        for r in others:
            lines.append(f"  {r.name}: {r.note or 'no kernel-made reply of the inferred host in the capture'}")
    return lines


def _total(title: str, rows: list[Row]) -> str:
    own, matched = sum(r.own for r in rows), sum(r.replayed.matched for r in rows)
    label = f"{title} ({len(rows)} captures)" if title != "all" else "all"
    return f"{label:34} {'':11} {'':26} {'':7} {f'{matched}/{own}':>10} {_share(matched, own):>6}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=pathlib.Path, help="folder of captures")
    args = parser.parse_args(argv)
    folder = args.folder or next((f for f in DEFAULT_FOLDERS if f.is_dir()), DEFAULT_FOLDERS[-1])
    captures = sorted(p for p in folder.iterdir() if p.suffix in (".pcap", ".pcapng")) if folder.is_dir() else []
    if not captures:
        print(f"no captures in {folder}", file=sys.stderr)
        return 0
    print(f"{len(captures)} captures in {folder}")
    for line in report([examine(c) for c in captures]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
