"""STUB (to be replaced): TCP receive path."""
from __future__ import annotations
from .dropreason import DropReason
from .verdict import Verdict, drop


def receive(kernel, pkt) -> Verdict:  # type: ignore[no-untyped-def]
    return drop(DropReason.NOT_SPECIFIED, "TCP not written yet")
