"""The kernel oracle itself: it reproduces recorded kernel replies, sets up
the socket table as the host file says, and reports why it cannot run."""

from __future__ import annotations

import errno
import os

import pytest
from kernel_support import Case, host_toml, require_oracle

from pktdemux.matching import mask_random_fields
from pktdemux.oracle import (
    HostSetup,
    Injection,
    OracleError,
    OracleUnavailable,
    Scenario,
    SocketCall,
    SocketSetup,
    check_available,
    final_ack,
    is_background_noise,
    run_scenario,
)
from pktdemux.oracle.segments import ACK, SYN, build_segment, parse_tcp

# Spec §12.1, recorded on Linux 6.18.44: incoming bytes and the kernel's reply.
T01_IN = bytes.fromhex("4500002800010000400666c40a00000b0a0000019c400051000003e80000000050022000db5d0000")
T01_OUT = bytes.fromhex("4500002800004000400626c50a0000010a00000b00519c4000000000000003e950140000fb4a0000")
U01_IN = bytes.fromhex("4500002603090000401163930a00002b0a000001138803e70012ed4861616161616161616161")
U01_OUT = bytes.fromhex(
    "45c00042be3000004001a79f0a0000010a00002b0303114c00000000"
    "4500002603090000401163930a00002b0a000001138803e70012ed4861616161616161616161")

PLAIN_HOST = {"host": {"addresses": ["10.0.0.1/24", "fd00::1/64"], "interface": "tun0"}}


def v4(last: int) -> bytes:
    return bytes([10, 0, 0, last])


def udp4(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    from pktdemux.wire import PROTO_UDP, build_ipv4, transport_checksum

    seg = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") + b"\0\0" + payload
    csum = transport_checksum(src, dst, PROTO_UDP, seg)
    return build_ipv4(src=src, dst=dst, proto=PROTO_UDP, payload=seg[:6] + csum.to_bytes(2, "big") + seg[8:])


# --------------------------------------------------------------------------- no kernel needed

def test_noise_filter_recognises_igmp_mld_and_neighbour_discovery() -> None:
    """IGMP, Hop-by-Hop (MLD) and ND/RS packets are noise; replies are not."""
    igmp = bytes.fromhex("46c000200000400001024196") + bytes(20)
    mld = bytes.fromhex("6000000000240001") + bytes(32) + b"\x3a\x00" + bytes(34)
    rs = bytes.fromhex("6000000000083aff") + bytes(32) + bytes([133]) + bytes(7)
    echo_reply = bytes.fromhex("6000000000083a40") + bytes(32) + bytes([129]) + bytes(7)
    assert [is_background_noise(p) for p in (igmp, mld, rs)] == [True, True, True]
    assert [is_background_noise(p) for p in (T01_OUT, U01_OUT, echo_reply)] == [False, False, False]


def test_scenario_survives_its_json_form() -> None:
    """The helper process rebuilds exactly the scenario the caller gave."""
    host = HostSetup.from_toml(host_toml(
        [{"label": "udp://[::]:53", "v6only": True, "name": "dns"},
         {"label": "tcp://10.0.0.1:80", "peer": "10.0.0.2:6000", "reuseaddr": True}],
        sysctls={"net.ipv4.ip_local_port_range": [40000, 40009]}, mtu=1400, initrwnd=10))
    assert host.initrwnd == 10
    scenario = Scenario(host, (Injection(0.0, T01_IN), Injection(0.5, U01_IN, True)), settle=0.2, name="x")
    assert Scenario.from_json(scenario.to_json()) == scenario


def test_host_setup_reads_the_host_file_model() -> None:
    """Labels give protocol, address, port and family; absent keys keep their defaults."""
    host = HostSetup.from_mapping({
        "host": {"addresses": ["10.0.0.1/24"]},
        "sockets": [{"label": "tcp://[::ffff:10.0.0.1]:80", "listen": 16, "process": "nginx", "pid": 7}],
    })
    sock = host.sockets[0]
    assert host.interface == "eth0"
    assert sock.endpoint == ("tcp", "::ffff:a00:1", 80, 6)
    assert (sock.listen, sock.peer, sock.v6only, sock.uid) == (16, None, None, 0)
    assert host.initrwnd is None


@pytest.mark.parametrize("label", ["tcp://10.0.0.1", "sctp://10.0.0.1:80", "udp://fd00::1:53", "tcp://[10.0.0.1]:1"])
def test_malformed_socket_labels_are_refused(label: str) -> None:
    """A label must be proto://address:port with IPv6 in brackets."""
    with pytest.raises(ValueError):
        SocketSetup(label)


def test_socket_calls_survive_the_json_form_and_come_after_packets_of_their_offset() -> None:
    calls = (SocketCall(0.0, "conn", "close"), SocketCall(0.2, "c", "connect", "[fd00::2]:7"),
             SocketCall(0.5, "web", "status"))
    packets = (Injection(0.0, T01_IN), Injection(0.5, T01_IN, quote_from_isn=True))
    scenario = Scenario(HostSetup(("10.0.0.1/24",)), packets, calls=calls)
    assert Scenario.from_json(scenario.to_json()) == scenario
    assert scenario.steps() == [("packet", 0), ("call", 0), ("call", 1), ("packet", 1), ("call", 2)]
    assert scenario.duration == 0.5


@pytest.mark.parametrize(("call", "peer"), [("listen", None), ("connect", None), ("close", "10.0.0.2:1"),
                                            ("connect", "10.0.0.2")])
def test_malformed_socket_calls_are_refused(call: str, peer: str | None) -> None:
    with pytest.raises(ValueError):
        SocketCall(0.0, "s", call, peer)


@pytest.mark.parametrize("version", [4, 6])
def test_an_icmp_quote_is_rebased_on_the_isn_with_a_valid_checksum(version: int) -> None:
    from ip_vectors import icmp4, icmp6

    from pktdemux.oracle.segments import quoted_flow, rebase_quoted_seq
    from pktdemux.wire import PROTO_ICMPV6, checksum, transport_checksum

    local, peer = (v4(1), v4(2)) if version == 4 else (bytes.fromhex("fd00" + "00" * 13 + "01"),
                                                       bytes.fromhex("fd00" + "00" * 13 + "02"))
    quote = build_segment(src=local, dst=peer, sport=40000, dport=7, seq=1, ack=0, flags=SYN)
    text = ["10.0.0.2", "10.0.0.1"] if version == 4 else ["fd00::2", "fd00::1"]
    error = (icmp4 if version == 4 else icmp6)(*text, 3 if version == 4 else 1, 3, rest=bytes(4), data=quote)
    rebased = rebase_quoted_seq(error, 0xFFFFFFFF)
    assert quoted_flow(rebased) == (local, 40000, peer, 7)
    at = 20 if version == 4 else 40
    assert rebased[at + 8 + at + 4:at + 8 + at + 8] == bytes(4)  # 1 + 0xFFFFFFFF wraps to 0
    if version == 4:
        assert checksum(rebased[at:]) == 0
    else:
        assert transport_checksum(rebased[8:24], rebased[24:40], PROTO_ICMPV6, rebased[40:]) == 0
    assert rebase_quoted_seq(T01_IN, 5) == T01_IN


def test_proc_net_tcp_addresses_are_read_in_host_order() -> None:
    from pktdemux.oracle.host_sockets import _proc_endpoint

    assert _proc_endpoint("0100000A:0050") == ("10.0.0.1", 80)
    assert _proc_endpoint("0000FDFD000000000000000001000000:1F90") == ("fdfd::1", 8080)
    assert _proc_endpoint("0000000000000000FFFF00000100000A:0050") == ("10.0.0.1", 80)


def test_offsets_must_not_go_back_in_time() -> None:
    with pytest.raises(ValueError):
        Scenario(HostSetup(("10.0.0.1/24",)), (Injection(1.0, T01_IN), Injection(0.5, T01_IN)))


def test_final_ack_answers_a_syn_ack_of_the_same_flow_only() -> None:
    """seq = SYN.seq + 1 and ack = ISN + 1; a RST or another flow gives None."""
    syn = build_segment(src=v4(2), dst=v4(1), sport=5000, dport=80, seq=77, ack=0, flags=SYN)
    synack = build_segment(src=v4(1), dst=v4(2), sport=80, dport=5000, seq=9999, ack=78, flags=SYN | ACK)
    other = build_segment(src=v4(1), dst=v4(2), sport=80, dport=5001, seq=9999, ack=78, flags=SYN | ACK)
    ack = parse_tcp(final_ack(syn, synack) or b"")
    assert ack is not None and (ack.seq, ack.ack, ack.flags) == (78, 10000, ACK)
    assert final_ack(syn, other) is None
    assert final_ack(syn, T01_OUT) is None


def test_not_root_means_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root the oracle says so before starting anything."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(OracleUnavailable, match="root"):
        check_available()
    with pytest.raises(OracleUnavailable):
        run_scenario(Scenario.evenly_spaced(PLAIN_HOST, [T01_IN]))


def test_failing_namespace_creation_means_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """When unshare itself fails, the reason is reported as unavailability."""
    fake = tmp_path / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("pktdemux.oracle.runner.check_available", lambda: None)
    with pytest.raises(OracleUnavailable, match="Operation not permitted"):
        run_scenario(Scenario.evenly_spaced(PLAIN_HOST, [T01_IN]))


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_unavailable_kernel_skips_outside_ci_and_fails_in_ci(monkeypatch, ci, outcome) -> None:
    """Under CI=true a missing namespace fails the kernel tests; elsewhere they skip, saying why."""
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="needs root"):
        require_oracle(OracleUnavailable("needs root"))


# --------------------------------------------------------------------------- on the real kernel

@pytest.mark.kernel
def test_oracle_reproduces_vectors_t01_and_u01(kernel_oracle) -> None:
    """T01 (RST+ACK) comes back byte for byte; U01 (port unreachable) apart from the IP ID."""
    result = kernel_oracle(Scenario.evenly_spaced(PLAIN_HOST, [T01_IN, U01_IN], name="T01+U01"))
    t01, u01 = result.packets
    assert t01.reply_bytes == (T01_OUT,)
    assert len(u01.replies) == 1
    assert mask_random_fields(u01.replies[0].packet) == mask_random_fields(U01_OUT)
    assert t01.sent_at <= t01.replies[0].at < u01.sent_at <= u01.replies[0].at


@pytest.mark.kernel
def test_sockets_are_created_in_order_with_their_errors(kernel_oracle) -> None:
    """A conflicting bind is reported with the kernel's errno; the others work."""
    host = host_toml([
        {"label": "tcp://0.0.0.0:80", "listen": 8, "name": "wild"},
        {"label": "tcp://10.0.0.1:80", "listen": 8, "name": "exact"},
        {"label": "udp://0.0.0.0:53", "name": "dns", "reuseaddr": True},
        {"label": "udp://0.0.0.0:53", "name": "dns2", "reuseaddr": True},
        {"label": "tcp://[::]:80", "listen": 8, "v6only": True, "name": "six"},
    ])
    result = kernel_oracle(Case("order", host).scenario())
    errors = {s.name: s.error for s in result.sockets}
    assert errors == {"wild": None, "exact": errno.errorcode[errno.EADDRINUSE], "dns": None, "dns2": None,
                      "six": None}


@pytest.mark.kernel
def test_udp_receipts_and_accepted_connections_are_reported(kernel_oracle) -> None:
    """Datagrams are read from the socket that got them; a completed
    handshake shows up in the listener's accept queue."""
    host = host_toml([
        {"label": "udp://0.0.0.0:53", "name": "dns"},
        {"label": "tcp://0.0.0.0:80", "listen": 8, "name": "web"},
    ])
    case = Case("receipts", host)
    case.add(udp4(v4(2), v4(1), 4000, 53, b"query"))
    case.add(build_segment(src=v4(3), dst=v4(1), sport=5000, dport=80, seq=10, ack=0, flags=SYN), complete_handshake=True)
    result = kernel_oracle(case.scenario())
    dns, web = result.sockets
    assert [(d.src, d.sport, d.payload) for d in dns.datagrams] == [("10.0.0.2", 4000, b"query")]
    assert [(a.peer, a.pport, a.local, a.lport) for a in web.accepted] == [("10.0.0.3", 5000, "10.0.0.1", 80)]
    syn_result = result.packets[1]
    assert syn_result.followup is not None
    assert parse_tcp(syn_result.replies[0].packet).flags == SYN | ACK


@pytest.mark.kernel
def test_established_connection_records_its_sequence_numbers(kernel_oracle) -> None:
    """The ESTABLISHED socket answers in-window data with an ACK whose
    seq/ack are the recorded snd_nxt and rcv_nxt + data."""
    host = host_toml([{"label": "tcp://10.0.0.1:80", "peer": "10.0.0.2:41023", "name": "conn"}])
    probe = Case("established", host)
    conn = kernel_oracle(probe.scenario()).connections[0]
    assert (conn.local, conn.lport, conn.peer, conn.pport) == ("10.0.0.1", 80, "10.0.0.2", 41023)
    assert conn.snd_nxt == (conn.local_isn + 1) % 2**32 and conn.rcv_nxt == conn.peer_isn + 1
    # The same set-up again, now with data: the ISN is new, the rule is the same.
    probe.add(build_segment(src=v4(2), dst=v4(1), sport=41023, dport=80, seq=conn.rcv_nxt, ack=1, flags=ACK,
                            payload=b"hello"), ack_from_isn=True)
    result = kernel_oracle(probe.scenario())
    conn = result.connections[0]
    assert parse_tcp(result.packets[0].packet).ack == conn.snd_nxt
    ack = parse_tcp(result.packets[0].replies[0].packet)
    assert (ack.seq, ack.ack, ack.flags) == (conn.snd_nxt, conn.rcv_nxt + 5, ACK)
    assert result.sockets[0].data == b"hello"


@pytest.mark.kernel
def test_bad_sysctl_is_a_scenario_error(kernel_oracle) -> None:
    """A sysctl the kernel does not have fails the scenario, naming it."""
    host = {"host": {"addresses": ["10.0.0.1/24"]}, "sysctl": {"net.ipv4.no_such_thing": 1}}
    with pytest.raises(OracleError, match="no_such_thing"):
        kernel_oracle(Scenario.evenly_spaced(host, [T01_IN]))


def test_host_setup_from_the_parsed_host_file() -> None:
    """A HostSpec gives the same set-up as its TOML text."""
    from pktdemux.hostfile import parse_host

    text = host_toml([{"label": "udp://[::]:53", "v6only": True, "name": "dns"},
                      {"label": "tcp://10.0.0.1:80", "peer": "10.0.0.2:6000", "reuseaddr": True}],
                     sysctls={"net.ipv4.icmp_ratelimit": 0}, initrwnd=4)
    assert HostSetup.from_spec(parse_host(text)) == HostSetup.from_toml(text)


@pytest.mark.kernel
def test_replies_to_the_hosts_own_address_are_seen_on_lo(kernel_oracle) -> None:
    """A packet from the host's own IPv6 address is answered through lo; the
    oracle reports that reply, with the checksum a wire would carry."""
    from pktdemux.wire import transport_checksum_ok

    own = bytes.fromhex("fd000000000000000000000000000001")
    syn = build_segment(src=own, dst=own, sport=59012, dport=313, seq=5, ack=0, flags=SYN)
    result = kernel_oracle(Scenario.evenly_spaced(PLAIN_HOST, [syn]))
    (reply,) = result.packets[0].reply_bytes
    assert parse_tcp(reply).flags == 0x14  # RST+ACK from the closed port
    assert transport_checksum_ok(own, own, 6, reply[40:])
