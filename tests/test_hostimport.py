"""Host files from ss output, /proc/net copies and captures (pktdemux.hostimport, `pktdemux host`)."""

from __future__ import annotations

import ipaddress
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pktdemux.cli import main
from pktdemux.errors import InputError
from pktdemux.hostfile import build_kernel, parse_host
from pktdemux.hostimport import (
    build_host,
    infer_host,
    parse_ip_addr_json,
    parse_proc_net,
    parse_ss,
    render,
)
from pktdemux.sockets import Proto

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(__file__).with_name("data") / "hostimport"
PCAPS = ROOT / "pcaps"


def packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


# -- ss --------------------------------------------------------------------------------

SS_ROWS = [
    # (line, proto, family, address, port, state, peer, backlog, v6only, device, process, pid, uid)
    ('tcp LISTEN 0 128 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=1234,fd=6))',
     Proto.TCP, 4, "0.0.0.0", 80, "LISTEN", None, 128, None, None, "nginx", 1234, None),
    ("tcp LISTEN 0 511 *:443 *:* ino:5 sk:1 v6only:0 <->",
     Proto.TCP, 6, "::", 443, "LISTEN", None, 511, False, None, None, None, 0),
    ("tcp LISTEN 0 32 [::]:22 [::]:* uid:1000 ino:7 sk:2 v6only:1 <->",
     Proto.TCP, 6, "::", 22, "LISTEN", None, 32, True, None, None, None, 1000),
    ("tcp ESTAB 0 0 [::ffff:10.0.0.1]:80 [::ffff:10.0.0.2]:5555",
     Proto.TCP, 6, "::ffff:10.0.0.1", 80, "ESTAB", ("::ffff:10.0.0.2", 5555), None, None, None, None, None, None),
    ("udp UNCONN 0 0 0.0.0.0%lo:53 0.0.0.0:*",
     Proto.UDP, 4, "0.0.0.0", 53, "UNCONN", None, None, None, "lo", None, None, None),
    ("tcp LISTEN 0 10 *%eth0:8080 *:*",
     Proto.TCP, 6, "::", 8080, "LISTEN", None, 10, False, "eth0", None, None, None),
    ("udp ESTAB 0 0 10.0.0.1:7103 10.0.0.2:9999",
     Proto.UDP, 4, "10.0.0.1", 7103, "ESTAB", ("10.0.0.2", 9999), None, None, None, None, None, None),
    ('tcp ESTAB 0 0 10.0.0.1:22 10.0.0.9:40000 users:(("sshd: root",pid=9,fd=4),("sshd",pid=8,fd=4))',
     Proto.TCP, 4, "10.0.0.1", 22, "ESTAB", ("10.0.0.9", 40000), None, None, None, "sshd: root", 9, None),
    ("tcp TIME-WAIT 0 0 10.0.0.1:80 10.0.0.2:6000",
     Proto.TCP, 4, "10.0.0.1", 80, "TIME-WAIT", ("10.0.0.2", 6000), None, None, None, None, None, None),
    ("udp UNCONN 0 0 :::5353 :::*",  # older ss: IPv6 without brackets
     Proto.UDP, 6, "::", 5353, "UNCONN", None, None, None, None, None, None, None),
]


@pytest.mark.parametrize("row", SS_ROWS, ids=[r[0][:40] for r in SS_ROWS])
def test_ss_row(row: tuple) -> None:
    line, proto, family, address, port, state, peer, backlog, v6only, device, process, pid, uid = row
    (obs,) = parse_ss(line).sockets
    assert (obs.proto, obs.family, obs.address, obs.port, obs.state) == (proto, family, packed(address), port, state)
    assert obs.peer == (None if peer is None else (packed(peer[0]), peer[1]))
    assert (obs.backlog, obs.v6only, obs.device, obs.process, obs.pid, obs.uid) == (
        backlog, v6only, device, process, pid, uid)


@pytest.mark.parametrize("text, proto", [
    ("State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\nLISTEN 0 4096 0.0.0.0:22 0.0.0.0:*\n",
     Proto.TCP),
    ("UNCONN 0 0 0.0.0.0:68 0.0.0.0:*\n", Proto.UDP),   # ss -ulnp -H
    ("ESTAB 0 0 10.0.0.1:22 10.0.0.2:5000\n", Proto.TCP),
])
def test_ss_without_netid_guesses_the_kind(text: str, proto: Proto) -> None:
    (obs,) = parse_ss(text).sockets
    assert obs.proto is proto


def test_ss_proto_option_overrides_the_guess() -> None:
    (obs,) = parse_ss("ESTAB 0 0 10.0.0.1:53 10.0.0.2:5000\n", proto="udp").sockets
    assert obs.proto is Proto.UDP


def test_ss_skips_other_kinds_and_reads_continuation_lines() -> None:
    text = ("Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
            "u_str ESTAB 0 0 * 123 * 124\n"
            "tcp ESTAB 0 0 10.0.0.1:22 10.0.0.2:5000\n"
            "\t cubic wscale:7,7 rto:204 uid:33 ino:9\n")
    listing = parse_ss(text)
    assert [o.port for o in listing.sockets] == [22]
    assert listing.sockets[0].uid == 33
    assert any("u_str" in n for n in listing.notes)


@pytest.mark.parametrize("text, position, reason", [
    ("tcp LISTEN 0 128 0.0.0.0:80\n", "line 1", "got 4 columns"),
    ("tcp LISTEN 0 128 0.0.0.0:http 0.0.0.0:*\n", "line 1", "-n"),
    ("tcp BOGUS 0 128 0.0.0.0:80 0.0.0.0:*\n", "line 1", "unknown socket state"),
    ("\ntcp LISTEN 0 x 0.0.0.0:80 0.0.0.0:*\n", "line 2", "Send-Q must be a number"),
    ("tcp LISTEN 0 1 300.0.0.1:80 0.0.0.0:*\n", "line 1", "not an IP address"),
    ("tcp LISTEN 0 1 0.0.0.0:70000 0.0.0.0:*\n", "line 1", "outside 0..65535"),
    ("# a comment\n", "line 1", "neither a socket kind"),
    ("  cubic wscale:7,7\n", "line 1", "continuation line"),
])
def test_ss_errors_name_the_line(text: str, position: str, reason: str) -> None:
    with pytest.raises(InputError) as err:
        parse_ss(text, "ss.txt")
    assert err.value.path == "ss.txt" and err.value.position == position
    assert reason in err.value.reason
    assert "\n" not in str(err.value)


# -- /proc/net ---------------------------------------------------------------------------

PROC_ROWS = [
    # (table, line, address, port, state, peer, uid)
    ("tcp", "   0: 0100007F:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000  0 161296 1",
     "127.0.0.1", 7001, "LISTEN", None, 1000),
    ("tcp", "   5: 0100000A:8A36 0200000A:0050 01 00000000:00000000 00:00000000 00000000     0  0 161303 2",
     "10.0.0.1", 35382, "ESTAB", ("10.0.0.2", 80), 0),
    ("tcp", "   6: 0100000A:0050 0200000A:8A37 06 00000000:00000000 03:00001000 00000000     0  0 0 3",
     "10.0.0.1", 80, "TIME-WAIT", ("10.0.0.2", 35383), 0),
    ("tcp6", ("   0: 00000000000000000000000000000000:1B5C 00000000000000000000000000000000:0000 0A "
              "00000000:00000000 00:00000000 00000000     0        0 161299 1"), "::", 7004, "LISTEN", None, 0),
    ("tcp6", ("   1: 0000000000000000FFFF00000100000A:0050 0000000000000000FFFF00000200000A:D431 01 "
              "00000000:00000000 00:00000000 00000000    33        0 99 1"), "::ffff:10.0.0.1", 80, "ESTAB",
     ("::ffff:10.0.0.2", 54321), 33),
    ("udp6", (" 2136: 000000FD000000000000000001000000:1BBE 00000000000000000000000000000000:0000 07 "
              "00000000:00000000 00:00000000 00000000     0        0 161306 2 0 0"), "fd00::1", 7102, "UNCONN",
     None, 0),
    ("udp", " 2137: 0100000A:1BBF 0200000A:270F 01 00000000:00000000 00:00000000 00000000     0        0 7 2 0 0",
     "10.0.0.1", 7103, "ESTAB", ("10.0.0.2", 9999), 0),
]


@pytest.mark.parametrize("row", PROC_ROWS, ids=[f"{r[0]}-{r[4]}-{r[3]}" for r in PROC_ROWS])
def test_proc_row(row: tuple) -> None:
    table, line, address, port, state, peer, uid = row
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (obs,) = parse_proc_net(header + line + "\n", table)
    assert (obs.address, obs.port, obs.state, obs.uid) == (packed(address), port, state, uid)
    assert obs.peer == (None if peer is None else (packed(peer[0]), peer[1]))
    assert obs.family == (6 if table.endswith("6") else 4)


def test_proc_big_endian_copy() -> None:
    line = "   0: 7F000001:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0  0 1 1\n"
    (obs,) = parse_proc_net(line, "tcp", byteorder="big")
    assert obs.address == packed("127.0.0.1")


@pytest.mark.parametrize("line, reason", [
    ("   0: 0100007F:1B59 00000000:0000 0A\n", "columns"),
    ("   0: 0100007F1B59 00000000:0000 0A 0:0 0:0 0 0 0 1 1\n", "hex digits"),
    ("   0: 0100007G:1B59 00000000:0000 0A 0:0 0:0 0 0 0 1 1\n", "not hexadecimal"),
    ("   0: 0100007F:1B59 00000000:0000 FF 0:0 0:0 0 0 0 1 1\n", "unknown state code"),
])
def test_proc_errors(line: str, reason: str) -> None:
    with pytest.raises(InputError) as err:
        parse_proc_net("  sl local\n" + line, "tcp", "copy/tcp")
    assert err.value.position == "line 2" and reason in err.value.reason


def test_ip_addr_json() -> None:
    ip = parse_ip_addr_json((DATA / "ip_addr.json").read_text())
    assert ip.interface == "tun0" and ip.mtu == 1500
    assert [str(a) for a in ip.addresses] == ["10.0.0.1/24", "fd00::1/64"]
    with pytest.raises(InputError):
        parse_ip_addr_json("{not json", "a.json")


# -- the table ---------------------------------------------------------------------------

def imported_from_ss(text: str, **kwargs):  # type: ignore[no-untyped-def]
    return build_host(parse_ss(text).sockets, source="test", **kwargs)


def test_real_ss_output_builds_a_table_linux_accepts() -> None:
    imported = imported_from_ss((DATA / "ss_tuanpe.txt").read_text())
    text = render(imported)
    assert parse_host(text) == imported.spec
    build_kernel(imported.spec)  # raises if the emulation refuses it
    labels = [s.label for s in imported.spec.sockets]
    # connections before the listeners that share their port
    assert labels.index("tcp://127.0.0.1:7001") < labels.index("tcp://0.0.0.0:7001")
    assert imported.spec.interfaces[0].name == "tun0"


def test_two_listeners_on_one_port_get_reuseport_with_a_reason() -> None:
    imported = imported_from_ss("tcp LISTEN 0 10 0.0.0.0:80 0.0.0.0:*\ntcp LISTEN 0 10 0.0.0.0:80 0.0.0.0:*\n")
    assert [s.reuseport for s in imported.spec.sockets] == [True, True]
    assert all("SO_REUSEPORT" in " ".join(n) for n in imported.socket_notes)
    build_kernel(imported.spec)


def test_lone_listener_keeps_linux_defaults() -> None:
    imported = imported_from_ss("tcp LISTEN 0 10 0.0.0.0:80 0.0.0.0:*\n")
    (sock,) = imported.spec.sockets
    assert not sock.reuseport and not sock.reuseaddr
    assert any("SO_REUSEPORT" in line for line in imported.header)


def test_time_wait_and_syn_recv_are_left_out_and_listed() -> None:
    imported = imported_from_ss("tcp TIME-WAIT 0 0 10.0.0.1:80 10.0.0.2:6000\n"
                                "tcp SYN-RECV 0 0 10.0.0.1:80 10.0.0.3:6000\n"
                                "tcp LISTEN 0 5 10.0.0.1:80 0.0.0.0:*\n")
    assert [s.label for s in imported.spec.sockets] == ["tcp://10.0.0.1:80"]
    header = "\n".join(imported.header)
    assert "TIME-WAIT" in header and "SYN-RECV" in header


def test_close_wait_becomes_established_with_a_note() -> None:
    imported = imported_from_ss("tcp CLOSE-WAIT 0 0 10.0.0.1:40000 10.0.0.2:80\n")
    (sock,) = imported.spec.sockets
    assert sock.peer == (packed("10.0.0.2"), 80)
    assert "CLOSE-WAIT" in imported.socket_notes[0][0]


def test_addresses_are_guessed_or_completed() -> None:
    text = "tcp LISTEN 0 5 10.0.0.1:80 0.0.0.0:*\ntcp ESTAB 0 0 [fd00::1]:22 [fd00::2]:4000\n"
    guessed = imported_from_ss(text)
    assert [str(a) for a in guessed.spec.interfaces[0].addresses] == ["10.0.0.1/24", "fd00::1/64"]
    assert any("guesses" in line for line in guessed.header)
    given = imported_from_ss(text, addresses=[ipaddress.ip_interface("10.0.0.1/16")])
    assert [str(a) for a in given.spec.interfaces[0].addresses] == ["10.0.0.1/16", "fd00::1/64"]


def test_proc_v6only_deduced_from_a_clashing_ipv4_listener() -> None:
    text = ("   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n")
    text6 = ("   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A "
             "00000000:00000000 00:00000000 00000000 0 0 2 1\n")
    imported = build_host(parse_proc_net(text, "tcp") + parse_proc_net(text6, "tcp6"), source="t")
    assert [s.v6only for s in imported.spec.sockets] == [None, True]
    assert not any(s.reuseport for s in imported.spec.sockets)
    build_kernel(imported.spec)


def test_proc_copy_builds_a_table() -> None:
    sockets = [o for name in ("tcp", "tcp6", "udp", "udp6")
               for o in parse_proc_net((DATA / "proc" / name).read_text(), name)]
    imported = build_host(sockets, source="t")
    assert parse_host(render(imported)) == imported.spec
    build_kernel(imported.spec)


# -- inference -----------------------------------------------------------------------------

def infer(name: str, *addresses: str):  # type: ignore[no-untyped-def]
    from pktdemux.capture import Capture

    given = [ipaddress.ip_interface(a) for a in addresses] or None
    with Capture(PCAPS / name) as cap:
        return infer_host(cap.records(), given, source=name)


def test_infer_refused_port_has_no_socket() -> None:
    imported = infer("tcp_syn_refused.pcap")
    assert imported.spec.sockets == ()
    assert any("10.1.1.6:20000" in line and "RST" in line for line in imported.header)


def test_infer_listener_with_evidence_and_sysctls() -> None:
    imported = infer("pop3_refused_retries.pcap", "212.227.15.166/24")
    (sock,) = imported.spec.sockets
    assert (sock.label, sock.listen is not None) == ("tcp://0.0.0.0:110", True)
    assert "packets 14, 27" in imported.socket_notes[0][0]
    assert imported.spec.sysctl["net.ipv4.ip_default_ttl"] == 57
    # SYN-ACK window 5840 = 4 x 1460: the route's initrwnd, the buffer kept at its default
    assert imported.spec.interfaces[0].initrwnd == 4
    assert imported.spec.sysctl["net.ipv4.tcp_rmem"][1] == 131072  # type: ignore[index]


def test_infer_busiest_responder_and_loopback() -> None:
    linux = infer("linux618_vectors.pcap")
    assert [str(a) for a in linux.spec.interfaces[0].addresses] == ["10.0.0.1/24"]
    assert any("busiest responder" in line for line in linux.header)
    lo = infer("localhost_v6_refused_http.pcap")
    assert lo.spec.interfaces[0].name == "lo"
    assert "tcp://0.0.0.0:8080" in [s.label for s in lo.spec.sockets] or \
        "tcp://127.0.0.1:8080" in [s.label for s in lo.spec.sockets]


def test_infer_connection_in_progress() -> None:
    imported = infer("pcapng_eth_sll_mysql.pcapng", "130.217.250.13/24")
    peers = [s for s in imported.spec.sockets if s.peer is not None]
    assert any(s.peer == (packed("130.217.250.16"), 22) for s in peers)
    assert all("in progress" in " ".join(imported.socket_notes[i])
               for i, s in enumerate(imported.spec.sockets) if s.peer is not None)


# -- command line ----------------------------------------------------------------------------

def test_cli_from_ss_writes_a_loadable_file(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "host.toml"
    result = CliRunner().invoke(main, ["host", "from-ss", str(DATA / "ss_tuanpe.txt"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    build_kernel(parse_host(out.read_text()))


def test_cli_from_proc_with_addresses(tmp_path: pathlib.Path) -> None:
    result = CliRunner().invoke(main, ["host", "from-proc", str(DATA / "proc"),
                                       "--addresses", str(DATA / "ip_addr.json")])
    assert result.exit_code == 0, result.output
    spec = parse_host(result.output)
    assert spec.interfaces[0].name == "tun0" and len(spec.sockets) == 12


@pytest.mark.parametrize("args, message", [
    (["host", "from-ss", "/nonexistent/ss.txt"], "/nonexistent/ss.txt: No such file"),
    (["host", "from-ss", str(PCAPS / "tcp_syn_refused.toml")], "line 1: not a row of ss output"),
    (["host", "from-proc", "/nonexistent"], "none of tcp, tcp6, udp, udp6"),
    (["host", "infer", str(PCAPS / "pcap_bad_version.pcap")], "pcap version 1.4"),
])
def test_cli_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1


def test_cli_replay_shortcuts() -> None:
    runner = CliRunner()
    inferred = runner.invoke(main, ["replay", str(PCAPS / "linux618_vectors.pcap"), "--infer", "--summary-only"])
    assert inferred.exit_code == 0, inferred.output
    assert "reproduced exactly: 32 of 32" in inferred.output
    both = runner.invoke(main, ["replay", str(PCAPS / "tcp_syn_refused.pcap"), "--infer",
                                "--host", str(PCAPS / "tcp_syn_refused.toml")])
    assert both.exit_code == 2 and "exactly one of" in both.output
    from_ss = runner.invoke(main, ["replay", str(PCAPS / "tcp_syn_refused.pcap"), "--summary-only",
                                   "--host-from-ss", str(DATA / "ss_tuanpe.txt"), "--address", "10.1.1.6/24"])
    assert from_ss.exit_code == 0, from_ss.output


def test_infer_report_runs_over_the_shipped_captures() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "infer_report.py"), str(PCAPS)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("capture")
    assert any(line.startswith("linux618_vectors.pcap") and "100.0%" in line for line in lines)
    assert any(line.startswith("all ") for line in lines)
    assert any("pcap_bad_version.pcap: corrupt" in line for line in lines)
    # Linux or not, by the hosts' own replies, with a share for each group
    stack = {line.split()[0]: line.split()[1] for line in lines[2:] if line.split()[:1] and "." in line.split()[0]}
    assert stack["linux618_vectors.pcap"] == "linux" and stack["pop3_refused_retries.pcap"] == "linux"
    assert stack["ldap_snaplen_trunc.pcap"] == "other" and stack["vlan_qinq_icmp.pcap"] == "other"
    assert any(line.startswith("Linux-looking (") and "%" in line for line in lines)
    assert any(line.startswith("others (") and "%" in line for line in lines)
    # the replies not reproduced, by kind and reason, and why each host was judged so
    assert any(line.startswith("Not reproduced on hosts that look like Linux") for line in lines)
    assert any("TCP [SYN,ACK]: ip.id" in line for line in lines)
    assert any("ldap_snaplen_trunc.pcap: other: TTL from 128" in line for line in lines)


# -- round trip with `pktdemux ss` ----------------------------------------------------------

ROUND_TRIP_HOST = """
[host]
addresses = ["10.0.0.1/24", "fd00::1/64"]

[[sockets]]
name = "web"
label = "tcp://10.0.0.1:80"
peer = "10.0.0.7:40000"
reuseaddr = true
process = "nginx"
pid = 100

[[sockets]]
name = "web"
label = "tcp://0.0.0.0:80"
listen = 511
reuseaddr = true
process = "nginx"
pid = 100

[[sockets]]
label = "tcp://[::]:80"
listen = 128
v6only = true

[[sockets]]
label = "tcp://[::]:443"
listen = 64
v6only = false
device = "eth0"

[[sockets]]
label = "tcp://0.0.0.0:8080"
listen = 10
reuseport = true

[[sockets]]
label = "tcp://0.0.0.0:8080"
listen = 10
reuseport = true

[[sockets]]
label = "udp://0.0.0.0:53"
process = "dnsd"
pid = 7

[[sockets]]
label = "udp://10.0.0.1:5000"
peer = "10.0.0.9:6000"

[[sockets]]
label = "udp://[::ffff:10.0.0.1]:5353"
"""


def test_pktdemux_ss_output_reads_back_to_the_same_table() -> None:
    from pktdemux.ss import ss

    original = parse_host(ROUND_TRIP_HOST)
    listing = str(ss(build_kernel(original)))
    imported = build_host(parse_ss(listing).sockets, source="t",
                          addresses=list(original.interfaces[0].addresses))
    back = parse_host(render(imported))

    def key(s):  # type: ignore[no-untyped-def]
        return (s.label, s.listen, s.peer, s.reuseaddr, s.reuseport,
                s.v6only if s.family == 6 and not any(s.address) else None, s.device, s.process, s.pid, s.uid)

    assert sorted(map(key, back.sockets)) == sorted(map(key, original.sockets))
    build_kernel(back)
