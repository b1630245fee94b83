"""An :class:`~pktdemux.hostimport.model.Imported` host → host-file text.

TOML is written by :mod:`tomli_w`, one table at a time, so that each gets
its comments above it; :func:`pktdemux.hostfile.parse_host` reads the
result back to the same :class:`~pktdemux.hostfile.HostSpec`.
"""

from __future__ import annotations

from collections.abc import Iterable

import tomli_w

from ..hostfile import host_to_dict
from .model import Imported

#: Comment lines are wrapped at this width.
WIDTH = 78


def render(imported: Imported) -> str:
    """The host file: header comments, ``[host]``, ``[sysctl]``, ``[[sockets]]``,
    each table with its notes above it.

    Raises:
        ValueError: for a spec :func:`pktdemux.hostfile.host_to_dict` refuses.
    """
    doc = host_to_dict(imported.spec)
    parts = [_comments(imported.header)]
    parts.append(_comments(imported.host_notes) + tomli_w.dumps({"host": doc.get("host", {"addresses": []})}))
    if "sysctl" in doc:
        parts.append(_comments(imported.sysctl_notes) + tomli_w.dumps({"sysctl": doc["sysctl"]}))
    notes = imported.socket_notes
    for i, entry in enumerate(doc.get("sockets", [])):
        above = notes[i] if i < len(notes) else ()
        # The header is written here because tomli_w inlines short arrays of
        # tables; every key and value still comes from tomli_w.
        parts.append(_comments(above) + "[[sockets]]\n" + tomli_w.dumps(entry))
    return "\n".join(p for p in parts if p)


def _comments(lines: Iterable[str]) -> str:
    out: list[str] = []
    for line in lines:
        out += _wrap(line)
    return "".join(f"# {line}\n".replace("# \n", "#\n") for line in out)


def _wrap(line: str) -> list[str]:
    """Greedy wrap; a line's leading spaces are kept on its continuation lines."""
    indent = line[: len(line) - len(line.lstrip())]
    words = line.split()
    if not words:
        return [""]
    lines, current = [], indent + words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) > WIDTH - 2:
            lines.append(current)
            current = indent + "  " + word
        else:
            current += " " + word
    lines.append(current)
    return lines


