"""Parse the output of ``ss`` (iproute2) into :class:`Observed` sockets.

Accepted: ``ss -tuanpe`` and its subsets (``-tuanp``, ``-tlnp``, ``-ulnp``,
``-tan``...), with or without the header line (``-H``), several listings
one after the other.  Columns, as ss(8) prints them (misc/ss.c)::

    Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process

* ``Netid`` appears when more than one socket kind is listed.  Without it,
  the kind is ``proto`` when given, else TCP if any state is one only TCP
  has (LISTEN, TIME-WAIT...), else UDP if a socket is UNCONN, else TCP.
* Send-Q of a LISTEN socket is its backlog (``sk_max_ack_backlog``).
* Addresses (inet_addr_print): ``10.0.0.1``; ``[fd00::1]``, ``[::]`` (an
  IPv6 wildcard with IPV6_V6ONLY), ``*`` (an IPv6 wildcard without it: a
  dual-stack socket), ``[::ffff:10.0.0.1]`` (v4-mapped, an AF_INET6 socket);
  ``ADDR%DEV`` for a socket bound to device DEV; port ``*`` is 0.  Older ss
  versions print IPv6 addresses without brackets (``:::22``); accepted.
* ``users:(("nginx",pid=1234,fd=6),...)`` (``-p``): the first process.
* ``-e`` adds ``uid:N`` (only when N is not 0), ``ino:N``, ``sk:...`` and,
  for IPv6 sockets, ``v6only:0|1``; when ``ino:`` is there and ``uid:`` is
  not, the uid is 0.  Lines that start with white space continue the socket
  above (``-i``, ``-m``, ``-o`` details) and may carry these too.
* Service names instead of ports (ss without ``-n``) are refused: ``ss -n``
  shows numbers.

Other socket kinds (``raw``, ``u_str``, ``nl``, ``mptcp``...) are skipped.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..sockets import Proto
from .model import LISTEN, SS_STATES, UNCONN, Observed

_PROTOS = {"tcp": Proto.TCP, "udp": Proto.UDP}
#: Netid names ss prints for the other socket kinds (misc/ss.c), skipped.
_OTHER_NETIDS = frozenset({"raw", "icmp6", "u_str", "u_dgr", "u_seq", "p_raw", "p_dgr", "nl", "mptcp", "sctp",
                           "dccp", "tipc", "ti_st", "ti_dg", "ti_sq", "ti_rd", "ti_??", "v_str", "v_dgr", "v_??",
                           "xdp", "unknown"})
#: States only TCP sockets have: a listing without Netid that shows one is TCP.
_TCP_ONLY = SS_STATES - {UNCONN, "ESTAB", "UNKNOWN"}
_USERS = re.compile(r'users:\(\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')
_UID = re.compile(r"(?:^|\s)uid:(\d+)")
_INO = re.compile(r"(?:^|\s)ino:\d+")
_V6ONLY = re.compile(r"(?:^|\s)v6only:([01])")


@dataclass
class Listing:
    """What :func:`parse_ss` read.

    Attributes:
        sockets: TCP and UDP sockets in listing order.
        notes: lines for the host file's header (guesses, skipped kinds).
    """

    sockets: list[Observed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Row:
    n: int
    netid: str | None
    fields: list[str]
    rest: str


def parse_ss(text: str, path: str = "<ss>", proto: str | None = None) -> Listing:
    """Parse ss output.

    Args:
        text: the output, header lines optional.
        path: names the input in errors.
        proto: ``"tcp"`` or ``"udp"`` for listings without a Netid column;
            None to decide from the states (see the module docstring).

    Raises:
        InputError: ``PATH: line N: REASON`` for a line that is not a socket
            row (too few columns, an unknown state, a bad address or port).
    """
    listing = Listing()
    skipped: dict[str, int] = {}
    for section in _sections(text, path):
        kind = _PROTOS[proto] if proto else _guess_proto(section, listing)
        for row in section:
            netid = row.netid
            if netid is not None and netid not in _PROTOS:
                skipped[netid] = skipped.get(netid, 0) + 1
                continue
            listing.sockets.append(_socket(row, _PROTOS[netid] if netid else kind, path))
    if skipped:
        listing.notes.append("Not TCP or UDP, skipped: " + ", ".join(f"{n} {k}" for k, n in skipped.items()) + ".")
    return listing


def _sections(text: str, path: str) -> list[list[_Row]]:
    """Rows grouped by listing (a header line starts a new one)."""
    sections: list[list[_Row]] = [[]]
    netid_column: bool | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        words = line.split()
        if words[0] in ("Netid", "State") and "Recv-Q" in words:
            netid_column = words[0] == "Netid"
            if sections[-1]:
                sections.append([])
            continue
        if line[0].isspace():
            if not sections[-1]:
                raise InputError(path, f"line {n}", "a continuation line (it starts with white space) "
                                                    "before any socket")
            sections[-1][-1].rest += " " + line.strip()
            continue
        has_netid = netid_column if netid_column is not None else words[0] not in SS_STATES
        netid, fields = (words[0], words[1:]) if has_netid else (None, words)
        if netid is not None and netid not in _PROTOS and netid not in _OTHER_NETIDS:
            raise InputError(path, f"line {n}", f"not a row of ss output: {words[0]!r} is neither a socket "
                                                "kind (Netid) nor a state")
        if netid is not None and netid not in _PROTOS:
            sections[-1].append(_Row(n, netid, fields, ""))
            continue
        if len(fields) < 5:
            raise InputError(path, f"line {n}", "expected State Recv-Q Send-Q Local-Address:Port "
                                                f"Peer-Address:Port, got {len(fields)} columns")
        sections[-1].append(_Row(n, netid, fields[:5], " ".join(fields[5:])))
    return [s for s in sections if s]


def _guess_proto(section: list[_Row], listing: Listing) -> Proto:
    if all(row.netid is not None for row in section):
        return Proto.TCP  # unused: every row names its kind
    states = {row.fields[0] for row in section if row.netid is None}
    if states & _TCP_ONLY:
        return Proto.TCP
    if UNCONN in states:
        listing.notes.append("No Netid column and no TCP-only state: the sockets are taken as UDP "
                             "(pass --proto tcp if they are not).")
        return Proto.UDP
    listing.notes.append("No Netid column: the sockets are taken as TCP (pass --proto udp if they are not).")
    return Proto.TCP


def _socket(row: _Row, proto: Proto, path: str) -> Observed:
    where = f"line {row.n}"
    state, recvq, sendq, local, peer = row.fields
    if state not in SS_STATES:
        raise InputError(path, where, f"unknown socket state {state!r} (expected one of ss's: "
                                      f"{', '.join(sorted(SS_STATES))})")
    for name, value in (("Recv-Q", recvq), ("Send-Q", sendq)):
        if not value.isdigit():
            raise InputError(path, where, f"{name} must be a number, not {value!r}")
    family, address, port, device, v6only = _endpoint(local, path, where, "local address")
    obs = Observed(proto=proto, family=family, address=address, port=port, state=state,
                   device=device, v6only=v6only, where=where)
    if state == LISTEN:
        obs.backlog = int(sendq)
    peer_family, peer_addr, peer_port, _, _ = _endpoint(peer, path, where, "peer address")
    if peer_port:
        if peer_family != family:
            raise InputError(path, where, f"peer {peer} is not of the local address's family")
        obs.peer = (peer_addr, peer_port)
    rest = row.rest
    if (users := _USERS.search(rest)) is not None:
        obs.process = users.group(1).replace('\\"', '"')
        obs.pid = int(users.group(2))
    if (uid := _UID.search(rest)) is not None:
        obs.uid = int(uid.group(1))
    elif _INO.search(rest):
        obs.uid = 0  # ss -e prints uid: only when it is not 0
    if (flag := _V6ONLY.search(rest)) is not None and family == 6 and not any(address):
        obs.v6only = flag.group(1) == "1"
    return obs


def _endpoint(text: str, path: str, where: str, what: str) -> tuple[int, bytes, int, str | None, bool | None]:
    """``ADDR[%DEV]:PORT`` → (family, packed address, port, device, v6only shown by the form)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise InputError(path, where, f"{what} {text!r} is not ADDRESS:PORT")
    if port_text == "*":
        port = 0
    elif port_text.isdigit() and int(port_text) <= 65535:
        port = int(port_text)
    elif port_text.isdigit():
        raise InputError(path, where, f"{what} {text!r}: port outside 0..65535")
    else:
        raise InputError(path, where, f"{what} {text!r}: port {port_text!r} is not a number "
                                      "(run ss with -n for numeric ports)")
    device = None
    if "%" in host:
        host, _, device = host.rpartition("%")
        if not device or not host:
            raise InputError(path, where, f"{what} {text!r}: bad ADDRESS%DEVICE")
    if host == "*":
        return 6, bytes(16), port, device, False
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise InputError(path, where, f"{what} {text!r}: {host!r} is not an IP address "
                                      "(run ss with -n for numeric addresses)") from None
    v6only = True if ip.version == 6 and not int(ip) and bracketed else None
    return ip.version, ip.packed, port, device, v6only
