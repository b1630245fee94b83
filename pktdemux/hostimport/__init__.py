"""Host files from what a production host's user has: ``ss`` output, copies
of /proc/net, or only a capture.

Pure functions (text or capture records in, host-file text out); reading the
files is :mod:`pktdemux.cli_host`'s job.

* :func:`parse_ss` (:mod:`.ss`), :func:`parse_proc_net` and
  :func:`parse_ip_addr_json` (:mod:`.procnet`): sources → :class:`Observed` sockets.
* :func:`build_host` (:mod:`.table`): sockets → a table Linux accepts, with
  the reasons for every guess.
* :func:`infer_host` (:mod:`.infer`): capture records → the same, from the
  host's replies; :func:`stack_signs`: what one reply says of the stack
  that sent it (Linux or not).
* :func:`render` (:mod:`.writer`): → host-file text (TOML with comments).
"""

from __future__ import annotations

from .infer import infer_host, stack_signs
from .model import Imported, Observed
from .procnet import IpAddresses, parse_ip_addr_json, parse_proc_net
from .ss import Listing, parse_ss
from .table import build_host
from .writer import render

__all__ = [
    "Imported",
    "IpAddresses",
    "Listing",
    "Observed",
    "build_host",
    "infer_host",
    "parse_ip_addr_json",
    "parse_proc_net",
    "parse_ss",
    "render",
    "stack_signs",
]
