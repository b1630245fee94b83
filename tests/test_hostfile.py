"""Host files: parsing good and bad text, building the kernel, writing back."""

from __future__ import annotations

import ipaddress
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pktdemux import HostFileError, Proto, TcpState
from pktdemux.hostfile import (
    HostSpec,
    SocketSpec,
    build_kernel,
    host_from_dict,
    host_to_dict,
    load_host,
    parse_host,
)

PCAPS = pathlib.Path(__file__).parent.parent / "pcaps"

FULL = """
[host]
addresses = ["10.0.0.1/24", "fd00::1/64"]
interface = "tun0"
mtu = 1400
initrwnd = 10

[sysctl]
"net.ipv4.icmp_ratelimit" = 250
"net.ipv4.ip_local_port_range" = "40000 40999"

[[sockets]]
name = "web server"
label = "tcp://10.0.0.1:8080"
listen = 128
reuseaddr = true
process = "nginx"
pid = 812
uid = 33

[[sockets]]
label = "udp://[::]:53"
v6only = true
device = "tun0"

[[sockets]]
label = "udp://0.0.0.0:5353"
peer = "10.0.0.2:6000"
reuseport = true
"""


def _ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def test_full_file_parses_to_its_values() -> None:
    """Every documented key lands in the HostSpec, sockets in file order."""
    spec = parse_host(FULL, "host.toml")
    (iface,) = spec.interfaces
    assert (iface.name, iface.mtu, [str(a) for a in iface.addresses]) == ("tun0", 1400, ["10.0.0.1/24", "fd00::1/64"])
    assert iface.initrwnd == 10
    assert dict(spec.sysctl) == {"net.ipv4.icmp_ratelimit": 250, "net.ipv4.ip_local_port_range": (40000, 40999)}
    web, dns, mdns = spec.sockets
    assert web == SocketSpec(proto=Proto.TCP, family=4, address=_ip("10.0.0.1"), port=8080, name="web server",
                             listen=128, reuseaddr=True, process="nginx", pid=812, uid=33)
    assert (dns.label, dns.v6only, dns.device, dns.name) == ("udp://[::]:53", True, "tun0", "")
    assert (mdns.peer, mdns.reuseport, mdns.peer_text) == ((_ip("10.0.0.2"), 6000), True, "10.0.0.2:6000")
    assert spec.path == "host.toml"


def test_empty_file_is_a_host_without_addresses() -> None:
    """No [host]: an eth0 without addresses, default sysctls, no sockets."""
    spec = parse_host("", "empty.toml")
    assert [(i.name, i.addresses, i.mtu) for i in spec.interfaces] == [("eth0", [], 1500)]
    kernel = build_kernel(spec)
    assert kernel.sockets == [] and kernel.sysctls.changed() == {}


def test_loopback_only_host_keeps_loopback_addresses() -> None:
    """interface = "lo": the host is seen on lo, which keeps 127.0.0.1/8 and ::1."""
    spec = parse_host('[host]\ninterface = "lo"\n[[sockets]]\nlabel = "tcp://127.0.0.1:8080"\nlisten = 5\n')
    kernel = build_kernel(spec)
    assert [i.name for i in kernel.interfaces] == ["lo"]
    assert kernel.interfaces[0].mtu == 65536
    assert [s.label for s in kernel.tcp.listeners()] == ["tcp://127.0.0.1:8080"]


def test_initrwnd_caps_the_initial_window_of_the_hosts_routes() -> None:
    """[host] initrwnd: the routes out of the host's device carry it, so a
    SYN-ACK offers at most initrwnd x MSS (tcp_select_initial_window); a
    loopback connection's route (lo) does not; 0 or no key: no cap."""
    from tcp_helpers import segment, tcp_header

    def synack_windows(initrwnd: str) -> list[int]:
        kernel = build_kernel(parse_host(f'[host]\naddresses = ["10.0.0.1/24"]\n{initrwnd}\n'
                                         '[[sockets]]\nlabel = "tcp://0.0.0.0:80"\nlisten = 8\n'))
        assert [i.initrwnd for i in kernel.interfaces] == [0, int(initrwnd.partition("=")[2] or 0)]
        syns = [("10.0.0.2", "10.0.0.1", 4000), ("127.0.0.1", "127.0.0.1", 4001)]
        return [tcp_header(kernel.receive(segment(src, dst, sport, 80, "S", options=b"\x02\x04\x05\xb4"),
                                          now=1.0).replies[0])[5] for src, dst, sport in syns]

    assert synack_windows("initrwnd = 4") == [4 * 1460, 65495]
    assert synack_windows("initrwnd = 0") == synack_windows("") == [44 * 1460, 65495]
    assert "initrwnd" not in host_to_dict(parse_host("[host]\ninitrwnd = 0\n"))["host"]


def test_sysctl_names_may_be_nested_tables() -> None:
    """Unquoted dotted keys (a nested TOML table) name the same sysctl."""
    spec = parse_host("[sysctl]\nnet.ipv4.icmp_ratelimit = 5\n")
    assert dict(spec.sysctl) == {"net.ipv4.icmp_ratelimit": 5}


BAD = [
    ("syntax", "[host]\naddresses = [\n\nmtu = ", "line 4", "TOML syntax: "),
    ("unknown_top_key", "[hosts]\n", "hosts", "unknown key (expected one of: host, sysctl, sockets)"),
    ("unknown_host_key", "[host]\nadresses = []\n", "host.adresses", "unknown key"),
    ("bad_address", '[host]\naddresses = ["10.0.0.1/24", "10.0.0.300/24"]\n', "host.addresses[1]",
     "not an address with prefix length: '10.0.0.300/24'"),
    ("address_twice", '[host]\naddresses = ["10.0.0.1/24", "10.0.0.1/24"]\n', "host.addresses[1]",
     "10.0.0.1/24 is listed twice"),
    ("addresses_not_list", '[host]\naddresses = "10.0.0.1/24"\n', "host.addresses", "must be an array"),
    ("mtu_too_small", "[host]\nmtu = 20\n", "host.mtu", "must be an integer in 68..65536, not 20"),
    ("mtu_bool", "[host]\nmtu = true\n", "host.mtu", "must be an integer"),
    ("initrwnd_negative", "[host]\ninitrwnd = -1\n", "host.initrwnd", "must be an integer in 0..65535, not -1"),
    ("initrwnd_text", '[host]\ninitrwnd = "10"\n', "host.initrwnd", "must be an integer"),
    ("interface_name", '[host]\ninterface = "eth 0"\n', "host.interface", "not a device name: 'eth 0'"),
    ("unknown_sysctl", '[sysctl]\n"net.ipv4.nope" = 1\n', 'sysctl."net.ipv4.nope"', "unknown sysctl"),
    ("sysctl_shape", '[sysctl]\n"net.ipv4.ip_local_port_range" = 5\n', 'sysctl."net.ipv4.ip_local_port_range"',
     "net.ipv4.ip_local_port_range takes 2 integers, got 5"),
    ("sockets_not_array", "sockets = 3\n", "sockets", "must be an array of tables"),
    ("missing_label", "[[sockets]]\nlisten = 1\n", "sockets[0].label", "missing"),
    ("unknown_socket_key", '[[sockets]]\nlabel = "tcp://0.0.0.0:80"\nreuse_port = true\n',
     "sockets[0].reuse_port", "unknown key (expected one of: name, label, listen, peer,"),
    ("label_no_port", '[[sockets]]\nlabel = "tcp://10.0.0.1"\n', "sockets[0].label", "expected proto://address:port"),
    ("label_proto", '[[sockets]]\nlabel = "sctp://10.0.0.1:80"\n', "sockets[0].label",
     "protocol must be tcp or udp, not 'sctp'"),
    ("label_v6_unbracketed", '[[sockets]]\nlabel = "tcp://fd00::1:80"\n', "sockets[0].label",
     "expected proto://address:port"),
    ("label_v4_bracketed", '[[sockets]]\nlabel = "tcp://[10.0.0.1]:80"\n', "sockets[0].label",
     "IPv6 addresses go in brackets, IPv4 ones without"),
    ("label_port_range", '[[sockets]]\nlabel = "udp://0.0.0.0:70000"\n', "sockets[0].label",
     "port 70000 outside 0..65535"),
    ("label_bad_address", '[[sockets]]\nlabel = "udp://10.0.0.1.5:53"\n', "sockets[0].label",
     "not an IP address: '10.0.0.1.5'"),
    ("flag_not_bool", '[[sockets]]\nlabel = "tcp://0.0.0.0:80"\nreuseport = 1\n', "sockets[0].reuseport",
     "must be true or false, not 1"),
    ("listen_string", '[[sockets]]\nlabel = "tcp://0.0.0.0:80"\nlisten = "128"\n', "sockets[0].listen",
     "must be an integer"),
    ("listen_and_peer", '[[sockets]]\nlabel = "tcp://0.0.0.0:80"\nlisten = 1\npeer = "10.0.0.2:9"\n',
     "sockets[0].peer", "a LISTEN socket has no peer: give listen or peer, not both"),
    ("v6only_on_v4", '[[sockets]]\nlabel = "tcp://0.0.0.0:80"\nv6only = true\n', "sockets[0].v6only",
     "IPV6_V6ONLY applies to IPv6 sockets only"),
    ("peer_port_zero", '[[sockets]]\nlabel = "udp://0.0.0.0:53"\npeer = "10.0.0.2:0"\n', "sockets[0].peer",
     "port 0 outside 1..65535"),
    ("peer_garbage", '[[sockets]]\nlabel = "udp://0.0.0.0:53"\npeer = "somewhere"\n', "sockets[0].peer",
     "expected address:port"),
    ("uid_negative", '[[sockets]]\nlabel = "udp://0.0.0.0:53"\nuid = -1\n', "sockets[0].uid", "must be an integer"),
    ("closed_text", '[[sockets]]\nlabel = "udp://0.0.0.0:53"\nclosed = "soon"\n', "sockets[0].closed",
     "must be a capture time in seconds since the epoch"),
    ("closed_negative", '[[sockets]]\nlabel = "udp://0.0.0.0:53"\nclosed = -1.5\n', "sockets[0].closed",
     "must be a capture time"),
    ("second_socket", '[[sockets]]\nlabel = "udp://0.0.0.0:53"\n[[sockets]]\nlabel = "udp://0.0.0.0"\n',
     "sockets[1].label", "expected proto://address:port"),
]


@pytest.mark.parametrize(("text", "position", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_file_is_one_line_error_at_its_position(text: str, position: str, reason: str) -> None:
    """Each kind of mistake is a HostFileError naming the path, the position and the reason."""
    with pytest.raises(HostFileError) as err:
        parse_host(text, "bad.toml")
    message = str(err.value)
    assert "\n" not in message
    assert (err.value.path, err.value.position) == ("bad.toml", position)
    assert message.startswith(f"bad.toml: {position}: {reason}")


IMPOSSIBLE = [
    ("dual_stack_overlap",
     ('[host]\naddresses = ["10.0.0.1/24"]\n[[sockets]]\nlabel = "tcp://[::]:80"\nlisten = 1\n'
     '[[sockets]]\nname = "api"\nlabel = "tcp://0.0.0.0:80"\nlisten = 1\n'),
     "sockets[1] (api): bind tcp://0.0.0.0:80: EADDRINUSE: overlaps tcp://[::]:80 (dual-stack), spec §7.2"),
    ("second_listener",
     ('[host]\naddresses = ["10.0.0.1/24"]\n[[sockets]]\nlabel = "tcp://10.0.0.1:80"\nreuseaddr = true\nlisten = 1\n'
     '[[sockets]]\nlabel = "tcp://10.0.0.1:80"\nreuseaddr = true\nlisten = 1\n'),
     ("sockets[1]: bind tcp://10.0.0.1:80: EADDRINUSE: overlaps tcp://10.0.0.1:80 "
     "(listening: SO_REUSEADDR does not apply), spec §7.2")),
    ("not_local",
     '[host]\naddresses = ["10.0.0.1/24"]\n[[sockets]]\nlabel = "udp://10.0.0.9:53"\n',
     "sockets[0]: bind udp://10.0.0.9:53: EADDRNOTAVAIL: 10.0.0.9 is not an address of this host"),
    ("no_addresses",
     '[[sockets]]\nlabel = "tcp://10.0.0.1:22"\nlisten = 1\n',
     "sockets[0]: bind tcp://10.0.0.1:22: EADDRNOTAVAIL"),
    ("no_route_without_addresses",
     '[[sockets]]\nlabel = "udp://0.0.0.0:53"\npeer = "10.0.0.2:53"\n',
     "sockets[0]: connect udp://0.0.0.0:53 to 10.0.0.2:53: ENETUNREACH: no route to 10.0.0.2"),
    ("unknown_device",
     '[[sockets]]\nlabel = "tcp://0.0.0.0:22"\ndevice = "wlan0"\n',
     "sockets[0]: socket: ENODEV: SO_BINDTODEVICE wlan0: no such device"),
    ("listen_on_udp",
     '[[sockets]]\nlabel = "udp://0.0.0.0:53"\nlisten = 5\n',
     "sockets[0]: listen udp://0.0.0.0:53: EOPNOTSUPP: listen() on a UDP socket"),
    ("privileged_port",
     '[[sockets]]\nlabel = "tcp://0.0.0.0:80"\nuid = 1000\n',
     "sockets[0]: bind tcp://0.0.0.0:80: EACCES: port 80 < net.ipv4.ip_unprivileged_port_start 1024 for uid 1000"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in IMPOSSIBLE], ids=[c[0] for c in IMPOSSIBLE])
def test_impossible_table_is_refused_naming_socket_and_rule(text: str, message: str) -> None:
    """build_kernel() refuses a table Linux could not have, naming the socket, the call and the rule."""
    spec = parse_host(text, "h.toml")
    with pytest.raises(HostFileError) as err:
        build_kernel(spec)
    assert str(err.value).startswith(f"h.toml: {message}")
    assert "\n" not in str(err.value)


def test_build_transcript() -> None:
    """build_kernel() makes Linux's calls: listeners hashed, peers connected, names from labels."""
    kernel = build_kernel(parse_host(FULL + '\n[[sockets]]\nlabel = "tcp://0.0.0.0:0"\npeer = "10.0.0.2:443"\n'),
                          seed=3)
    web, dns, mdns, client = kernel.sockets
    assert (web.display_name, web.state, web.backlog, web.uid, web.process, web.pid) == \
        ("web server", TcpState.LISTEN, 128, 33, "nginx", 812)
    assert list(kernel.tcp.listeners()) == [web]
    assert (dns.display_name, dns.v6only, dns.device) == ("udp://[::]:53", True, "tun0")
    # connect() pinned the wildcard address to the route's source (spec §4.2)
    assert (mdns.label, mdns.state, mdns.display_name) == ("udp://10.0.0.1:5353", TcpState.ESTABLISHED,
                                                          "udp://0.0.0.0:5353")
    # a TCP peer: ESTABLISHED with unknown sequence numbers; port 0 went through bind(0): odd, in range
    assert client.state is TcpState.ESTABLISHED and client.tcb is None
    assert 40000 <= client.local_port <= 40999 and client.local_port % 2 == 1
    assert client in kernel.tcp.established.values()
    assert kernel.sysctls["net.ipv4.icmp_ratelimit"] == 250


def test_build_is_reproducible_and_leaves_spec_alone() -> None:
    """The same seed gives the same ports; the kernel does not share the spec's lists."""
    text = '[host]\naddresses = ["10.0.0.1/24"]\n' + '[[sockets]]\nlabel = "udp://0.0.0.0:0"\n' * 3
    spec = parse_host(text)
    first, second = build_kernel(spec, seed=9), build_kernel(spec, seed=9)
    assert [s.local_port for s in first.sockets] == [s.local_port for s in second.sockets]
    first.interfaces[1].addresses.clear()
    assert spec.interfaces[0].addresses == [ipaddress.ip_interface("10.0.0.1/24")]


@pytest.mark.parametrize("when, packets_after, state", [
    # (close time, receive a datagram at this time, delivered?)
    (None, 100.0, True),     # no close time: the socket lives through the capture
    (50.0, 49.0, True),      # before the close time the port is open
    (50.0, 50.0, False),     # at the close time the socket is gone: port unreachable
    (50.0, 51.0, False),
])
def test_closed_socket_leaves_at_its_close_time(when: float | None, packets_after: float, state: bool) -> None:
    """``closed``: the application close()s the socket at that capture time
    (a timer of the kernel), so a datagram after it finds the port closed."""
    from scapy.layers.inet import IP, UDP

    from pktdemux.dropreason import DropReason

    text = '[host]\naddresses = ["10.0.0.1/24"]\n[[sockets]]\nlabel = "udp://0.0.0.0:53"\n'
    if when is not None:
        text += f"closed = {when}\n"
    kernel = build_kernel(parse_host(text))
    packet = bytes(IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=4000, dport=53) / b"q")
    verdict = kernel.receive(packet, now=packets_after)
    assert verdict.delivered is state
    if not state:
        assert verdict.reason is DropReason.NO_SOCKET and len(verdict.replies) == 1
        assert [f.what for f in kernel.drain_timer_output()] == ["close"]


def test_load_host_reads_files(tmp_path: pathlib.Path) -> None:
    """load_host() parses a file; a missing or non-UTF-8 file is a HostFileError."""
    path = tmp_path / "h.toml"
    path.write_text(FULL)
    assert load_host(str(path)) == parse_host(FULL)
    with pytest.raises(HostFileError, match="No such file"):
        load_host(str(tmp_path / "missing.toml"))
    path.write_bytes(b"[host]\n\xff\n")
    with pytest.raises(HostFileError, match="not UTF-8"):
        load_host(str(path))


@pytest.mark.parametrize("path", sorted(PCAPS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_host_files_build_and_round_trip(path: pathlib.Path) -> None:
    """Every host file in pcaps/ parses, builds and survives host_to_dict/host_from_dict."""
    spec = load_host(str(path))
    kernel = build_kernel(spec)
    assert len(kernel.sockets) == len(spec.sockets)
    assert host_from_dict(host_to_dict(spec)) == spec


_addresses4 = st.binary(min_size=4, max_size=4)
_addresses6 = st.binary(min_size=16, max_size=16)
_text = st.text(min_size=1, max_size=12)


@st.composite
def socket_specs(draw: st.DrawFn) -> SocketSpec:
    family = draw(st.sampled_from([4, 6]))
    role = draw(st.sampled_from(["bound", "listen", "peer"]))
    return SocketSpec(
        proto=draw(st.sampled_from(list(Proto))), family=family,
        address=draw(_addresses4 if family == 4 else _addresses6), port=draw(st.integers(0, 65535)),
        name=draw(st.text(max_size=12)),
        listen=draw(st.integers(0, 4096)) if role == "listen" else None,
        peer=(draw(_addresses4 | _addresses6), draw(st.integers(1, 65535))) if role == "peer" else None,
        reuseaddr=draw(st.booleans()), reuseport=draw(st.booleans()),
        v6only=draw(st.none() | st.booleans()) if family == 6 else None,
        device=draw(st.none() | _text), process=draw(st.none() | _text),
        pid=draw(st.none() | st.integers(0, 2**22)), uid=draw(st.integers(0, 2**32 - 2)),
        closed=draw(st.none() | st.floats(0, 2e9)),
    )


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(socket_specs(), max_size=4), st.integers(68, 65536),
       st.dictionaries(st.sampled_from(["net.ipv4.icmp_ratelimit", "net.ipv4.ip_default_ttl"]), st.integers(0, 255)),
       st.integers(0, 65535))
def test_host_to_dict_round_trips(sockets: list[SocketSpec], mtu: int, sysctl: dict[str, int], initrwnd: int) -> None:
    """host_from_dict(host_to_dict(spec)) == spec for any spec a file can express."""
    from pktdemux import Interface
    spec = HostSpec(interfaces=(Interface("eth1", [ipaddress.ip_interface("192.0.2.1/24")], mtu,
                                          initrwnd=initrwnd),),
                    sysctl=sysctl, sockets=tuple(sockets))
    assert host_from_dict(host_to_dict(spec)) == spec
