"""Human output of a replay: one row per packet, streamed, then a summary.

Two renderings of the same columns: :class:`PlainRows` (plain text, for pipes
and files, no colour) and :class:`RichRows` (a terminal, with colours via
rich).  Rows are printed as they come; nothing is kept but the first
timestamp, so a 200,000-packet capture costs no memory here.
"""

from __future__ import annotations

from typing import IO

from .render import brief, summarize
from .replay import Result, Totals

#: column name, width (0 = the rest of the line)
COLUMNS = (("No.", 6), ("Time", 10), ("Dir", 5), ("Source", 26), ("Destination", 26), ("Proto", 6),
           ("Info", 20), ("Verdict", 8), ("Socket / reason", 22), ("Replies", 0))


def row_fields(result: Result, t0: float) -> tuple[str, ...]:
    """The column values of one result; time is seconds since ``t0``.

    A timer row (direction ``"timer"``) has no number; its Info is the
    timer's name, its Verdict ``sent`` (or ``-`` when it sent nothing).
    """
    if result.direction == "timer":
        replies = "; ".join(brief(r) for r in result.sent)
        return ("", f"{result.time - t0:.6f}", "timer", "", "", "", result.note, "sent" if result.sent else "-",
                "", replies)
    if result.ip is not None:
        src, dst, proto, info = summarize(result.ip)
    else:
        src, dst, proto, info = "", "", "", result.note
    verdict, tx = result.verdict, result.transmission
    if result.direction == "out" and verdict is None:
        if tx is None:
            target = result.note or "-"
            status = "sent"
        else:
            status = "sent"
            target = {True: "matched", False: "NOT matched", None: "application"}[tx.matched]
    elif verdict is not None:
        status = verdict.verdict
        if verdict.delivered:
            target = ", ".join(s.display_name for s in verdict.sockets) or verdict.handler or "kernel"
        else:
            target = verdict.reason.value if verdict.reason else ""
        if tx is not None and tx.matched is not None:
            target += " (matched)" if tx.matched else " (NOT matched)"
    else:
        status, target = "-", result.note if result.ip is not None else ""
    replies = "; ".join(brief(r) for r in result.replies)
    direction = "loop" if result.looped else result.direction
    return (str(result.n), f"{result.time - t0:.6f}", direction, src, dst, proto, info, status, target, replies)


def _fit(text: str, width: int) -> str:
    if width == 0:
        return text
    if len(text) > width:
        return text[: width - 1] + "…"
    return text.ljust(width)


def format_line(fields: tuple[str, ...]) -> str:
    """One fixed-width line of the table."""
    out = []
    for (name, width), text in zip(COLUMNS, fields, strict=True):
        out.append(text.rjust(width) if name in ("No.", "Time") else _fit(text, width))
    return " ".join(out).rstrip()


HEADER = format_line(tuple(name for name, _ in COLUMNS))


class PlainRows:
    """Prints rows as plain text to ``out``."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.t0: float | None = None

    def row(self, result: Result) -> None:
        """Print the row of one result (the header before the first)."""
        if self.t0 is None:
            self.t0 = result.time
            self.out.write(HEADER + "\n")
        self.out.write(format_line(row_fields(result, self.t0)) + "\n")


_STYLES = {"deliver": "green", "drop": "red", "sent": "cyan", "-": "dim"}


class RichRows:
    """Prints rows to a rich Console, with the verdict coloured."""

    def __init__(self, console) -> None:  # type: ignore[no-untyped-def]
        self.console = console
        self.t0: float | None = None

    def row(self, result: Result) -> None:
        """Print the row of one result (the header before the first)."""
        from rich.text import Text

        if self.t0 is None:
            self.t0 = result.time
            self.console.print(Text(HEADER, style="bold"), soft_wrap=True)
        fields = row_fields(result, self.t0)
        line = Text(format_line(fields), style=_STYLES.get(fields[7], ""))
        self.console.print(line, soft_wrap=True, highlight=False)


def summary_lines(totals: Totals, compared: bool = True) -> list[str]:
    """The summary as plain lines: totals, per socket, per drop reason, own replies.

    Args:
        totals: the replay's totals.
        compared: False when the kernel could not compare the host's own
            packets (no ``Kernel.transmit``).
    """
    d = totals.directions
    lines = [
        f"{totals.packets} packets: {d['in']} in, {d['out']} out, {d['other']} other"
        + (f" ({totals.looped} from the host to itself)" if totals.looped else ""),
        f"received: {totals.delivered} delivered, {totals.dropped} dropped; {totals.replies} emulated replies",
    ]
    if totals.sockets:
        lines.append("per socket:")
        width = max(len(k) for k in totals.sockets)
        lines += [f"  {name.ljust(width)}  {count}" for name, count in totals.sockets.most_common()]
    if totals.reasons:
        lines.append("per drop reason:")
        width = max(len(k) for k in totals.reasons)
        lines += [f"  {name.ljust(width)}  {count}" for name, count in totals.reasons.most_common()]
    if totals.timers:
        lines.append(f"timers: {totals.timers} fired, {totals.timer_packets} packets sent")
    lines.append(own_replies_line(totals, compared))
    return lines


def own_replies_line(totals: Totals, compared: bool = True) -> str:
    """How many of the host's own kernel-generated packets the emulation reproduced."""
    if not compared:
        return "host's own replies: not compared (this build's kernel has no transmit)"
    gen = totals.own_generated
    if not gen:
        return "host's own replies: none in the capture"
    pct = 100.0 * totals.own_matched / gen
    return f"host's own replies reproduced exactly: {totals.own_matched} of {gen} ({pct:.1f}%)"


def print_summary_rich(console, totals: Totals, compared: bool = True) -> None:  # type: ignore[no-untyped-def]
    """The summary as rich tables."""
    from rich.table import Table

    lines = summary_lines(totals, compared)
    console.print()
    console.print(lines[0], style="bold", highlight=False)
    console.print(lines[1], highlight=False)
    for title, counter, style in (("Socket", totals.sockets, "green"), ("Drop reason", totals.reasons, "red")):
        if counter:
            table = Table(title=None, show_edge=False, pad_edge=False)
            table.add_column(title, style=style)
            table.add_column("Packets", justify="right")
            for name, count in counter.most_common():
                table.add_row(name, str(count))
            console.print(table)
    console.print(lines[-1], style="bold", highlight=False)
