"""Exceptions of the kernel oracle."""

from __future__ import annotations

from ..errors import PktdemuxError


class OracleUnavailable(PktdemuxError):
    """The real kernel cannot be asked on this machine.

    Raised before any packet is sent: not root, no ``unshare``, no
    ``/dev/net/tun``, or the namespace or TUN device could not be created.
    ``reason`` says which, in one sentence.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"kernel oracle unavailable: {reason}")
        self.reason = reason


class OracleError(PktdemuxError):
    """The namespace ran but the scenario could not be carried out.

    For example the helper process crashed, timed out, or a TCP handshake that
    sets up an ESTABLISHED socket got no SYN-ACK.  ``detail`` holds the
    helper's own message (its last error line) when there is one.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(f"{message}: {detail}" if detail else message)
        self.detail = detail
