"""Sequences of socket calls with the result Linux gives for each, shared by
test_bind.py (the emulation against these results) and test_bind_kernel.py
(the real kernel against the emulation).  Standard library only: the
kernel-side runner imports it inside a private network namespace.

A case is a list of steps, one call each::

    A = tcp4 ra rp dev=tun0 uid=65534   socket() + setsockopt (no result)
    A = tcp6 v6only | tcp6 dual           IPV6_V6ONLY 1 / 0 (default: bindv6only)
    A bind 10.0.0.1 P                     P is the case's port, P+1 the next one
    A listen                              listen(128)
    A connect 10.0.0.2 80
    A close
    sysctl net.ipv4.ip_local_port_range 40000 40009

and the expected results of the calls that have one, in order: ``OK`` or the
errno name; a TCP call that picked an ephemeral port says ``OK odd`` or
``OK even``.  The host: ``tun0`` with 10.0.0.1/24, 10.0.0.3/24, fd00::1/64,
and ``lo``; the peer 10.0.0.2 is on the tun0 subnet.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

ADDRESSES = ("10.0.0.1/24", "10.0.0.3/24", "fd00::1/64")
DEVICE = "tun0"
#: each case gets its own port, from here up (above 1024 so that uid 65534 may bind)
BASE_PORT = 20000


def errname(number: int) -> str:
    """The Linux name of an errno (EOPNOTSUPP, not its alias ENOTSUP)."""
    if number == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(number, str(number))


@dataclass(frozen=True)
class SocketStep:
    """``A = tcp4 ra ...``: create socket ``name``."""

    name: str
    proto: str
    family: int
    reuseaddr: bool = False
    reuseport: bool = False
    v6only: bool | None = None
    device: str | None = None
    uid: int = 0


@dataclass(frozen=True)
class CallStep:
    """``A bind ADDR PORT`` / ``A listen`` / ``A connect ADDR PORT`` / ``A close``."""

    name: str
    call: str
    addr: str = ""
    port: int = 0


@dataclass(frozen=True)
class SysctlStep:
    """``sysctl NAME VALUE...``."""

    sysctl: str
    value: str


Step = SocketStep | CallStep | SysctlStep


def parse_step(text: str, port: int) -> Step:
    """One step of the little language above; ``P`` stands for ``port``."""
    words = text.split()
    if words[0] == "sysctl":
        return SysctlStep(words[1], " ".join(words[2:]))
    if len(words) > 1 and words[1] == "=":
        kind, flags = words[2], words[3:]
        options = dict(f.split("=", 1) for f in flags if "=" in f)
        return SocketStep(
            words[0], kind[:3], int(kind[3]), reuseaddr="ra" in flags, reuseport="rp" in flags,
            v6only=True if "v6only" in flags else False if "dual" in flags else None,
            device=options.get("dev"), uid=int(options.get("uid", 0)),
        )
    name, call, *args = words
    if not args:
        return CallStep(name, call)
    port_text = args[1]
    number = port + int(port_text[2:] or 0) if port_text.startswith("P") else int(port_text)
    return CallStep(name, call, args[0], number)


@dataclass(frozen=True)
class Case:
    """A named sequence and the expected results (spec section in ``source``)."""

    id: str
    steps: tuple[str, ...]
    expected: tuple[str, ...]
    source: str = ""


def case(id: str, steps: str, expected: str, source: str = "") -> Case:
    """``steps`` separated by ``;``, ``expected`` by ``,``."""
    return Case(id, tuple(s.strip() for s in steps.split(";")),
                tuple(e.strip() for e in expected.split(",")), source)


#: spec §7.2 verified matrix [V p07], row by row
TCP_MATRIX = [
    case("wild_then_exact", "A = tcp4; B = tcp4; A bind 0.0.0.0 P; B bind 10.0.0.1 P", "OK, EADDRINUSE"),
    case("exact_then_other_exact", "A = tcp4; B = tcp4; A bind 10.0.0.1 P; B bind 10.0.0.3 P", "OK, OK"),
    case("exact_then_wild", "A = tcp4; B = tcp4; A bind 10.0.0.1 P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
    case("ra_both_not_listening", "A = tcp4 ra; B = tcp4 ra; A bind 0.0.0.0 P; B bind 10.0.0.1 P; A listen; B listen",
         "OK, OK, OK, EADDRINUSE"),
    case("ra_both_A_listening", "A = tcp4 ra; B = tcp4 ra; A bind 0.0.0.0 P; A listen; B bind 10.0.0.1 P",
         "OK, OK, EADDRINUSE"),
    case("ra_both_same_addr", "A = tcp4 ra; B = tcp4 ra; A bind 10.0.0.1 P; B bind 10.0.0.1 P; A listen; B listen",
         "OK, OK, OK, EADDRINUSE"),
    case("ra_only_B", "A = tcp4; B = tcp4 ra; A bind 0.0.0.0 P; B bind 10.0.0.1 P", "OK, EADDRINUSE"),
    case("rp_both", "A = tcp4 rp; B = tcp4 rp; A bind 0.0.0.0 P; B bind 0.0.0.0 P; A listen; B listen",
         "OK, OK, OK, OK"),
    case("rp_both_A_listening", "A = tcp4 rp; B = tcp4 rp; A bind 0.0.0.0 P; A listen; B bind 0.0.0.0 P; B listen",
         "OK, OK, OK, OK"),
    case("rp_other_uid", "A = tcp4 rp; B = tcp4 rp uid=65534; A bind 0.0.0.0 P; A listen; B bind 0.0.0.0 P",
         "OK, OK, EADDRINUSE"),
    case("rp_only_A", "A = tcp4 rp; B = tcp4; A bind 0.0.0.0 P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
    case("v6dual_then_v4wild", "A = tcp6 dual; B = tcp4; A bind :: P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
    case("v4wild_then_v6dual", "A = tcp4; B = tcp6 dual; A bind 0.0.0.0 P; B bind :: P", "OK, EADDRINUSE"),
    case("v6only_then_v4wild", "A = tcp6 v6only; B = tcp4; A bind :: P; B bind 0.0.0.0 P", "OK, OK"),
    case("v4wild_then_v6only", "A = tcp4; B = tcp6 v6only; A bind 0.0.0.0 P; B bind :: P", "OK, OK"),
    case("v6dual_then_v4exact", "A = tcp6 dual; B = tcp4; A bind :: P; B bind 10.0.0.1 P", "OK, EADDRINUSE"),
    case("v6exact_then_v4wild", "A = tcp6; B = tcp4; A bind fd00::1 P; B bind 0.0.0.0 P", "OK, OK"),
    case("v4mapped_then_v4exact", "A = tcp6; B = tcp4; A bind ::ffff:10.0.0.1 P; B bind 10.0.0.1 P", "OK, EADDRINUSE"),
    case("v6dual_then_v6exact", "A = tcp6 dual; B = tcp6; A bind :: P; B bind fd00::1 P", "OK, EADDRINUSE"),
    case("tcp_listening_then_udp", "A = tcp4; B = udp4; A bind 0.0.0.0 P; A listen; B bind 0.0.0.0 P", "OK, OK, OK"),
    case("dev_tun0_and_dev_lo", "A = tcp4 dev=tun0; B = tcp4 dev=lo; A bind 0.0.0.0 P; B bind 0.0.0.0 P; A listen; B listen",
         "OK, OK, OK, OK"),
    case("dev_tun0_and_unbound", "A = tcp4 dev=tun0; B = tcp4; A bind 0.0.0.0 P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
]

#: further TCP combinations, results as Linux 6.18 gives them (test_bind_kernel.py checks them)
TCP_MORE = [
    case("v6only_then_v4mapped", "A = tcp6 v6only; B = tcp6 dual; A bind :: P; B bind ::ffff:10.0.0.1 P", "OK, OK"),
    case("v4mapped_then_v6only", "A = tcp6 dual; B = tcp6 v6only; A bind ::ffff:10.0.0.1 P; B bind :: P", "OK, OK"),
    case("v4wild_then_v4mapped_any", "A = tcp4; B = tcp6 dual; A bind 0.0.0.0 P; B bind ::ffff:0.0.0.0 P",
         "OK, EADDRINUSE"),
    case("v6exact_then_v6dual", "A = tcp6; B = tcp6 dual; A bind fd00::1 P; B bind :: P", "OK, EADDRINUSE"),
    case("v6only_then_v6exact", "A = tcp6 v6only; B = tcp6; A bind :: P; B bind fd00::1 P", "OK, EADDRINUSE"),
    case("v6exact_then_v4mapped", "A = tcp6; B = tcp6; A bind fd00::1 P; B bind ::ffff:10.0.0.1 P", "OK, OK"),
    case("v4exact_then_v6dual", "A = tcp4; B = tcp6 dual; A bind 10.0.0.1 P; B bind :: P", "OK, EADDRINUSE"),
    case("v4exact_then_v6only", "A = tcp4; B = tcp6 v6only; A bind 10.0.0.1 P; B bind :: P", "OK, OK"),
    case("v6dual_twice", "A = tcp6 dual; B = tcp6 v6only; A bind :: P; B bind :: P", "OK, EADDRINUSE"),
    case("ra_rp_both_listening", "A = tcp4 ra rp; B = tcp4 ra rp; A bind 0.0.0.0 P; A listen; B bind 0.0.0.0 P; B listen",
         "OK, OK, OK, OK"),
    case("ra_listen_order_B_first", "A = tcp4 ra; B = tcp4 ra; A bind 0.0.0.0 P; B bind 10.0.0.1 P; B listen; A listen",
         "OK, OK, OK, EADDRINUSE"),
    case("ra_close_listener_frees", "A = tcp4 ra; B = tcp4 ra; A bind 0.0.0.0 P; A listen; A close; B bind 10.0.0.1 P; B listen",
         "OK, OK, OK, OK, OK"),
    case("dev_same_device", "A = tcp4 dev=tun0; B = tcp4 dev=tun0; A bind 10.0.0.1 P; B bind 10.0.0.1 P", "OK, EADDRINUSE"),
    case("dev_lo_and_tun0_exact", "A = tcp4 dev=tun0; B = tcp4 dev=lo; A bind 10.0.0.1 P; B bind 10.0.0.1 P", "OK, OK"),
    case("rp_dev_mismatch", "A = tcp4 rp dev=tun0; B = tcp4 rp; A bind 0.0.0.0 P; A listen; B bind 0.0.0.0 P; B listen",
         "OK, OK, OK, OK"),
    case("connect_pins_address", "A = tcp4; B = tcp4; C = tcp4; A bind 0.0.0.0 P; A connect 10.0.0.2 80; "
         "B bind 10.0.0.3 P; C bind 0.0.0.0 P", "OK, OK, OK, EADDRINUSE"),
]

#: spec §7.1: order of the checks, errno per step [V p07]
BIND_CHECKS = [
    case("double_bind", "A = tcp4; A bind 0.0.0.0 P; A bind 0.0.0.0 P+1", "OK, EINVAL"),
    case("nonlocal_address", "A = tcp4; A bind 10.0.0.99 P", "EADDRNOTAVAIL"),
    case("subnet_broadcast", "A = tcp4; A bind 10.0.0.255 P", "OK"),
    case("network_address", "A = tcp4; A bind 10.0.0.0 P", "EADDRNOTAVAIL"),
    case("limited_broadcast", "A = udp4; A bind 255.255.255.255 P", "OK"),
    case("zeronet", "A = udp4; A bind 0.1.2.3 P", "EADDRNOTAVAIL"),
    case("loopback_prefix", "A = tcp4; A bind 127.5.5.5 P", "OK"),
    case("multicast_udp", "A = udp4; A bind 239.1.1.1 P", "OK"),
    case("secondary_address", "A = tcp4; A bind 10.0.0.3 P", "OK"),
    case("v6_nonlocal", "A = tcp6; A bind fd00::99 P", "EADDRNOTAVAIL"),
    case("v6_loopback", "A = tcp6; A bind ::1 P", "OK"),
    case("v6_loopback_on_other_device", "A = tcp6 dev=tun0; A bind ::1 P", "EADDRNOTAVAIL"),
    case("v6_multicast_tcp", "A = tcp6; A bind ff05::1 P", "EINVAL"),
    case("v6_multicast_udp", "A = udp6; A bind ff05::1 P", "OK"),
    case("v6_linklocal_multicast_needs_device", "A = udp6; A bind ff02::1 P", "EINVAL"),
    case("v6_linklocal_multicast_with_device", "A = udp6 dev=tun0; A bind ff02::1 P", "OK"),
    case("v4mapped_on_v6only", "A = tcp6 v6only; A bind ::ffff:10.0.0.1 P", "EINVAL"),
    case("v4mapped_nonlocal", "A = tcp6; A bind ::ffff:10.0.0.99 P", "EADDRNOTAVAIL"),
    case("eacces_tcp_80", "A = tcp4 uid=65534; A bind 0.0.0.0 80", "EACCES"),
    case("eacces_udp_80", "A = udp4 uid=65534; A bind 0.0.0.0 80", "EACCES"),
    case("eacces_1023", "A = tcp4 uid=65534; A bind 0.0.0.0 1023", "EACCES"),
    case("unprivileged_1024", "A = tcp4 uid=65534; A bind 0.0.0.0 1024", "OK"),
    case("unprivileged_port_start_80", "sysctl net.ipv4.ip_unprivileged_port_start 80; "
         "A = tcp4 uid=65534; B = tcp4 uid=65534; A bind 0.0.0.0 80; B bind 0.0.0.0 79", "OK, EACCES"),
    case("v4_eaddrnotavail_before_eacces", "A = tcp4 uid=65534; A bind 10.0.0.99 80", "EADDRNOTAVAIL"),
    case("v6_eacces_before_eaddrnotavail", "A = tcp6 uid=65534; A bind fd00::99 80", "EACCES"),
    case("v6_eacces_before_einval", "A = tcp6 uid=65534; A bind :: P; A bind :: 80", "OK, EACCES"),
    case("v4_eaddrnotavail_before_einval", "A = tcp4; A bind 0.0.0.0 P; A bind 10.0.0.99 P+1", "OK, EADDRNOTAVAIL"),
    case("v6_einval_before_eaddrnotavail", "A = tcp6; A bind :: P; A bind fd00::99 P+1", "OK, EINVAL"),
    case("v4_einval_after_eacces", "A = tcp4 uid=65534; A bind 0.0.0.0 P; A bind 0.0.0.0 80", "OK, EACCES"),
    case("nonlocal_bind_sysctl", "sysctl net.ipv4.ip_nonlocal_bind 1; A = tcp4; A bind 10.0.0.99 P", "OK"),
    case("v6_nonlocal_bind_sysctl", "sysctl net.ipv6.ip_nonlocal_bind 1; A = tcp6; A bind fd00::99 P", "OK"),
    case("listen_udp", "A = udp4; A bind 0.0.0.0 P; A listen", "OK, EOPNOTSUPP"),
    case("bind_after_connect", "A = tcp4; A connect 10.0.0.2 80; A bind 0.0.0.0 P", "OK even, EINVAL"),
    case("listen_after_connect", "A = tcp4; A connect 10.0.0.2 80; A listen", "OK even, EINVAL"),
    case("listen_twice", "A = tcp4; A bind 0.0.0.0 P; A listen; A listen", "OK, OK, OK"),
    case("connect_listener", "A = tcp4; A bind 0.0.0.0 P; A listen; A connect 10.0.0.2 80", "OK, OK, EISCONN"),
    # to a local listener, so that Linux completes the handshake as the emulation does at once
    case("connect_twice", "L = tcp4; A = tcp4; L bind 10.0.0.1 P; L listen; A connect 10.0.0.1 P; A connect 10.0.0.1 P",
         "OK, OK, OK even, EISCONN"),
    case("tcp_connect_broadcast", "A = tcp4; A connect 10.0.0.255 80", "ENETUNREACH"),
    case("udp_connect_broadcast", "A = udp4; A connect 10.0.0.255 80", "EACCES"),
    case("v6only_connect_v4mapped", "A = tcp6 v6only; A connect ::ffff:10.0.0.2 80", "ENETUNREACH"),
]

#: spec §7.3 [V p07]
UDP_MATRIX = [
    case("udp_wild_twice", "A = udp4; B = udp4; A bind 0.0.0.0 P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
    case("udp_ra_both_same", "A = udp4 ra; B = udp4 ra; A bind 0.0.0.0 P; B bind 0.0.0.0 P", "OK, OK"),
    case("udp_exact_then_wild", "A = udp4; B = udp4; A bind 10.0.0.1 P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
    case("udp_ra_only_A", "A = udp4 ra; B = udp4; A bind 0.0.0.0 P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
    case("udp_rp_both", "A = udp4 rp; B = udp4 rp; A bind 0.0.0.0 P; B bind 0.0.0.0 P", "OK, OK"),
    case("udp_v6dual_then_v4wild", "A = udp6 dual; B = udp4; A bind :: P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
    case("udp_rp_other_uid", "A = udp4 rp; B = udp4 rp uid=65534; A bind 0.0.0.0 P; B bind 0.0.0.0 P", "OK, EADDRINUSE"),
    case("udp_exact_other_exact", "A = udp4; B = udp4; A bind 10.0.0.1 P; B bind 10.0.0.3 P", "OK, OK"),
    case("udp_v6only_then_v4wild", "A = udp6 v6only; B = udp4; A bind :: P; B bind 0.0.0.0 P", "OK, OK"),
    case("udp_dev_lo_and_tun0", "A = udp4 dev=lo; B = udp4 dev=tun0; A bind 0.0.0.0 P; B bind 0.0.0.0 P", "OK, OK"),
    case("udp_connect_pins_address", "A = udp4; B = udp4; C = udp4; A bind 0.0.0.0 P; A connect 10.0.0.2 5000; "
         "B bind 10.0.0.3 P; C bind 10.0.0.1 P", "OK, OK, OK, EADDRINUSE"),
    case("udp_any_unshared_owner_refuses", "A = udp4; B = udp4 rp; C = udp4 rp; A bind 10.0.0.1 P; B bind 10.0.0.3 P; "
         "C bind 0.0.0.0 P", "OK, OK, EADDRINUSE"),
    case("udp_all_owners_share", "A = udp4 rp; B = udp4 rp; C = udp4 rp; A bind 10.0.0.1 P; B bind 10.0.0.3 P; "
         "C bind 0.0.0.0 P", "OK, OK, OK"),
    case("udp_newest_unshared_owner_refuses", "A = udp4 rp; B = udp4; C = udp4 rp; A bind 10.0.0.1 P; B bind 10.0.0.3 P; "
         "C bind 0.0.0.0 P", "OK, OK, EADDRINUSE"),
]

_RANGE = "sysctl net.ipv4.ip_local_port_range 40000 40009"
_EVEN_ODD_CONNECTS = ", ".join(["OK even"] * 5 + ["OK odd"] * 5)

#: spec §8 and S42-S44 [V p08]; ports are random, their parity is not
EPHEMERAL = [
    case("S42_exhaust_one_destination", _RANGE + "; " + "; ".join(
        f"C{i} = tcp4; C{i} connect 10.0.0.2 80" for i in range(11)), _EVEN_ODD_CONNECTS + ", EADDRNOTAVAIL"),
    case("S42_ports_serve_other_destinations", _RANGE + "; " + "; ".join(
        f"C{i} = tcp4; C{i} connect 10.0.0.2 80" for i in range(10)) + "; " + "; ".join(
        f"D{i} = tcp4; D{i} connect 10.0.0.2 81" for i in range(11)) + "; " + "; ".join(
        f"E{i} = tcp4; E{i} connect 10.0.0.4 80" for i in range(3)),
        ", ".join([_EVEN_ODD_CONNECTS] * 2) + ", EADDRNOTAVAIL, OK even, OK even, OK even"),
    case("S43_bind0_after_connects", _RANGE + "; " + "; ".join(
        f"C{i} = tcp4; C{i} connect 10.0.0.2 80" for i in range(10)) + "; T = tcp4; T bind 0.0.0.0 0; "
        "U = udp4; U bind 0.0.0.0 0", _EVEN_ODD_CONNECTS + ", EADDRINUSE, OK"),
    case("bind0_exhaust_then_connect", _RANGE + "; " + "; ".join(
        f"B{i} = tcp4; B{i} bind 0.0.0.0 0" for i in range(11)) + "; C = tcp4; C connect 10.0.0.2 80",
        ", ".join(["OK odd"] * 5 + ["OK even"] * 5) + ", EADDRINUSE, EADDRNOTAVAIL"),
    case("bind0_reuseaddr_lower_half_first", _RANGE + "; " + "; ".join(
        f"B{i} = tcp4 ra; B{i} bind 0.0.0.0 0" for i in range(6)),
        "OK odd, OK odd, OK even, OK even, OK odd, OK odd"),
    case("S44_bind0_odd", "; ".join(f"B{i} = tcp4; B{i} bind 0.0.0.0 0" for i in range(20)),
         ", ".join(["OK odd"] * 20)),
    case("S44_connect_even", "; ".join(f"C{i} = tcp4; C{i} connect 10.0.0.2 443" for i in range(20)),
         ", ".join(["OK even"] * 20)),
    case("listen_autobind_odd", "A = tcp4; A listen", "OK odd"),
    case("bound_socket_connect_same_tuple", "A = tcp4 ra; B = tcp4 ra; A bind 10.0.0.1 P; B bind 10.0.0.1 P; "
         "A connect 10.0.0.2 80; B connect 10.0.0.2 80", "OK, OK, OK, EADDRNOTAVAIL"),
]

ALL_CASES = TCP_MATRIX + TCP_MORE + BIND_CHECKS + UDP_MATRIX + EPHEMERAL
