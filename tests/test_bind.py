"""The socket API rules (spec §7, §8) on the emulation: tables of call
sequences with the result Linux gives for each call (tests/bind_cases.py),
plus transcripts for what a successful call leaves behind."""

from __future__ import annotations

import errno
import itertools

import pytest
from bind_cases import BIND_CHECKS, EPHEMERAL, TCP_MATRIX, TCP_MORE, UDP_MATRIX, Case
from bind_support import emulated_host, run_emulated

from pktdemux import Proto, SocketError, TcpState


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


@pytest.mark.parametrize("case", TCP_MATRIX, ids=_ids(TCP_MATRIX))
def test_tcp_conflict_matrix(case: Case) -> None:
    """Each row of the verified TCP matrix of spec §7.2 gives Linux's results."""
    assert run_emulated(case) == list(case.expected)


@pytest.mark.parametrize("case", TCP_MORE, ids=_ids(TCP_MORE))
def test_tcp_conflicts_beyond_the_matrix(case: Case) -> None:
    """Dual-stack, device and listen-order combinations give Linux 6.18's results."""
    assert run_emulated(case) == list(case.expected)


@pytest.mark.parametrize("case", BIND_CHECKS, ids=_ids(BIND_CHECKS))
def test_bind_checks_and_their_order(case: Case) -> None:
    """bind()/listen()/connect() refuse with Linux's errno, first failing check first (spec §7.1)."""
    assert run_emulated(case) == list(case.expected)


@pytest.mark.parametrize("case", UDP_MATRIX, ids=_ids(UDP_MATRIX))
def test_udp_conflicts(case: Case) -> None:
    """UDP port sharing follows spec §7.3 (SO_REUSEADDR shares even a bound address)."""
    assert run_emulated(case) == list(case.expected)


@pytest.mark.parametrize("case", EPHEMERAL, ids=_ids(EPHEMERAL))
def test_ephemeral_ports(case: Case) -> None:
    """Ephemeral ports: parity, per-destination reuse and exhaustion (spec §8, S42-S44)."""
    assert run_emulated(case) == list(case.expected)


@pytest.mark.parametrize("seed", range(5))
def test_s42_ten_ports_then_eaddrnotavail(seed: int) -> None:
    """S42: a 10-port range gives each destination the same ten ports, then EADDRNOTAVAIL."""
    from pktdemux import Sysctls
    kernel = emulated_host()
    kernel.sysctls = Sysctls({"net.ipv4.ip_local_port_range": (40000, 40009)})
    for dport in (80, 81):
        socks = [kernel.socket("tcp", 4) for _ in range(10)]
        for s in socks:
            kernel.connect(s, "10.0.0.2", dport)
        assert sorted(s.local_port for s in socks) == list(range(40000, 40010))
        with pytest.raises(SocketError) as err:
            kernel.connect(kernel.socket("tcp", 4), "10.0.0.2", dport)
        assert err.value.errno == errno.EADDRNOTAVAIL


def test_ports_are_reproducible_per_seed() -> None:
    """The same seed picks the same ephemeral ports (they come from kernel.entropy)."""
    def ports() -> list[int]:
        kernel = emulated_host()
        socks = [kernel.socket("tcp", 4) for _ in range(5)]
        for s in socks:
            kernel.bind(s, "0.0.0.0", 0)
        return [s.local_port for s in socks]
    assert ports() == ports()


def test_connect_steps_forward_for_one_destination() -> None:
    """Repeated connect()s to one destination walk forward in small even steps (spec §8.1)."""
    kernel = emulated_host()
    socks = [kernel.socket("tcp", 4) for _ in range(8)]
    for s in socks:
        kernel.connect(s, "10.0.0.2", 443)
    ports = [s.local_port for s in socks]
    steps = [(b - a) % 28232 for a, b in itertools.pairwise(ports)]
    assert all(p % 2 == 0 for p in ports)
    assert all(2 <= step <= 16 for step in steps), ports


def _time_wait(kernel, addr: str, port: int, *, reuseaddr: bool):  # type: ignore[no-untyped-def]
    """A server-side TIME_WAIT socket, as the TCP state machine leaves it."""
    sock = kernel.socket("tcp", 4, reuseaddr=reuseaddr)
    kernel.bind(sock, addr, port)
    sock.remote_addr, sock.remote_port = bytes([10, 0, 0, 2]), 52944
    sock.state = TcpState.TIME_WAIT
    return sock


@pytest.mark.parametrize(("old_ra", "new_ra", "expected"), [
    (True, True, "OK"), (True, False, "EADDRINUSE"), (False, True, "EADDRINUSE"), (False, False, "EADDRINUSE"),
], ids=["both_RA", "old_RA_only", "new_RA_only", "neither"])
def test_s45_bind_over_time_wait(old_ra: bool, new_ra: bool, expected: str) -> None:
    """S45: binding over a TIME_WAIT socket needs SO_REUSEADDR on both (spec §7.2, p07b)."""
    kernel = emulated_host()
    _time_wait(kernel, "10.0.0.1", 2200, reuseaddr=old_ra)
    new = kernel.socket("tcp", 4, reuseaddr=new_ra)
    try:
        kernel.bind(new, "10.0.0.1", 2200)
        kernel.listen(new, 5)
        result = "OK"
    except SocketError as err:
        result = err.errname
    assert result == expected


def test_time_wait_shares_with_reuseport_of_another_uid() -> None:
    """SO_REUSEPORT over a TIME_WAIT socket ignores its uid (inet_bind_conflict)."""
    kernel = emulated_host()
    tw = _time_wait(kernel, "10.0.0.1", 2300, reuseaddr=False)
    tw.reuseport = True
    new = kernel.socket("tcp", 4, reuseport=True, uid=1000)
    kernel.bind(new, "10.0.0.1", 2300)
    assert new.local_port == 2300


@pytest.mark.parametrize(("proto", "port", "expected"), [
    ("tcp", 80, "EACCES"), ("udp", 80, "EACCES"), ("tcp", 1023, "EACCES"), ("tcp", 1024, "OK"),
], ids=["tcp_80", "udp_80", "tcp_1023", "tcp_1024"])
def test_s46_unprivileged_ports(proto: str, port: int, expected: str) -> None:
    """S46: uid 65534 may not bind below net.ipv4.ip_unprivileged_port_start."""
    kernel = emulated_host()
    sock = kernel.socket(proto, 4, uid=65534)
    try:
        kernel.bind(sock, "0.0.0.0", port)
        result = "OK"
    except SocketError as err:
        result = err.errname
    assert result == expected


def test_bind_registers_and_close_unregisters() -> None:
    """kernel.sockets keeps bind order; close() takes the socket out of every table."""
    kernel = emulated_host()
    a, b = kernel.socket("tcp", 4), kernel.socket("udp", 6)
    kernel.bind(a, "10.0.0.1", 80)
    kernel.bind(b, "::", 53)
    kernel.listen(a, 10)
    assert kernel.sockets == [a, b]
    assert a in list(kernel.tcp.listeners()) and b in kernel.udp and a not in kernel.udp
    kernel.close(a)
    kernel.close(b)
    assert kernel.sockets == []
    assert a not in list(kernel.tcp.listeners()) and b not in kernel.udp
    assert a.state is TcpState.CLOSE


def test_udp_connect_rehashes_and_close_unhashes() -> None:
    """A connected UDP socket stays in kernel.udp under its pinned address; close() removes it."""
    kernel = emulated_host()
    sock = kernel.socket("udp", 4)
    kernel.connect(sock, "10.0.0.2", 5000)
    assert sock in kernel.udp and sock in kernel.sockets
    assert sock.label.startswith("udp://10.0.0.1:")
    kernel.close(sock)
    assert sock not in kernel.udp and sock not in kernel.sockets


def test_listen_caps_backlog_at_somaxconn() -> None:
    """listen() stores min(backlog, net.core.somaxconn) (net/socket.c:__sys_listen)."""
    kernel = emulated_host()
    sock = kernel.socket("tcp", 4)
    kernel.bind(sock, "0.0.0.0", 80)
    kernel.listen(sock, 100000)
    assert sock.backlog == 4096
    kernel.listen(sock, 7)
    assert sock.backlog == 7


def test_specific_ipv6_bind_sets_v6only() -> None:
    """Binding a native IPv6 address makes the socket V6ONLY (__inet6_bind)."""
    kernel = emulated_host()
    sock = kernel.socket("tcp", 6, v6only=False)
    kernel.bind(sock, "fd00::1", 80)
    assert sock.v6only


def test_v6only_default_follows_bindv6only() -> None:
    """v6only=None takes net.ipv6.bindv6only."""
    from pktdemux import Sysctls
    kernel = emulated_host()
    assert kernel.socket("tcp", 6).v6only is False
    kernel.sysctls = Sysctls({"net.ipv6.bindv6only": 1})
    assert kernel.socket("tcp", 6).v6only is True


@pytest.mark.parametrize(("args", "errname"), [
    (("tcp", 5), "EAFNOSUPPORT"),
    (("sctp", 4), "EPROTONOSUPPORT"),
], ids=["family", "protocol"])
def test_socket_refuses(args: tuple[str, int], errname: str) -> None:
    """socket() with an unknown family or protocol fails like Linux's."""
    with pytest.raises(SocketError) as err:
        emulated_host().socket(*args)
    assert err.value.errname == errname


@pytest.mark.parametrize(("options", "errname"), [
    ({"v6only": True}, "ENOPROTOOPT"),
    ({"device": "eth9"}, "ENODEV"),
], ids=["v6only_on_af_inet", "unknown_device"])
def test_setsockopt_refuses(options: dict[str, object], errname: str) -> None:
    """IPV6_V6ONLY on AF_INET and SO_BINDTODEVICE to a missing device fail."""
    with pytest.raises(SocketError) as err:
        emulated_host().socket("tcp", 4, **options)  # type: ignore[arg-type]
    assert err.value.errname == errname


def test_eaddrinuse_message_names_the_blocker() -> None:
    """The EADDRINUSE detail names the socket in the way and why, and the rule."""
    kernel = emulated_host()
    v6 = kernel.socket("tcp", 6, name="web")
    kernel.bind(v6, "::", 80)
    v4 = kernel.socket("tcp", 4)
    with pytest.raises(SocketError) as err:
        kernel.bind(v4, "0.0.0.0", 80)
    assert err.value.detail == 'overlaps "web" tcp://[::]:80 (dual-stack)'
    assert err.value.rule == "spec §7.2"
    assert v4.local_port == 0 and v4 not in kernel.sockets


def test_failed_ipv6_bind_restores_the_socket() -> None:
    """A refused bind leaves address and V6ONLY as they were (__inet6_bind saved_ipv6only)."""
    kernel = emulated_host()
    kernel.bind(kernel.socket("tcp", 6, v6only=False), "::", 80)
    sock = kernel.socket("tcp", 6, v6only=False)
    with pytest.raises(SocketError):
        kernel.bind(sock, "fd00::1", 80)
    assert sock.local_addr == bytes(16) and sock.v6only is False


def test_tcp_connect_transcript() -> None:
    """connect() on a wildcard-bound TCP socket: routed source, ESTABLISHED, no TCB, hashed."""
    kernel = emulated_host()
    sock = kernel.socket("tcp", 6, v6only=False)
    kernel.bind(sock, "::", 5000)
    kernel.connect(sock, "10.0.0.2", 80)
    assert sock.label == "tcp://[::ffff:10.0.0.1]:5000"
    assert (sock.remote_addr, sock.remote_port) == (bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 2]), 80)
    assert sock.state is TcpState.ESTABLISHED and sock.tcb is None
    assert sock in kernel.tcp.established.values()


@pytest.mark.parametrize(("peer", "source"), [
    ("10.0.0.2", "10.0.0.1"),       # on-link: the subnet's primary address
    ("10.0.0.3", "10.0.0.1"),       # own secondary address: its route's prefsrc
    ("127.0.0.9", "127.0.0.1"),     # loopback
    ("192.0.2.7", "10.0.0.1"),      # off-link: the implicit default route
], ids=["on_link", "own_secondary", "loopback", "off_link"])
def test_udp_connect_takes_route_source(peer: str, source: str) -> None:
    """connect() on a UDP socket bound to 0.0.0.0 pins the route's source address (spec §4.2)."""
    import ipaddress
    kernel = emulated_host()
    sock = kernel.socket("udp", 4)
    kernel.bind(sock, "0.0.0.0", 53)
    kernel.connect(sock, peer, 5000)
    assert sock.local_addr == ipaddress.ip_address(source).packed
    assert sock.state is TcpState.ESTABLISHED and sock.proto is Proto.UDP


def test_connect_without_route_is_enetunreach() -> None:
    """A host without IPv6 addresses cannot connect() to an IPv6 peer."""
    from pktdemux import Kernel
    kernel = Kernel()
    sock = kernel.socket("udp", 6)
    with pytest.raises(SocketError) as err:
        kernel.connect(sock, "fd00::2", 53)
    assert err.value.errname == "ENETUNREACH"
