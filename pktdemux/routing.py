"""STUB (to be replaced): destination classification and ingress device."""
from __future__ import annotations


class Routing:
    def __init__(self, interfaces):  # type: ignore[no-untyped-def]
        self.interfaces = interfaces

    def ingress_device(self, packet: bytes) -> str:
        return next((i.name for i in self.interfaces if i.name != "lo"), "lo")
