"""How much of a host's own replies does a host file inferred from the capture reproduce?

For every capture (``*.pcap``, ``*.pcapng``) in a folder: infer the host
file (``pktdemux host infer``), replay the capture against it, and count the
host's own kernel-made replies (RSTs, SYN-ACKs, ACKs, ICMP errors, echo
replies) the emulation reproduced exactly.  Where a hand-written host file
sits next to the capture or in pcaps/ (``NAME.toml``), its figure is shown for comparison.

    python tools/infer_report.py [FOLDER]      # default ../shared/pcaps, else pcaps/

Never stops on a capture: a corrupt or unreadable one is reported as such.
Exit status 0.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pktdemux.capture import Capture
from pktdemux.errors import PktdemuxError
from pktdemux.hostfile import build_kernel, load_host
from pktdemux.hostimport import infer_host
from pktdemux.replay import Replay

DEFAULT_FOLDERS = (ROOT.parent / "shared" / "pcaps", ROOT / "pcaps")


@dataclass
class Row:
    """One capture's figures."""

    name: str
    host: str = ""
    sockets: int = 0
    own: int = 0
    matched: int = 0
    hand: str = ""
    note: str = ""

    @property
    def share(self) -> str:
        return f"{100 * self.matched / self.own:.1f}%" if self.own else "-"


def replay_counts(capture: pathlib.Path, spec) -> tuple[int, int, str]:  # type: ignore[no-untyped-def]
    """(host's own replies, reproduced, note) of replaying ``capture`` against ``spec``."""
    replay = Replay(build_kernel(spec))
    note = ""
    try:
        with Capture(capture) as cap:
            for _ in replay.run(cap.records()):
                pass
    except PktdemuxError as err:
        note = f"cut short: {err}"
    return replay.totals.own_generated, replay.totals.own_matched, note


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
        row.own, row.matched, row.note = replay_counts(capture, spec)
    except PktdemuxError as err:
        row.note = f"inferred table refused: {err}"
    except Exception as err:  # noqa: BLE001
        row.note = f"replay failed: {type(err).__name__}: {err}"
    hand = next((h for h in (capture.with_suffix(".toml"), ROOT / "pcaps" / f"{capture.stem}.toml") if h.exists()),
                None)
    if hand is not None:
        try:
            own, matched, _ = replay_counts(capture, load_host(str(hand)))
            row.hand = f"{matched}/{own}" if own else "-"
        except Exception as err:  # noqa: BLE001
            row.hand = f"error ({type(err).__name__})"
    return row


def report(rows: list[Row]) -> list[str]:
    """The table: captures with host replies first, then the others."""
    with_replies = [r for r in rows if r.own]
    lines = [f"{'capture':34} {'host (inferred)':26} {'sockets':>7} {'reproduced':>12} {'share':>7} {'hand-written':>12}"]
    for r in with_replies:
        lines.append(f"{r.name[:34]:34} {r.host[:26]:26} {r.sockets:7} {f'{r.matched}/{r.own}':>12} {r.share:>7} "
                     f"{r.hand:>12}" + (f"  {r.note}" if r.note else ""))
    total_own = sum(r.own for r in with_replies)
    total_matched = sum(r.matched for r in with_replies)
    if total_own:
        lines.append(f"{'all':34} {'':26} {'':7} {f'{total_matched}/{total_own}':>12} "
                     f"{100 * total_matched / total_own:6.1f}%")
    others = [r for r in rows if not r.own]
    if others:
        lines.append("")
        lines.append(f"Without host replies to compare ({len(others)}):")
        for r in others:
            lines.append(f"  {r.name}: {r.note or 'no kernel-made reply of the inferred host in the capture'}")
    return lines


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
