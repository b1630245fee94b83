"""Observed sockets → a socket table Linux would accept, with the reasons.

What a listing cannot show is filled in as Linux would have it, and said in
a comment:

* SO_REUSEADDR and SO_REUSEPORT are off (socket(7) defaults), except where
  the table could not exist without them: several listeners (or unconnected
  UDP sockets) on one address:port need SO_REUSEPORT; a connection sharing
  its port with a listener or another socket (an accepted connection has the
  listener's port without a bind) needs SO_REUSEADDR on both, with the
  connection created first (inet_csk_bind_conflict() lets two SO_REUSEADDR
  sockets share a port when the earlier one is not listening).
* A wildcard IPv6 socket whose V6ONLY flag is unknown is dual-stack
  (net.ipv6.bindv6only = 0), unless an IPv4 socket on the same port could
  not coexist with it: then it must have been V6ONLY.
* Sockets the host-file format cannot express are left out and listed in the
  header: TIME-WAIT entries (no application holds them), SYN-RECV request
  sockets (a listener's half-open connections), SYN-SENT connects in
  progress, unbound sockets (port 0).  Other connection states
  (CLOSE-WAIT, FIN-WAIT-1/2, LAST-ACK, CLOSING) become ESTABLISHED
  connections: the format has no other connection state.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from ..hostfile import DEFAULT_INTERFACE, DEFAULT_MTU, HostSpec, SocketSpec, SysctlValue
from ..kernel import LOOPBACK, Interface, loopback
from ..sockets import Proto
from ..wire import format_addr, format_endpoint
from .model import (
    CONNECTION_STATES,
    LISTEN,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
    UNCONN,
    Imported,
    Observed,
)

#: Backlog assumed when the source does not show it: net.core.somaxconn's
#: default (4096 since Linux 5.4), the most a listen() gets.
DEFAULT_BACKLOG = 4096
#: Prefix lengths assumed for addresses seen only as socket addresses.
GUESSED_PREFIX = {4: 24, 6: 64}

_V4_MAPPED = bytes(10) + b"\xff\xff"

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_SKIP_REASONS = {
    TIME_WAIT: "TIME-WAIT: no application holds it; the host-file format has no TIME_WAIT entries",
    SYN_RECV: "SYN-RECV: a listener's half-open request, not a socket of its own",
    SYN_SENT: "SYN-SENT: a connect() in progress; the format has ESTABLISHED connections only",
}


def build_host(
    observed: Iterable[Observed],
    *,
    source: str,
    addresses: Sequence[Address] | None = None,
    interface: str | None = None,
    mtu: int | None = None,
    sysctl: Mapping[str, SysctlValue] | None = None,
    sysctl_notes: Sequence[str] = (),
    header: Sequence[str] = (),
    initrwnd: int = 0,
    host_notes: Sequence[str] = (),
) -> Imported:
    """The host file for ``observed`` sockets.

    Args:
        observed: sockets in source order.
        source: one line naming where they come from, for the header.
        addresses: the host's addresses with prefixes; None: the specific
            local addresses of the sockets, with guessed prefixes.
        interface: the host's device; None: the one device sockets are
            bound to, else ``eth0``.
        mtu, initrwnd, sysctl, sysctl_notes, host_notes: passed through
            to the file (``[host] mtu``, ``[host] initrwnd``, ``[sysctl]``,
            the comments above ``[sysctl]`` and ``[host]``).
        header: lines for the header, after ``source``.

    Returns:
        An :class:`Imported`; its spec is not checked against the socket
        rules here (:func:`pktdemux.hostfile.build_kernel` does that).
    """
    notes: list[str] = [source, *header]
    kept, skipped = _select(list(observed))
    addresses = _addresses(kept, addresses, notes)
    interface = _interface(kept, interface, notes)
    _devices(kept, interface)
    _v6only(kept)
    _sharing(kept)
    ordered = _ordered(kept)
    _uids(ordered, notes)
    notes.append("SO_REUSEADDR and SO_REUSEPORT are not shown: off (Linux's default) unless a socket "
                 "says why it needs one.")
    notes += _skipped_lines(skipped)
    spec = HostSpec(
        interfaces=(_make_interface(interface, addresses, mtu, initrwnd),),
        sysctl=MappingProxyType(dict(sysctl or {})),
        sockets=tuple(_spec(o) for o in ordered),
    )
    return Imported(spec=spec, header=tuple(notes), sysctl_notes=tuple(sysctl_notes),
                    socket_notes=tuple(tuple(o.notes) for o in ordered), host_notes=tuple(host_notes))


# -- selection -------------------------------------------------------------------

def _select(observed: list[Observed]) -> tuple[list[Observed], list[Observed]]:
    kept, skipped = [], []
    for o in observed:
        if o.state in _SKIP_REASONS or o.port == 0 or (
                o.proto is Proto.TCP and o.state not in CONNECTION_STATES | {LISTEN, UNCONN}):
            skipped.append(o)
            continue
        if o.proto is Proto.TCP and o.state in CONNECTION_STATES:
            if o.peer is None or o.peer[1] == 0:
                skipped.append(o)
                continue
            if o.state != "ESTAB":
                o.notes.append(f"{o.state} in the listing, modelled as ESTABLISHED (the only connection state "
                               "a host file has)")
        elif o.state not in (LISTEN, UNCONN) and not (o.proto is Proto.UDP and o.peer):
            o.peer = None
        if o.proto is Proto.UDP and o.peer is not None and o.peer[1] == 0:
            o.peer = None
        kept.append(o)
    return kept, skipped


def _skipped_lines(skipped: list[Observed]) -> list[str]:
    if not skipped:
        return []
    by_reason: dict[str, list[Observed]] = defaultdict(list)
    for o in skipped:
        reason = _SKIP_REASONS.get(o.state) or (
            "port 0: not bound, so no packet can reach it" if o.port == 0 else f"state {o.state}")
        by_reason[reason].append(o)
    lines = [f"Left out ({len(skipped)}):"]
    for reason, items in by_reason.items():
        shown = ", ".join(_describe(o) for o in items[:3]) + (", ..." if len(items) > 3 else "")
        lines.append(f"  {len(items)} x {reason} ({shown})")
    return lines


def _describe(o: Observed) -> str:
    text = f"{o.proto.name.lower()}://{format_endpoint(o.address, o.port)}"
    if o.peer:
        text += f" -> {format_endpoint(*o.peer)}"
    return f"{o.where}: {text}" if o.where else text


# -- addresses and devices -----------------------------------------------------------

def _is_loopback(address: bytes) -> bool:
    if address.startswith(_V4_MAPPED):
        address = address[12:]
    return ipaddress.ip_address(address).is_loopback


def _plain(address: bytes) -> bytes:
    """A v4-mapped address as the IPv4 address it stands for."""
    return address[12:] if len(address) == 16 and address.startswith(_V4_MAPPED) else address


def _addresses(kept: list[Observed], given: Sequence[Address] | None, notes: list[str]) -> list[Address]:
    seen: list[bytes] = []
    for o in kept:
        plain = _plain(o.address)
        if any(plain) and not _is_loopback(plain) and plain not in seen:
            seen.append(plain)
    result = list(given or [])
    known = {a.ip.packed for a in result}
    missing = [a for a in seen if a not in known]
    guessed = [ipaddress.ip_interface(f"{format_addr(a)}/{GUESSED_PREFIX[4 if len(a) == 4 else 6]}")
               for a in missing]
    if given is None:
        if guessed:
            notes.append("Addresses: the specific local addresses the sockets are bound to; their prefix "
                         "lengths (/24, /64) are guesses: pass --address ADDR/PREFIX to give them.")
        else:
            notes.append("Addresses: no socket is bound to a specific address, so none is known: pass "
                         "--address ADDR/PREFIX to give the host's addresses.")
    elif guessed:
        notes.append("Added to the given addresses, because sockets are bound to them (prefix guessed): "
                     + ", ".join(str(a) for a in guessed) + ".")
    return result + guessed


def _interface(kept: list[Observed], given: str | None, notes: list[str]) -> str:
    if given:
        return given
    devices = sorted({o.device for o in kept if o.device and o.device != LOOPBACK})
    if len(devices) == 1:
        notes.append(f"Interface: {devices[0]}, the device sockets are bound to.")
        return devices[0]
    return DEFAULT_INTERFACE


def _devices(kept: list[Observed], interface: str) -> None:
    for o in kept:
        if o.device is not None and o.device not in (interface, LOOPBACK):
            o.notes.append(f"bound to device {o.device} (SO_BINDTODEVICE), left unbound here: the host file "
                           f"has one device besides lo ({interface})")
            o.device = None


def _make_interface(name: str, addresses: list[Address], mtu: int | None, initrwnd: int = 0) -> Interface:
    base = loopback() if name == LOOPBACK else Interface(name, [], DEFAULT_MTU)
    extra = [a for a in addresses if a not in base.addresses]
    return Interface(name, list(base.addresses) + extra, mtu if mtu is not None else base.mtu, initrwnd=initrwnd)


# -- V6ONLY and shared ports -------------------------------------------------------

def _is_wildcard(o: Observed) -> bool:
    return not any(o.address)


def _v6only(kept: list[Observed]) -> None:
    """Decide unknown V6ONLY flags of wildcard IPv6 sockets (see the module docstring)."""
    for o in kept:
        if o.family != 6 or not _is_wildcard(o) or o.v6only is not None:
            continue
        clash = next((p for p in kept if p.family == 4 and p.proto is o.proto and p.port == o.port
                      and _devices_meet(o, p) and _needs_sharing(o, p)), None)
        if clash is not None:
            o.v6only = True
            o.notes.append(f"IPV6_V6ONLY not shown; set, because a dual-stack socket could not share the port "
                           f"with {_describe(clash)}")
        else:
            o.v6only = False
            o.notes.append("IPV6_V6ONLY not shown: Linux's default, dual-stack (net.ipv6.bindv6only = 0)")


def _devices_meet(a: Observed, b: Observed) -> bool:
    return a.device is None or b.device is None or a.device == b.device


def _overlap(a: Observed, b: Observed) -> bool:
    """True when binding both to their address:port would collide (same proto and port assumed)."""
    if not _devices_meet(a, b):
        return False
    if a.family == b.family:
        return a.address == b.address or _is_wildcard(a) or _is_wildcard(b)
    v6, v4 = (a, b) if a.family == 6 else (b, a)
    if _is_wildcard(v6):
        return not v6.v6only
    if v6.address.startswith(_V4_MAPPED):
        return _is_wildcard(v4) or v6.address[12:] == v4.address
    return False


def _needs_sharing(a: Observed, b: Observed) -> bool:
    return a.proto is b.proto and a.port == b.port and _overlap(a, b)


def _sharing(kept: list[Observed]) -> None:
    """Set SO_REUSEPORT / SO_REUSEADDR where the table could not exist without them."""
    buckets: dict[tuple[Proto, int], list[Observed]] = defaultdict(list)
    for o in kept:
        buckets[(o.proto, o.port)].append(o)
    flags: dict[int, set[str]] = defaultdict(set)
    why: dict[int, list[str]] = defaultdict(list)
    for group in buckets.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if not _overlap(a, b):
                    continue
                flag = _flag_for(a, b)
                for x, y in ((a, b), (b, a)):
                    if flag not in flags[id(x)]:
                        flags[id(x)].add(flag)
                        why[id(x)].append(_reason(flag, x, y))
    for o in kept:
        o.notes += why.get(id(o), [])
        o.flags |= flags.get(id(o), set())


def _flag_for(a: Observed, b: Observed) -> str:
    if a.proto is Proto.TCP:
        return "reuseport" if a.state == LISTEN and b.state == LISTEN else "reuseaddr"
    unconnected = a.peer is None and b.peer is None
    return "reuseport" if unconnected and a.address == b.address and a.device == b.device else "reuseaddr"


def _reason(flag: str, x: Observed, y: Observed) -> str:
    if flag == "reuseport":
        return (f"SO_REUSEPORT set: it shares its address:port with {_describe(y)}, which Linux allows "
                "only to SO_REUSEPORT sockets of one owner")
    return (f"SO_REUSEADDR set: it shares port {x.port} with {_describe(y)}"
            + (" (an accepted connection gets the listener's port without a bind)"
               if x.proto is Proto.TCP and LISTEN in (x.state, y.state) else ""))


def _ordered(kept: list[Observed]) -> list[Observed]:
    """TCP sockets that do not listen first, so that listeners sharing their port bind after them."""
    tcp_other = [o for o in kept if o.proto is Proto.TCP and o.state != LISTEN]
    listeners = [o for o in kept if o.proto is Proto.TCP and o.state == LISTEN]
    udp = [o for o in kept if o.proto is Proto.UDP]
    return tcp_other + listeners + udp


def _uids(ordered: list[Observed], notes: list[str]) -> None:
    unknown = [o for o in ordered if o.uid is None]
    if unknown:
        notes.append(f"Owner uid unknown for {len(unknown)} socket(s): 0 (root) assumed, so that ports "
                     "below 1024 bind.")


# -- specs -------------------------------------------------------------------------

def _spec(o: Observed) -> SocketSpec:
    flags = o.flags
    listen = None
    if o.proto is Proto.TCP and o.state == LISTEN:
        listen = o.backlog
        if listen is None:
            listen = DEFAULT_BACKLOG
            o.notes.append(f"backlog unknown: {DEFAULT_BACKLOG} (net.core.somaxconn's default) assumed")
    return SocketSpec(
        proto=o.proto, family=o.family, address=o.address, port=o.port,
        name=o.process or "",
        listen=listen,
        peer=o.peer if listen is None else None,
        reuseaddr="reuseaddr" in flags,
        reuseport="reuseport" in flags,
        v6only=o.v6only if o.family == 6 and _is_wildcard(o) else None,
        device=o.device,
        process=o.process,
        pid=o.pid,
        uid=o.uid or 0,
        closed=o.closed,
    )
