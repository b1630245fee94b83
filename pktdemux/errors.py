"""Exceptions raised by pktdemux.

Tree::

    PktdemuxError
     ├── SocketError (also OSError: errno as the kernel returns it)
     │    raised by bind()/listen()/connect() rules, e.g. EADDRINUSE
     └── InputError (also ValueError): bad input file
          ├── HostFileError      a malformed or impossible host file
          └── CaptureError       a corrupt, truncated or unsupported capture

Malformed *packets* never raise: they become a drop verdict with a reason.
``InputError`` carries ``path``, ``position`` and ``reason`` so that adapters
can print a one-line message naming all three.
"""

from __future__ import annotations

import errno as _errno

#: The C library's messages for the errnos the socket rules raise.
_MESSAGES = {
    _errno.EADDRINUSE: "Address already in use",
    _errno.EADDRNOTAVAIL: "Cannot assign requested address",
    _errno.EACCES: "Permission denied",
    _errno.EINVAL: "Invalid argument",
    _errno.EAFNOSUPPORT: "Address family not supported by protocol",
    _errno.EISCONN: "Transport endpoint is already connected",
    _errno.ENOTCONN: "Transport endpoint is not connected",
    _errno.ECONNREFUSED: "Connection refused",
    _errno.ECONNRESET: "Connection reset by peer",
    _errno.EOPNOTSUPP: "Operation not supported",
    _errno.EBADF: "Bad file descriptor",
}


class PktdemuxError(Exception):
    """Base of every pktdemux exception."""


class SocketError(PktdemuxError, OSError):
    """A socket call failed as it would on Linux.

    ``errno`` is the kernel's error number (``errno.EADDRINUSE``, ...),
    ``rule`` names the kernel function or spec section that refused it.
    """

    def __init__(self, err: int, detail: str, *, rule: str = "") -> None:
        message = f"[Errno {err}] {_MESSAGES.get(err, _errno.errorcode.get(err, str(err)))}: {detail}"
        super().__init__(err, message)
        self.errno: int = err  # never None here, unlike OSError's
        self.detail = detail
        self.rule = rule

    def __str__(self) -> str:
        return self.args[1]

    @property
    def errname(self) -> str:
        """The symbolic errno name, e.g. ``"EADDRINUSE"``."""
        if self.errno == _errno.EOPNOTSUPP:
            return "EOPNOTSUPP"  # Linux's name; Python's table says ENOTSUP for the same number
        return _errno.errorcode.get(self.errno, str(self.errno))


class InputError(PktdemuxError, ValueError):
    """A bad input file: ``path``, ``position`` (free text) and ``reason``."""

    def __init__(self, path: str, position: str, reason: str) -> None:
        self.path = path
        self.position = position
        self.reason = reason
        where = f"{path}: {position}" if position else path
        super().__init__(f"{where}: {reason}")


class HostFileError(InputError):
    """A host file that cannot be read, or describes an impossible socket table."""


class CaptureError(InputError):
    """A capture that is corrupt, cut short or in an unsupported format."""
