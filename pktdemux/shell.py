"""The Scapy edge of pktdemux, and the interactive shell built on it.

* :func:`to_wire` / :func:`decode`: Scapy packets in and out of a
  :class:`~pktdemux.host.Host` (Scapy builds the bytes: lengths, checksums).
* :func:`namespace`, :func:`banner`, :func:`interact`: ``pktdemux shell``,
  a Scapy-style console with ``host`` and Scapy's common layers loaded.
  IPython when it is installed (``pip install pktdemux[shell]``), the
  standard library's :class:`code.InteractiveConsole` otherwise.

Only specific Scapy modules are imported (never ``scapy.all``, which loads
every layer and reads the machine's routing table), and only when called.
"""

from __future__ import annotations

import code
from collections.abc import Mapping
from typing import Any

#: what a user can type first, shown in the banner
EXAMPLES = (
    'host.receive(IP(src="10.0.0.2", dst="10.0.0.1")/TCP(dport=81, flags="S"))',
    'web = host.socket("tcp"); web.bind("0.0.0.0", 80); web.listen()',
    "host.ss()",
    'host.explain(IP(dst="10.0.0.1")/UDP(dport=53))',
)


def to_wire(packet: Any, peers: Mapping[int, str], own: Mapping[int, str]) -> bytes:
    """The IP bytes of a Scapy packet, as a person expects them.

    A link layer is stripped; a bare transport layer (``TCP(dport=81)``)
    gets an IPv4 header.  An unset source becomes ``peers[version]`` and an
    unset destination ``own[version]``, so Scapy never consults the
    machine's routing table.  Scapy computes lengths and checksums the user
    did not set.

    Raises:
        TypeError: ``packet`` is not a Scapy packet.
        ValueError: no destination given and the host has no address of that family.
    """
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Packet

    if not isinstance(packet, Packet):
        raise TypeError(f"expected a Scapy packet or bytes, got {type(packet).__name__}")
    ip = packet.getlayer(IP) or packet.getlayer(IPv6)
    pkt = ip.copy() if ip is not None else IP() / packet.copy()
    version = 4 if isinstance(pkt, IP) else 6
    if "src" not in pkt.fields:
        pkt.src = peers[version]
    if "dst" not in pkt.fields:
        if version not in own:
            raise ValueError(f"the host has no IPv{version} address: give the packet a dst")
        pkt.dst = own[version]
    return bytes(pkt)


def decode(raw: bytes) -> Any:
    """A Scapy packet (``IP`` or ``IPv6``) dissected from IP packet bytes."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    return IPv6(raw) if raw and raw[0] >> 4 == 6 else IP(raw)


def namespace(host: Any) -> dict[str, Any]:
    """The shell's names: ``host``, ``Host``, Scapy's common layers and helpers."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.packet import Raw, ls
    from scapy.utils import hexdump

    from .host import Host

    return {"host": host, "Host": Host, "IP": IP, "IPv6": IPv6, "TCP": TCP, "UDP": UDP, "ICMP": ICMP,
            "ICMPv6EchoRequest": ICMPv6EchoRequest, "Raw": Raw, "ls": ls, "hexdump": hexdump}


def banner(host: Any) -> str:
    """What the shell says first: what ``host`` is, and what to type."""
    lines = [
        f"pktdemux shell: {host!r} is `host` (an emulated Linux kernel; nothing here touches the network).",
        "Type a packet and see what the kernel does with it, for example:",
        *(f"  {example}" for example in EXAMPLES),
        "Time is host.clock (seconds); help(host) lists the calls.",
    ]
    return "\n".join(lines)


def interact(host: Any, *, ipython: bool | None = None) -> None:
    """Run the interactive shell on the terminal until the user leaves it.

    Args:
        ipython: True to require IPython, False for the plain console, None
            for IPython when it is installed.

    Raises:
        ImportError: ``ipython=True`` and IPython is not installed.
    """
    names = namespace(host)
    if ipython is not False:
        try:
            import IPython
            from traitlets.config import Config
        except ImportError:
            if ipython:
                raise
        else:
            config = Config()
            config.TerminalInteractiveShell.banner2 = banner(host) + "\n"
            config.InteractiveShellApp.exec_lines = [
                "from pktdemux.shell import show_socket_errors_briefly as _brief; _brief(get_ipython()); del _brief",
            ]
            IPython.start_ipython(argv=[], user_ns=names, config=config)
            return
    _Console(names).interact(banner=banner(host), exitmsg="")


def socket_error_line(error: BaseException) -> str:
    """How the shells show a refused socket call: one line, as Python names it.

    ``OSError: [Errno 98] Address already in use: overlaps "nginx" tcp://0.0.0.0:80``
    """
    return f"OSError: {error}"


def show_socket_errors_briefly(ipython_shell: Any) -> None:
    """Have IPython print an emulated socket call's error as one line.

    EADDRINUSE and friends are the answer a learner asked for, not a bug in
    pktdemux: a traceback through the emulation's own frames would bury it.
    Every other exception keeps IPython's usual traceback.
    """
    from .errors import SocketError

    def brief(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> None:
        print(socket_error_line(value))

    ipython_shell.set_custom_exc((SocketError,), brief)


class _Console(code.InteractiveConsole):
    """The standard console, with emulated socket errors on one line."""

    def showtraceback(self) -> None:
        import sys

        from .errors import SocketError

        error = sys.exc_info()[1]
        if isinstance(error, SocketError):
            self.write(socket_error_line(error) + "\n")
        else:
            super().showtraceback()
