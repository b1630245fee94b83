"""Golden transcripts: what a host did with each packet, as stable text.

A transcript (format in docs/golden.md) is a header naming the format, the
kernel profile and the host (devices, addresses, non-default sysctls,
sockets), a ``---`` line, then one line per packet::

    0.000000 < 10.0.0.2:40000 > 10.0.0.1:81 S seq 1000 win 64240 <mss 1460> (ttl 64 id 1 len 44) => drop NO_SOCKET
    0.000000 > 10.0.0.1:81 > 10.0.0.2:40000 R. seq 0 ack 1001 win 0 (ttl 64 id 0 DF len 40)

Times are seconds after the first packet.  ``<`` is a packet the host
received, with its verdict; ``>`` one the host sent (an emulated reply, or
the host's own packet from a capture).  Packets are rendered by
:mod:`pktdemux.golden_render` (random fields symbolic).  Lines starting with
``#`` are comments, ignored when comparing.  In an expected transcript a
``*`` in a verdict matches anything: a transcript recorded on the real
kernel writes ``drop *`` where the kernel did not show why it dropped.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .golden_render import LineRenderer

if TYPE_CHECKING:
    from .hostfile import HostSpec
    from .replay import Result
    from .verdict import Verdict

FORMAT = "pktdemux-golden 1"
#: the kernel whose behaviour the transcript pins down
PROFILE = "linux-6.18"
SEPARATOR = "---"
#: between a received packet and its verdict
VERDICT_MARK = " => "


class GoldenError(InputError):
    """A golden file that cannot be read or written, or is not a transcript."""


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a transcript.

    Attributes:
        time: seconds since the epoch or since any fixed origin; the
            transcript shows it relative to the first event's.
        received: True for ``<`` (the host received it), False for ``>``.
        packet: the IP packet from its header, or None for a frame that had
            none (then ``note`` says why).
        from_host: the packet is the host's own (its random fields are
            rendered symbolically); True for every ``>`` line and for a
            packet the host sent to itself.
        outcome: after ``=>``: the verdict of a received packet
            (:func:`verdict_text`), or for a host packet from a capture
            whether the emulation sent the same one; "" for none.
        note: shown instead of the packet when ``packet`` is None.
    """

    time: float
    received: bool
    packet: bytes | None
    from_host: bool
    outcome: str = ""
    note: str = ""


# -- header -----------------------------------------------------------------------

def header(spec: HostSpec) -> list[str]:
    """The header lines for ``spec`` (without the ``---`` separator)."""
    from .hostfile import host_to_dict

    doc = host_to_dict(spec)
    lines = [FORMAT, f"profile {PROFILE}"]
    for iface in spec.interfaces:
        routes = f" initrwnd {iface.initrwnd}" if iface.initrwnd else ""
        lines.append(f"interface {iface.name} mtu {iface.mtu}{routes}")
    lines += [f"address {a}" for a in doc.get("host", {}).get("addresses", [])]
    for name, value in sorted(doc.get("sysctl", {}).items()):
        shown = " ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        lines.append(f"sysctl {name} = {shown}")
    lines += [_socket_line(entry) for entry in doc.get("sockets", [])]
    return lines


def _socket_line(entry: dict[str, Any]) -> str:
    words = ["socket", entry["label"]]
    for key, value in entry.items():
        if key == "label":
            continue
        if value is True:
            words.append(key)
        elif key in ("name", "process"):
            words.append(f'{key} "{value}"')
        else:
            words.append(f"{key} {str(value).lower() if isinstance(value, bool) else value}")
    return " ".join(words)


# -- verdicts ---------------------------------------------------------------------

def deliver_text(names: Iterable[str]) -> str:
    """``deliver "web", "dns"``; ``deliver kernel`` when no socket took it
    (the kernel's own ICMP handler)."""
    shown = [f'"{n}"' if n != "*" else n for n in names]
    return "deliver " + (", ".join(shown) if shown else "kernel")


def verdict_text(verdict: Verdict, spec: HostSpec | None = None) -> str:
    """``deliver "web"`` or ``drop NO_SOCKET`` for an emulated verdict.

    A member of a SO_REUSEPORT group of ``spec`` is shown as its group
    (``group tcp://0.0.0.0:80``): which member Linux picks depends on a
    secret hash, so it cannot be compared.
    """
    if not verdict.delivered:
        return f"drop {verdict.reason.value if verdict.reason else '*'}"
    groups = reuseport_groups(spec) if spec is not None else set()
    names = []
    for sock in verdict.sockets:
        root = sock.parent if getattr(sock, "parent", None) is not None else sock
        label = root.label
        names.append(f"group {label}" if root.reuseport and label in groups else sock.display_name)
    names = list(dict.fromkeys(names))
    return deliver_text(names)


def reuseport_groups(spec: HostSpec) -> set[str]:
    """Labels bound by more than one SO_REUSEPORT socket of ``spec``."""
    labels = [s.label for s in spec.sockets if s.reuseport]
    return {label for label in labels if labels.count(label) > 1}


# -- transcripts ---------------------------------------------------------------------

def transcript(spec: HostSpec, events: Iterable[Event], comments: Iterable[str] = ()) -> str:
    """The whole transcript text (ends with a newline).

    Args:
        spec: the host.
        events: in order; times are shown relative to the first one's.
        comments: ``#`` lines put after the header (provenance), not compared.
    """
    lines = header(spec) + [f"# {c}" for c in comments] + [SEPARATOR]
    renderer = LineRenderer()
    origin: float | None = None
    for event in events:
        origin = event.time if origin is None else origin
        lines.append(_event_line(renderer, event, event.time - origin))
    return "\n".join(lines) + "\n"


def _event_line(renderer: LineRenderer, event: Event, elapsed: float) -> str:
    body = renderer.render(event.packet, event.from_host) if event.packet is not None else f"({event.note})"
    line = f"{max(elapsed, 0.0):.6f} {'<' if event.received else '>'} {body}"
    return line + VERDICT_MARK + event.outcome if event.outcome else line


def replay_events(results: Iterable[Result], spec: HostSpec | None = None) -> Iterator[Event]:
    """The events of a capture replay (:class:`pktdemux.replay.Replay` results).

    "other" packets are left out; a packet the host sent to itself is a ``>``
    line then a ``<`` line with its verdict; emulated replies follow the
    packet that caused them, at its time; what a timer sent is ``>`` lines
    at the time it fired (a firing that sent nothing leaves no line).
    """
    for r in results:
        if r.direction == "other":
            continue
        if r.direction == "timer":
            for packet in r.sent:
                yield Event(r.time, False, packet, True)
            continue
        if r.direction == "out":
            yield Event(r.time, False, r.ip, True, _transmission_text(r.matched))
        if r.verdict is not None:
            note = r.note or r.verdict.note
            yield Event(r.time, True, r.ip, r.looped, verdict_text(r.verdict, spec), note)
            for reply in r.verdict.replies:
                yield Event(r.time, False, reply, True)


def _transmission_text(matched: bool | None) -> str:
    return {True: "host matched", False: "host unmatched", None: ""}[matched]


def capture_transcript(capture_path: str, spec: HostSpec, seed: int = 0) -> str:
    """Replay a capture against ``spec`` and return its transcript.

    Raises:
        CaptureError: for a corrupt or unsupported capture.
        HostFileError: when the host's sockets cannot be created.
    """
    from .capture import Capture
    from .hostfile import build_kernel
    from .replay import Replay

    replay = Replay(build_kernel(spec, seed=seed))
    with Capture(capture_path) as cap:
        return transcript(spec, replay_events(replay.run(cap.records()), spec))


# -- comparing --------------------------------------------------------------------------

def compare(expected: str, actual: str, expected_name: str = "golden", actual_name: str = "actual") -> str:
    """A unified diff (``difflib``) from ``expected`` to ``actual``; "" when they agree.

    Comment lines are ignored, and a line of ``actual`` counts as equal to
    a line of ``expected`` whose verdict has ``*`` where ``actual`` has any text.
    """
    want, got = _significant(expected), _significant(actual)
    patterns = [(re.compile(_wildcard(line)), line) for line in want if _has_wildcard(line)]
    if patterns:
        got = [_adopt(line, patterns) for line in got]
    if want == got:
        return ""
    diff = difflib.unified_diff([w + "\n" for w in want], [g + "\n" for g in got], expected_name, actual_name)
    return "".join(diff)


def _significant(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _has_wildcard(line: str) -> bool:
    return VERDICT_MARK in line and "*" in line.rpartition(VERDICT_MARK)[2]


def _wildcard(line: str) -> str:
    packet, _, outcome = line.rpartition(VERDICT_MARK)
    pattern = ".+".join(re.escape(part) for part in outcome.split("*"))
    return re.escape(packet + VERDICT_MARK) + pattern + r"\Z"


def _adopt(line: str, patterns: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, expected in patterns:
        if pattern.match(line):
            return expected
    return line


def read_golden(path: str) -> str:
    """The text of a golden file.

    Raises:
        GoldenError: the file cannot be read or is not a transcript.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise GoldenError(path, "", err.strerror or str(err)) from None
    except UnicodeDecodeError as err:
        raise GoldenError(path, f"byte {err.start}", "not UTF-8 text") from None
    if not text.startswith(FORMAT.split()[0]):
        raise GoldenError(path, "line 1", f"not a golden transcript (expected {FORMAT!r})")
    return text


def write_golden(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (parent directories are created).

    Raises:
        GoldenError: the file cannot be written.
    """
    import os

    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        raise GoldenError(path, "", err.strerror or str(err)) from None
