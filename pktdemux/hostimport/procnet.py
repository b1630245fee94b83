"""Parse copies of /proc/net/{tcp,tcp6,udp,udp6} into :class:`Observed` sockets.

One line per socket after a header, as net/ipv4/tcp_ipv4.c:get_tcp4_sock
(and tcp6_sock_show, udp4_format_sock, udp6_sock_seq_show) print it::

    sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
     0: 0100007F:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0  0 161296 ...

* Addresses are the kernel's ``__be32`` words printed with ``%08X``: each
  32-bit word appears in the host's byte order (little-endian on x86 and
  arm64: 127.0.0.1 reads ``0100007F``), an IPv6 address as four such words.
  ``byteorder="big"`` reads copies from a big-endian host.
* Ports are hexadecimal, in host order.
* ``st`` is a state code of include/net/tcp_states.h (UDP uses TCP_CLOSE
  for unconnected and TCP_ESTABLISHED for connected sockets).
* The uid and inode columns are kept (the inode names the socket in comments).

Not shown by /proc/net: a listener's backlog (``rx_queue`` of a LISTEN
socket is the accept queue's current length), IPV6_V6ONLY, SO_BINDTODEVICE,
SO_REUSEADDR, SO_REUSEPORT and the owning process.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from ..errors import InputError
from ..sockets import Proto
from .model import Observed

#: include/net/tcp_states.h, as ``ss`` names them.
TCP_STATES = {
    0x01: "ESTAB", 0x02: "SYN-SENT", 0x03: "SYN-RECV", 0x04: "FIN-WAIT-1", 0x05: "FIN-WAIT-2",
    0x06: "TIME-WAIT", 0x07: "UNCONN", 0x08: "CLOSE-WAIT", 0x09: "LAST-ACK", 0x0A: "LISTEN",
    0x0B: "CLOSING", 0x0C: "SYN-RECV",  # TCP_NEW_SYN_RECV: a request socket
    0x0D: "UNCONN",  # TCP_BOUND_INACTIVE
}

#: File name → (protocol, family).
FILES = {"tcp": (Proto.TCP, 4), "tcp6": (Proto.TCP, 6), "udp": (Proto.UDP, 4), "udp6": (Proto.UDP, 6)}


def parse_proc_net(text: str, name: str, path: str = "", byteorder: str = "little") -> list[Observed]:
    """Parse one /proc/net table.

    Args:
        text: the file's content.
        name: which table: ``tcp``, ``tcp6``, ``udp`` or ``udp6``.
        path: names the file in errors (default: ``/proc/net/NAME``).
        byteorder: ``"little"`` or ``"big"``, the byte order of the host
            the copy comes from.

    Raises:
        InputError: ``PATH: line N: REASON`` for a malformed line.
        ValueError: for an unknown ``name`` or ``byteorder``.
    """
    if name not in FILES:
        raise ValueError(f"unknown /proc/net table {name!r} (expected one of {', '.join(FILES)})")
    if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
    path = path or f"/proc/net/{name}"
    proto, family = FILES[name]
    sockets = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0] == "sl":
            continue
        where = f"line {n}"
        if len(words) < 10 or not words[0].endswith(":"):
            raise InputError(path, where, "expected 'sl: local_address rem_address st tx_queue:rx_queue "
                                          f"tr:tm->when retrnsmt uid timeout inode ...', got {len(words)} columns")
        local, remote = (_endpoint(w, family, byteorder, path, where) for w in words[1:3])
        state = _state(words[3], path, where)
        uid = _number(words[7], 10, "uid", path, where)
        inode = _number(words[9], 10, "inode", path, where)
        obs = Observed(proto=proto, family=family, address=local[0], port=local[1], state=state,
                       uid=uid, where=f"{name} {where} (inode {inode})")
        if remote[1]:
            obs.peer = remote
        sockets.append(obs)
    return sockets


def _number(text: str, base: int, what: str, path: str, where: str) -> int:
    try:
        return int(text, base)
    except ValueError:
        raise InputError(path, where, f"{what} {text!r} is not a number") from None


def _state(text: str, path: str, where: str) -> str:
    code = _number(text, 16, "state", path, where)
    if code not in TCP_STATES:
        raise InputError(path, where, f"unknown state code {text} (include/net/tcp_states.h has 01..0D)")
    return TCP_STATES[code]


def _endpoint(text: str, family: int, byteorder: str, path: str, where: str) -> tuple[bytes, int]:
    addr_hex, sep, port_hex = text.partition(":")
    digits = 8 if family == 4 else 32
    if not sep or len(addr_hex) != digits or len(port_hex) != 4:
        raise InputError(path, where, f"address {text!r} is not {digits} hex digits, ':', 4 hex digits")
    try:
        words = [int(addr_hex[i:i + 8], 16) for i in range(0, digits, 8)]
        port = int(port_hex, 16)
    except ValueError:
        raise InputError(path, where, f"address {text!r} is not hexadecimal") from None
    return b"".join(w.to_bytes(4, byteorder) for w in words), port  # type: ignore[arg-type]


@dataclass
class IpAddresses:
    """The host's devices and addresses from ``ip -j addr``.

    Attributes:
        interface: the device the host file describes: the non-loopback
            device with the most addresses (None when there is none).
        mtu: that device's MTU.
        addresses: every non-loopback address with its prefix (those of
            other devices too: a host file has one device besides lo).
        notes: lines for the header (devices merged).
    """

    interface: str | None = None
    mtu: int | None = None
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_ip_addr_json(text: str, path: str = "<ip -j addr>") -> IpAddresses:
    """Parse ``ip -j addr`` (or ``ip -j -p addr``) output.

    Raises:
        InputError: not JSON, or not the list of devices ``ip -j addr`` prints.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"line {err.lineno}", f"not JSON: {err.msg}") from None
    if not isinstance(doc, list):
        raise InputError(path, "", "expected the JSON list of devices `ip -j addr` prints")
    devices = []
    for i, dev in enumerate(doc):
        if not isinstance(dev, dict) or not isinstance(dev.get("ifname"), str):
            raise InputError(path, f"[{i}]", "a device without ifname")
        if dev["ifname"] == "lo" or "LOOPBACK" in dev.get("flags", []):
            continue
        addrs = []
        for j, info in enumerate(dev.get("addr_info", [])):
            try:
                if info.get("family") in ("inet", "inet6"):
                    addrs.append(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise InputError(path, f"[{i}].addr_info[{j}]", "expected local and prefixlen") from None
        devices.append((dev["ifname"], dev.get("mtu"), addrs))
    result = IpAddresses()
    if not devices:
        return result
    name, mtu, _ = max(devices, key=lambda d: len(d[2]))
    result.interface, result.mtu = name, mtu if isinstance(mtu, int) else None
    for dev_name, _, addrs in devices:
        result.addresses += [a for a in addrs if a not in result.addresses]
    others = [d[0] for d in devices if d[0] != name and d[2]]
    if others:
        result.notes.append(f"Addresses of {', '.join(others)} are put on {name}: a host file describes one "
                            "device besides lo.")
    return result
