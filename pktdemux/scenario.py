"""Scenario files: a host and the packets it receives, as text (docs/golden.md).

A scenario is the host file's TOML, a ``---`` line, then one packet per line,
in the style of packetdrill::

    [host]
    addresses = ["10.0.0.1/24"]
    ---
    0    < 10.0.0.2:40000 > 10.0.0.1:81 S seq 1000 win 64240 <mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7>
    +0.1 < 10.0.0.2:5353 > 10.0.0.1:53 udp len 20 (ttl 3)
    +0.1 < 10.0.0.2 > 10.0.0.1 icmp echo-request id 1 seq 1 len 56

Times are seconds: ``+T`` after the previous packet, ``T`` after the first.
``handshake`` after a SYN also sends the peer's final ACK once the host
answers with a SYN-ACK.  Payloads of ``len N`` are the bytes 00 01 02 ...
Packets are built with Scapy (an adapter: :mod:`scapy.layers.inet`,
:mod:`scapy.layers.inet6`); the line grammar is read by Lark.

Errors: :class:`ScenarioError` with the file, ``line N`` and the reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from lark import Lark, Transformer, UnexpectedInput
from lark.exceptions import VisitError

from .errors import InputError
from .hostfile import HostSpec, parse_host

SEPARATOR = "---"

#: one packet line; ``(...)`` holds the IP header's fields
_GRAMMAR = r"""
    line: TIME "<" ENDPOINT ">" ENDPOINT body ipfields?
    body: tcp | udp | icmp
    tcp: FLAGS tcpfield*
    tcpfield: "seq" INT -> seq
            | "ack" INT -> ack
            | "win" INT -> win
            | "urg" INT -> urg
            | "len" INT -> len
            | "<" [option ("," option)*] ">" -> options
            | "handshake" -> handshake
            | "bad-csum" -> bad_csum
    option: "mss" INT -> mss
          | "sackOK" -> sack_ok
          | "TS" "val" INT "ecr" INT -> timestamp
          | "nop" -> nop
          | "eol" -> eol
          | "wscale" INT -> wscale
    udp: "udp" "len" INT bad?
    icmp: ICMP "echo-request" echofield* bad?
    echofield: "id" INT -> id | "seq" INT -> seq | "len" INT -> len
    bad: "bad-csum"
    ipfields: "(" ipfield* ")"
    ipfield: "ttl" INT -> ttl
           | "hlim" INT -> ttl
           | "tos" INT -> tos
           | "tc" INT -> tos
           | "id" INT -> id
           | "flow" INT -> flow
           | "DF" -> df
    TIME: /\+?\d+(\.\d+)?/
    ENDPOINT: /\[[0-9a-fA-F:.]+\]:\d+/ | /\d+\.\d+\.\d+\.\d+(:\d+)?/ | /[0-9a-fA-F]*:[0-9a-fA-F:.]+/
    FLAGS: /[SFRPUEW.]+/ | "-"
    ICMP: "icmpv6" | "icmp"
    INT: /0x[0-9a-fA-F]+|\d+/
    %import common.WS_INLINE
    %ignore WS_INLINE
"""
_PARSER = Lark(_GRAMMAR, start="line", parser="lalr")


class ScenarioError(InputError):
    """A scenario file that cannot be read or has a bad line."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One packet to send.

    Attributes:
        offset: seconds after the first packet.
        data: the IPv4/IPv6 packet from its header.
        handshake: send the peer's final ACK when the host answers SYN-ACK.
        line: its line number in the file.
    """

    offset: float
    data: bytes
    handshake: bool = False
    line: int = 0


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed scenario file.

    Attributes:
        path: where it came from (for messages).
        host_text: the host file's TOML, as written.
        host: the parsed host.
        packets: in time order.
    """

    path: str
    host_text: str
    host: HostSpec
    packets: tuple[Packet, ...]


def load_scenario(path: str) -> Scenario:
    """Read and parse a scenario file.

    Raises:
        ScenarioError: unreadable file or bad packet line; HostFileError for
            a bad host part (its line numbers are the file's).
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ScenarioError(path, "", err.strerror or str(err)) from None
    except UnicodeDecodeError as err:
        raise ScenarioError(path, f"byte {err.start}", "not UTF-8 text") from None
    return parse_scenario(text, path)


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """Parse scenario text (see the module docstring).

    Raises:
        ScenarioError: no ``---`` line, or a bad packet line (``line N``).
        HostFileError: a bad host part.
    """
    lines = text.splitlines()
    try:
        cut = next(i for i, line in enumerate(lines) if line.strip() == SEPARATOR)
    except StopIteration:
        raise ScenarioError(path, f"line {len(lines)}", f"no {SEPARATOR!r} line after the host part") from None
    host_text = "\n".join(lines[:cut]) + "\n"
    host = parse_host(host_text, path)
    packets: list[Packet] = []
    for number, line in enumerate(lines[cut + 1:], cut + 2):
        content = line.split("#", 1)[0].strip()
        if content:
            packets.append(_packet(content, number, path, packets[-1].offset if packets else None))
    return Scenario(path, host_text, host, tuple(packets))


def _packet(content: str, number: int, path: str, previous: float | None) -> Packet:
    try:
        fields = _fields(content)
        offset = _offset(fields.pop("time"), previous)
        return Packet(offset, _build(fields), bool(fields.get("handshake")), number)
    except UnexpectedInput as err:
        raise ScenarioError(path, f"line {number}", _syntax(err, content)) from None
    except ValueError as err:
        raise ScenarioError(path, f"line {number}", str(err)) from None


def _fields(content: str) -> dict[str, Any]:
    try:
        return _ToFields().transform(_PARSER.parse(content))
    except VisitError as err:  # Lark wraps what the transformer raised
        if isinstance(err.orig_exc, _RangeError):
            raise err.orig_exc from None
        raise


def _syntax(err: UnexpectedInput, content: str) -> str:
    token = getattr(err, "token", None)
    column = getattr(err, "column", 0) or 0
    if token is not None and token.type == "$END":
        near, column = "end of line", len(content) + 1
    else:
        near = repr(content[column - 1:].split()[0]) if 0 < column <= len(content) else "end of line"
    names = getattr(err, "expected", None) or getattr(err, "allowed", None) or ()
    expected = sorted({_terminal(e) for e in names} - {"$END"})
    hint = f" (expected {', '.join(expected)})" if expected else ""
    return f"column {column}: unexpected {near}{hint}"


def _terminal(name: str) -> str:
    if name in _TERMINALS or name == "$END":
        return _TERMINALS.get(name, name)
    pattern = _PARSER.get_terminal(name).pattern
    return pattern.value if pattern.type == "str" else name.lower()


#: how error messages name the grammar's terminals
_TERMINALS = {"FLAGS": "TCP flags", "ICMP": "icmp", "INT": "a number", "TIME": "a time",
              "ENDPOINT": "an address", "LESSTHAN": "<", "MORETHAN": ">", "LPAR": "(", "RPAR": ")",
              "COMMA": ","}


def _offset(text: str, previous: float | None) -> float:
    value = float(text)
    if text.startswith("+"):
        return round((previous or 0.0) + value, 6)
    if previous is not None and value < previous:
        raise ValueError(f"time {text} is before the previous packet's ({previous:g})")
    return value


class _ToFields(Transformer):  # type: ignore[type-arg]
    """The parse tree as one dict of fields."""

    def INT(self, token: Any) -> int:  # Lark calls terminal callbacks by the terminal's name
        return int(token, 0)

    def line(self, items: list[Any]) -> dict[str, Any]:
        time, src, dst, body, *ip = items
        return {"time": str(time), "src": str(src), "dst": str(dst), **body, "ip": ip[0] if ip else {}}

    def body(self, items: list[Any]) -> dict[str, Any]:
        return items[0]

    def tcp(self, items: list[Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {"proto": "tcp", "flags": str(items[0])}
        for name, value in items[1:]:
            fields[name] = value
        return fields

    def udp(self, items: list[Any]) -> dict[str, Any]:
        return {"proto": "udp", "len": items[0], "bad_csum": len(items) > 1}

    def icmp(self, items: list[Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {"proto": str(items[0]), "bad_csum": False}
        for item in items[1:]:
            if item == ("bad_csum", True):
                fields["bad_csum"] = True
            else:
                fields[item[0]] = item[1]
        return fields

    def bad(self, _: list[Any]) -> tuple[str, bool]:
        return ("bad_csum", True)

    def ipfields(self, items: list[Any]) -> dict[str, Any]:
        return dict(items)

    def options(self, items: list[Any]) -> tuple[str, list[Any]]:
        return ("options", [i for i in items if i is not None])

    def __default__(self, data: Any, children: list[Any], meta: Any) -> tuple[str, Any]:
        # the aliases: seq, ack, win, urg, len, id, ttl, tos, flow, df, handshake, bad_csum
        name = str(data)
        value = children[0] if children else True
        _check_range(name, value)
        return (name, value)

    def mss(self, c: list[Any]) -> tuple[str, int]:
        _check_range("mss", c[0])
        return ("MSS", c[0])

    def sack_ok(self, _: list[Any]) -> tuple[str, bytes]:
        return ("SAckOK", b"")

    def timestamp(self, c: list[Any]) -> tuple[str, tuple[int, int]]:
        _check_range("TS val", c[0])
        _check_range("ecr", c[1])
        return ("Timestamp", (c[0], c[1]))

    def nop(self, _: list[Any]) -> tuple[str, None]:
        return ("NOP", None)

    def eol(self, _: list[Any]) -> tuple[str, None]:
        return ("EOL", None)

    def wscale(self, c: list[Any]) -> tuple[str, int]:
        _check_range("wscale", c[0])
        return ("WScale", c[0])


#: the largest value of each numeric field (bits of its header field)
_MAXIMUM = {"seq": 2**32 - 1, "ack": 2**32 - 1, "TS val": 2**32 - 1, "ecr": 2**32 - 1, "win": 65535,
            "urg": 65535, "mss": 65535, "id": 65535, "len": 65000, "ttl": 255, "tos": 255,
            "wscale": 255, "flow": 2**20 - 1}


def _check_range(name: str, value: Any) -> None:
    maximum = _MAXIMUM.get(name)
    if maximum is not None and not 0 <= value <= maximum:
        raise _RangeError(f"{name} {value} is out of range (0..{maximum})")


class _RangeError(ValueError):
    """A field value that does not fit its header field."""


# -- building packets (Scapy) -------------------------------------------------------

_FLAG_BITS = {"F": "F", "S": "S", "R": "R", "P": "P", ".": "A", "U": "U", "E": "E", "W": "C"}


def _build(f: dict[str, Any]) -> bytes:
    """The packet bytes for the fields of one line.

    Raises:
        ValueError: bad addresses, ports, mixed families, values out of range.
    """
    (src, sport), (dst, dport) = _endpoint(f["src"]), _endpoint(f["dst"])
    v6 = ":" in src
    if v6 != (":" in dst):
        raise ValueError("source and destination are of different address families")
    ports = f["proto"] in ("tcp", "udp")
    if ports != (sport is not None and dport is not None):
        raise ValueError("TCP and UDP need address:port on both sides; ICMP takes bare addresses")
    if f["proto"] == ("icmp" if v6 else "icmpv6"):
        raise ValueError(f"{f['proto']} does not go with {'IPv6' if v6 else 'IPv4'} addresses")
    try:
        packet = _ip(src, dst, v6, f["ip"]) / _l4(f, sport, dport, v6)
        data = bytes(packet)
    except (OverflowError, ValueError, TypeError, struct.error) as err:  # out-of-range fields
        raise ValueError(f"cannot build the packet: {str(err).splitlines()[0]}") from None
    return _corrupt(data, v6) if f.get("bad_csum") else data


def _endpoint(text: str) -> tuple[str, int | None]:
    import ipaddress

    addr, port = text, None
    if text.startswith("["):
        addr, _, port_text = text[1:].partition("]:")
        port = int(port_text)
    elif "." in text and ":" in text:
        addr, _, port_text = text.partition(":")
        port = int(port_text)
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {text}")
    try:
        return str(ipaddress.ip_address(addr)), port
    except ValueError:
        raise ValueError(f"not an address: {addr!r}") from None


def _ip(src: str, dst: str, v6: bool, ip: dict[str, Any]) -> Any:
    if v6:
        from scapy.layers.inet6 import IPv6

        if "id" in ip or "df" in ip:
            raise ValueError("id and DF are IPv4 fields")
        return IPv6(src=src, dst=dst, hlim=ip.get("ttl", 64), tc=ip.get("tos", 0), fl=ip.get("flow", 0))
    from scapy.layers.inet import IP

    if "flow" in ip:
        raise ValueError("flow is an IPv6 field")
    return IP(src=src, dst=dst, ttl=ip.get("ttl", 64), tos=ip.get("tos", 0), id=ip.get("id", 1),
              flags="DF" if ip.get("df") else 0)


def _payload(length: int) -> bytes:
    return bytes(i & 0xFF for i in range(length))


def _l4(f: dict[str, Any], sport: int | None, dport: int | None, v6: bool) -> Any:
    if f["proto"] == "tcp":
        from scapy.layers.inet import TCP

        flags = "".join(_FLAG_BITS[c] for c in f["flags"] if c in _FLAG_BITS)
        return TCP(sport=sport, dport=dport, flags=flags, seq=f.get("seq", 0), ack=f.get("ack", 0),
                   window=f.get("win", 64240), urgptr=f.get("urg", 0),
                   options=f.get("options", [])) / _payload(f.get("len", 0))
    if f["proto"] == "udp":
        from scapy.layers.inet import UDP

        return UDP(sport=sport, dport=dport) / _payload(f["len"])
    echo = {"id": f.get("id", 0), "seq": f.get("seq", 0)}
    if v6:
        from scapy.layers.inet6 import ICMPv6EchoRequest

        return ICMPv6EchoRequest(**echo) / _payload(f.get("len", 56))
    from scapy.layers.inet import ICMP

    return ICMP(type=8, **echo) / _payload(f.get("len", 56))


def _corrupt(data: bytes, v6: bool) -> bytes:
    """``data`` with its transport checksum off by one (never 0: no-checksum UDP)."""
    offset = 40 if v6 else (data[0] & 15) * 4
    proto = data[6] if v6 else data[9]
    at = offset + {6: 16, 17: 6}.get(proto, 2)
    value = (int.from_bytes(data[at:at + 2], "big") + 1) & 0xFFFF or 1
    return data[:at] + value.to_bytes(2, "big") + data[at + 2:]

