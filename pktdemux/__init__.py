"""pktdemux: what would this host's Linux kernel have done with that packet?

An emulation of the Linux 6.x receive path at packet level: socket lookup,
drop reasons and byte-exact replies (TCP RST, SYN-ACK, ICMP errors, echo).
"""

from __future__ import annotations

from .dropreason import DropReason
from .errors import CaptureError, HostFileError, InputError, PktdemuxError, SocketError
from .host import Host
from .kernel import Interface, Kernel
from .sockets import Proto, Socket, TcpState
from .sysctl import Sysctls
from .verdict import Verdict

__version__ = "0.1.0"

__all__ = [
    "CaptureError",
    "DropReason",
    "Host",
    "HostFileError",
    "InputError",
    "Interface",
    "Kernel",
    "PktdemuxError",
    "Proto",
    "Socket",
    "SocketError",
    "Sysctls",
    "TcpState",
    "Verdict",
    "__version__",
]
