"""STUB (to be replaced): IPv4 receive path."""
from __future__ import annotations
from .dropreason import DropReason
from .verdict import Verdict, drop


def receive(kernel, packet: bytes, device: str) -> Verdict:  # type: ignore[no-untyped-def]
    return drop(DropReason.NOT_SPECIFIED, "IPv4 receive path not written yet")
