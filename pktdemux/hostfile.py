"""Host files: the emulated host's addresses, sysctls and sockets, in TOML.

::

    [host]
    addresses = ["10.0.0.1/24", "fd00::1/64"]  # the prefix gives the subnet broadcast
    interface = "eth0"                          # optional, default "eth0"; "lo": loopback only
    mtu = 1500                                  # optional, default 1500
    initrwnd = 10                               # optional: the routes' initrwnd (RTAX_INITRWND)

    [sysctl]                                    # optional; Linux names
    "net.ipv4.icmp_ratelimit" = 1000

    [[sockets]]
    name = "web server"          # optional, default: the label
    label = "tcp://10.0.0.1:80"  # proto://address:port, [v6] in brackets
    listen = 128                 # TCP backlog: a LISTEN socket
    peer = "10.0.0.2:6000"       # a connected UDP socket / an ESTABLISHED TCP connection
    reuseport = false            # SO_REUSEPORT
    reuseaddr = false            # SO_REUSEADDR
    v6only = false               # IPV6_V6ONLY (IPv6 sockets; default net.ipv6.bindv6only)
    device = "eth0"              # SO_BINDTODEVICE
    process = "nginx"            # owner as ``ss -p`` shows it, with pid and uid (0 = root)
    pid = 1234
    uid = 0
    closed = 1388651877.38       # optional: the application close()s it at this capture time

Three steps, each testable on its own: :func:`parse_host` (text →
:class:`HostSpec`, via :mod:`tomllib` and :func:`host_from_dict`),
:func:`build_kernel` (HostSpec → :class:`~pktdemux.kernel.Kernel`, making
Linux's socket calls in file order) and :func:`load_host` (reads the file).
:func:`host_to_dict` turns a HostSpec back into the document it came from.

Every problem is a :class:`~pktdemux.errors.HostFileError` naming the path,
the position (``sockets[2].label``, ``line 7``) and the reason, on one line.
A host without addresses is allowed: it then has ``lo`` and a device without
addresses, so only wildcard and loopback sockets can be built on it (a
specific address fails with EADDRNOTAVAIL, a peer off ``lo`` with
ENETUNREACH).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import HostFileError, SocketError
from .kernel import LOOPBACK, Interface, Kernel, loopback
from .sockets import Proto, Socket
from .sysctl import Sysctls
from .wire import format_addr, format_endpoint

SysctlValue = int | tuple[int, ...]

DEFAULT_INTERFACE = "eth0"
DEFAULT_MTU = 1500
MIN_MTU, MAX_MTU = 68, 65536  # IPv4 minimum (RFC 791); lo's 65536
IFNAMSIZ = 16

_LABEL = re.compile(r"(?P<proto>[a-z]+)://(?:\[(?P<v6>[^\]]*)\]|(?P<v4>[^:\[\]]*)):(?P<port>\d{1,5})")
_ENDPOINT = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<v4>[^:\[\]]*)):(?P<port>\d{1,5})")
_TOML_POSITION = re.compile(r"\s*\(at (line \d+), column \d+\)|\s*\(at (end of document)\)")

_TOP_KEYS = ("host", "sysctl", "sockets")
_HOST_KEYS = ("addresses", "interface", "mtu", "initrwnd")
#: ``ip route ... initrwnd N`` takes any u32; a window of more than 65535 MSS
#: is no cap at all (tcp_select_initial_window multiplies it by the MSS).
MAX_INITRWND = 65535
_SOCKET_KEYS = ("name", "label", "listen", "peer", "reuseport", "reuseaddr", "v6only",
                "device", "process", "pid", "uid", "closed")


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketSpec:
    """One ``[[sockets]]`` entry.

    Attributes:
        proto, family: TCP or UDP; 4 (AF_INET) or 6 (AF_INET6).
        address: bound address, packed (4 or 16 bytes); zeros = wildcard.
        port: bound port, host byte order; 0 = an ephemeral port.
        name: the display name; "" means the label.
        listen: backlog of a LISTEN socket, else None.
        peer: (address packed as written, port) of a connected socket, else None.
        reuseaddr, reuseport, v6only, device: SO_REUSEADDR, SO_REUSEPORT,
            IPV6_V6ONLY (None = ``net.ipv6.bindv6only``), SO_BINDTODEVICE.
        process, pid, uid: the owner.
        closed: capture time (seconds since the epoch) at which the
            application close()s the socket, else None: it lives through the
            capture.  A host file cannot say when a socket was opened: one
            with a close time exists from the start.
    """

    proto: Proto
    family: int
    address: bytes
    port: int
    name: str = ""
    listen: int | None = None
    peer: tuple[bytes, int] | None = None
    reuseaddr: bool = False
    reuseport: bool = False
    v6only: bool | None = None
    device: str | None = None
    process: str | None = None
    pid: int | None = None
    uid: int = 0
    closed: float | None = None

    @property
    def label(self) -> str:
        """``proto://address:port`` as in the host file."""
        addr = format_addr(self.address)
        return f"{self.proto}://{'[' + addr + ']' if self.family == 6 else addr}:{self.port}"

    @property
    def peer_text(self) -> str | None:
        """The peer as ``10.0.0.2:6000`` / ``[fd00::2]:6000``, or None."""
        return None if self.peer is None else format_endpoint(*self.peer)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSpec:
    """A parsed host file.

    Attributes:
        interfaces: the host's devices (``lo`` is implicit).
        sysctl: the sysctls set by the file, values coerced (tuples for pairs).
        sockets: socket specs in file order (the order of the calls).
        path: where the spec came from, for error messages (not compared).
    """

    interfaces: tuple[Interface, ...] = ()
    sysctl: Mapping[str, SysctlValue] = field(default_factory=lambda: MappingProxyType({}))
    sockets: tuple[SocketSpec, ...] = ()
    path: str = field(default="<host>", compare=False)


class _Invalid(Exception):
    """A bad value at ``position``; turned into HostFileError with the path."""

    def __init__(self, position: str, reason: str) -> None:
        super().__init__(position, reason)
        self.position = position
        self.reason = reason


# -- reading ------------------------------------------------------------------

def load_host(path: str) -> HostSpec:
    """Read and parse the host file at ``path``.

    Raises:
        HostFileError: unreadable file, TOML syntax error or bad value.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise HostFileError(path, "", err.strerror or str(err)) from None
    except UnicodeDecodeError as err:
        raise HostFileError(path, f"byte {err.start}", "not UTF-8 text") from None
    return parse_host(text, path)


def parse_host(text: str, path: str = "<host>") -> HostSpec:
    """Parse host-file text (TOML 1.0, :mod:`tomllib`).

    Raises:
        HostFileError: a syntax error (position ``line N``), an unknown key
            or a bad value (position like ``sockets[2].label``).
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        found = _TOML_POSITION.search(message)
        position = (found.group(1) or found.group(2)) if found else ""
        reason = _TOML_POSITION.sub("", message).strip()
        raise HostFileError(path, position, f"TOML syntax: {reason}") from None
    return host_from_dict(doc, path)


def host_from_dict(doc: Mapping[str, Any], path: str = "<host>") -> HostSpec:
    """A HostSpec from a parsed TOML document (the inverse of :func:`host_to_dict`).

    Raises:
        HostFileError: an unknown key or a bad value.
    """
    try:
        _known_keys(doc, _TOP_KEYS, "")
        host = _table(doc.get("host", {}), "host")
        sockets = doc.get("sockets", [])
        if not isinstance(sockets, list):
            raise _Invalid("sockets", "must be an array of tables ([[sockets]])")
        return HostSpec(
            interfaces=(_interface(host),),
            sysctl=MappingProxyType(_sysctls(_table(doc.get("sysctl", {}), "sysctl"))),
            sockets=tuple(_socket(entry, f"sockets[{i}]") for i, entry in enumerate(sockets)),
            path=path,
        )
    except _Invalid as bad:
        raise HostFileError(path, bad.position, bad.reason) from None


def _known_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            position = f"{where}.{key}" if where else key
            raise _Invalid(position, f"unknown key (expected one of: {', '.join(allowed)})")


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(where, "must be a table")
    return value


def _interface(host: Mapping[str, Any]) -> Interface:
    """[host] → the host's one non-loopback device."""
    _known_keys(host, _HOST_KEYS, "host")
    name = host.get("interface", DEFAULT_INTERFACE)
    if not isinstance(name, str) or not 0 < len(name) < IFNAMSIZ or re.search(r"[\s/:]", name):
        raise _Invalid("host.interface", f"not a device name: {name!r}")
    # interface = "lo": a host seen on loopback only; lo keeps 127.0.0.1/8 and ::1
    base = loopback() if name == LOOPBACK else Interface(name, [], DEFAULT_MTU)
    mtu = _integer(host.get("mtu", base.mtu), "host.mtu", MIN_MTU, MAX_MTU)
    addresses = host.get("addresses", [])
    if not isinstance(addresses, list):
        raise _Invalid("host.addresses", "must be an array of strings like \"10.0.0.1/24\"")
    parsed = list(base.addresses)
    for i, text in enumerate(addresses):
        where = f"host.addresses[{i}]"
        try:
            addr = ipaddress.ip_interface(text) if isinstance(text, str) else None
        except ValueError:
            addr = None
        if addr is None:
            raise _Invalid(where, f"not an address with prefix length: {text!r}")
        if addr in parsed:
            raise _Invalid(where, f"{text} is listed twice")
        parsed.append(addr)
    # initrwnd: the initrwnd metric of the routes out of the device (its
    # on-link prefixes and the default routes): caps a new connection's
    # initial window at N x MSS; 0 = not set (tcp_select_initial_window)
    initrwnd = _integer(host.get("initrwnd", 0), "host.initrwnd", 0, MAX_INITRWND)
    return Interface(name, parsed, mtu, initrwnd=initrwnd)


def _sysctls(table: Mapping[str, Any]) -> dict[str, SysctlValue]:
    """[sysctl] → coerced values; dotted names may be written quoted or as nested tables."""
    values: dict[str, SysctlValue] = {}
    for name, value in _flatten(table, ""):
        where = f'sysctl."{name}"'
        try:
            values[name] = Sysctls({name: value})[name]
        except KeyError:
            raise _Invalid(where, "unknown sysctl (not one the emulation reads)") from None
        except ValueError as err:
            raise _Invalid(where, str(err)) from None
    return values


def _flatten(table: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        items.extend(_flatten(value, name) if isinstance(value, dict) else [(name, value)])
    return items


def _socket(entry: Any, where: str) -> SocketSpec:
    """One [[sockets]] table → SocketSpec."""
    entry = _table(entry, where)
    _known_keys(entry, _SOCKET_KEYS, where)
    if "label" not in entry:
        raise _Invalid(f"{where}.label", "missing (e.g. label = \"tcp://10.0.0.1:80\")")
    proto, address, port = _label(entry["label"], f"{where}.label")
    family = 4 if len(address) == 4 else 6
    spec = SocketSpec(
        proto=proto, family=family, address=address, port=port,
        name=_text(entry.get("name", ""), f"{where}.name", allow_empty=True),
        listen=_optional(entry, "listen", where, lambda v, w: _integer(v, w, 0, 2**31 - 1)),
        peer=_optional(entry, "peer", where, _endpoint),
        reuseaddr=_flag(entry.get("reuseaddr", False), f"{where}.reuseaddr"),
        reuseport=_flag(entry.get("reuseport", False), f"{where}.reuseport"),
        v6only=_optional(entry, "v6only", where, _flag),
        device=_optional(entry, "device", where, _text),
        process=_optional(entry, "process", where, _text),
        pid=_optional(entry, "pid", where, lambda v, w: _integer(v, w, 0, 2**22)),
        uid=_integer(entry.get("uid", 0), f"{where}.uid", 0, 2**32 - 2),
        closed=_optional(entry, "closed", where, _time),
    )
    if spec.listen is not None and spec.peer is not None:
        raise _Invalid(f"{where}.peer", "a LISTEN socket has no peer: give listen or peer, not both")
    if spec.v6only is not None and family == 4:
        raise _Invalid(f"{where}.v6only", "IPV6_V6ONLY applies to IPv6 sockets only")
    return spec


def _label(value: Any, where: str) -> tuple[Proto, bytes, int]:
    match = _LABEL.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _Invalid(where, f"expected proto://address:port such as tcp://10.0.0.1:80 "
                              f"or udp://[::]:53, got {value!r}")
    if match["proto"] not in ("tcp", "udp"):
        raise _Invalid(where, f"protocol must be tcp or udp, not {match['proto']!r}")
    address = _address(match, where)
    return Proto[match["proto"].upper()], address, _port(match["port"], where, 0)


def _endpoint(value: Any, where: str) -> tuple[bytes, int]:
    match = _ENDPOINT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _Invalid(where, f"expected address:port such as 10.0.0.2:6000 or [fd00::2]:6000, got {value!r}")
    return _address(match, where), _port(match["port"], where, 1)


def _address(match: re.Match[str], where: str) -> bytes:
    text = match["v6"] if match["v6"] is not None else match["v4"]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise _Invalid(where, f"not an IP address: {text!r}") from None
    if (ip.version == 6) != (match["v6"] is not None):
        raise _Invalid(where, "IPv6 addresses go in brackets, IPv4 ones without")
    return ip.packed


def _port(text: str, where: str, low: int) -> int:
    port = int(text)
    if not low <= port <= 65535:
        raise _Invalid(where, f"port {port} outside {low}..65535")
    return port


def _optional(entry: Mapping[str, Any], key: str, where: str, convert: Any) -> Any:
    return convert(entry[key], f"{where}.{key}") if key in entry else None


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(where, f"must be true or false, not {value!r}")
    return value


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Invalid(where, f"must be an integer in {low}..{high}, not {value!r}")
    return value


def _time(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**63:
        raise _Invalid(where, f"must be a capture time in seconds since the epoch, not {value!r}")
    return float(value)


def _text(value: Any, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or not (value or allow_empty):
        raise _Invalid(where, f"must be a non-empty string, not {value!r}")
    return value


# -- writing back ---------------------------------------------------------------

def host_to_dict(spec: HostSpec) -> dict[str, Any]:
    """The TOML document of ``spec`` (defaults left out); :func:`host_from_dict` inverts it.

    Raises:
        ValueError: for a spec with more than one non-loopback device, which
            the file format cannot express.
    """
    if len(spec.interfaces) > 1:
        raise ValueError("a host file describes one device (besides the implicit lo)")
    doc: dict[str, Any] = {}
    for iface in spec.interfaces:
        base = loopback() if iface.name == LOOPBACK else Interface(DEFAULT_INTERFACE, [], DEFAULT_MTU)
        host: dict[str, Any] = {"addresses": [str(a) for a in iface.addresses if a not in base.addresses]}
        if iface.name != DEFAULT_INTERFACE:
            host["interface"] = iface.name
        if iface.mtu != base.mtu:
            host["mtu"] = iface.mtu
        if iface.initrwnd:
            host["initrwnd"] = iface.initrwnd
        doc["host"] = host
    if spec.sysctl:
        doc["sysctl"] = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.sysctl.items()}
    if spec.sockets:
        doc["sockets"] = [_socket_dict(s) for s in spec.sockets]
    return doc


def _socket_dict(spec: SocketSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": spec.name} if spec.name else {}
    entry["label"] = spec.label
    optional = {"listen": spec.listen, "peer": spec.peer_text, "v6only": spec.v6only,
                "device": spec.device, "process": spec.process, "pid": spec.pid}
    entry.update({k: v for k, v in optional.items() if v is not None})
    entry.update({k: v for k, v in (("reuseaddr", spec.reuseaddr), ("reuseport", spec.reuseport)) if v})
    if spec.uid:
        entry["uid"] = spec.uid
    if spec.closed is not None:
        entry["closed"] = spec.closed
    return entry


# -- building -------------------------------------------------------------------

def build_kernel(spec: HostSpec, seed: int = 0) -> Kernel:
    """A kernel with ``spec``'s devices and sysctls, its sockets created in file order.

    For each socket, Linux's calls: socket(), setsockopt() (SO_REUSEADDR,
    SO_REUSEPORT, IPV6_V6ONLY, SO_BINDTODEVICE), bind(), then listen(backlog)
    or connect(peer) (spec §7, §8).  A TCP peer makes an ESTABLISHED
    connection with unknown sequence numbers; a UDP peer a connected socket
    whose wildcard address becomes the route's source address (spec §4.2).
    Each socket is named after ``name``, else its label as written.  Port 0
    in a label is bind(port 0), so even a socket with a peer gets an odd
    port (spec §8.2), as after an explicit bind(0) on Linux.  A socket with
    a ``closed`` time gets a timer that close()s it then (:meth:`Kernel.close
    <pktdemux.kernel.Kernel.close>`; its row in a replay is a ``"close"``
    timer row).

    Args:
        seed: seeds the kernel's random draws (:mod:`pktdemux.entropy`),
            ephemeral ports included.

    Raises:
        HostFileError: when a call fails as it would on Linux, e.g.
            ``sockets[1] (api): bind tcp://0.0.0.0:80: EADDRINUSE: overlaps
            tcp://[::]:80 (dual-stack), spec §7.2``.
    """
    interfaces = [Interface(i.name, list(i.addresses), i.mtu, initrwnd=i.initrwnd) for i in spec.interfaces]
    kernel = Kernel(interfaces, Sysctls(dict(spec.sysctl)), seed=seed)
    for i, entry in enumerate(spec.sockets):
        position = f"sockets[{i}]" + (f" ({entry.name})" if entry.name else "")
        step = "socket"
        try:
            sock = _new_socket(kernel, entry)
            step = f"bind {entry.label}"
            kernel.bind(sock, entry.address, entry.port)
            if entry.listen is not None:
                step = f"listen {entry.label}"
                kernel.listen(sock, entry.listen)
            elif entry.peer is not None:
                step = f"connect {entry.label} to {entry.peer_text}"
                kernel.connect(sock, *entry.peer)
        except SocketError as err:
            rule = f", {err.rule}" if err.rule else ""
            raise HostFileError(spec.path, position, f"{step}: {_errname(err)}: {err.detail}{rule}") from None
        if entry.closed is not None:
            _close_at(kernel, sock, entry.closed)
    return kernel


def _close_at(kernel: Kernel, sock: Socket, when: float) -> None:
    """Arm the application's close() of ``sock`` at capture time ``when``."""
    def close(now: float) -> list[bytes]:
        # What close() sends (a connection's FIN) is the timer row's output.
        return list(kernel.close(sock))

    kernel.timers.arm(when, "close", close)


def _errname(err: SocketError) -> str:
    """Linux's name for the errno (EOPNOTSUPP, which Python lists as its alias ENOTSUP)."""
    return "EOPNOTSUPP" if err.errno == errno.EOPNOTSUPP else err.errname


def _new_socket(kernel: Kernel, entry: SocketSpec) -> Socket:
    return kernel.socket(
        entry.proto, entry.family, reuseaddr=entry.reuseaddr, reuseport=entry.reuseport,
        v6only=entry.v6only, device=entry.device, uid=entry.uid,
        name=entry.name or entry.label, process=entry.process, pid=entry.pid,
    )
