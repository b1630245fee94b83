"""Scenario files: the packets built from each line, one-line errors with
the line number, and ``pktdemux run``."""

from __future__ import annotations

import pathlib

import pytest
from click.testing import CliRunner
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

from pktdemux.cli import main
from pktdemux.errors import HostFileError
from pktdemux.scenario import ScenarioError, load_scenario, parse_scenario

HOST = '[host]\naddresses = ["10.0.0.1/24", "fd00::1/64"]\n---\n'


def packets(lines: str) -> list:
    return list(parse_scenario(HOST + lines, "s.scn").packets)


def test_a_tcp_line_builds_the_segment_with_its_options_in_order() -> None:
    (p,) = packets("0 < 10.0.0.2:40000 > 10.0.0.1:80 S seq 1000 win 64240 "
                   "<mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7> (ttl 9 id 5 DF)\n")
    ip = IP(p.data)
    assert (ip.src, ip.dst, ip.ttl, ip.id, str(ip.flags)) == ("10.0.0.2", "10.0.0.1", 9, 5, "DF")
    tcp = ip[TCP]
    assert (tcp.sport, tcp.dport, str(tcp.flags), tcp.seq, tcp.window) == (40000, 80, "S", 1000, 64240)
    assert [o[0] for o in tcp.options] == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
    assert not p.handshake
    verify = IP(p.data)
    del verify[TCP].chksum
    assert IP(bytes(verify))[TCP].chksum == tcp.chksum


def test_udp_icmp_and_ipv6_lines() -> None:
    udp, echo, echo6, flagged = packets(
        "0 < 10.0.0.2:5353 > 10.0.0.1:53 udp len 20\n"
        "+0.1 < 10.0.0.2 > 10.0.0.1 icmp echo-request id 7 seq 2 len 8\n"
        "+0.1 < fd00::2 > fd00::1 icmpv6 echo-request id 9 seq 1 (hlim 3 flow 5)\n"
        "0.5 < [fd00::2]:1 > [fd00::1]:2 F. seq 1 ack 2 len 3 handshake\n")
    assert IP(udp.data)[UDP].load == bytes(range(20))
    assert (IP(echo.data)[ICMP].id, IP(echo.data)[ICMP].seq, len(IP(echo.data)[ICMP].payload)) == (7, 2, 8)
    assert (IPv6(echo6.data).hlim, IPv6(echo6.data).fl, IPv6(echo6.data)[ICMPv6EchoRequest].id) == (3, 5, 9)
    assert str(IPv6(flagged.data)[TCP].flags) == "FA" and flagged.handshake
    assert [p.offset for p in (udp, echo, echo6, flagged)] == [0.0, 0.1, 0.2, 0.5]


def test_bad_csum_corrupts_only_the_transport_checksum() -> None:
    good, bad = packets("0 < 10.0.0.2:1 > 10.0.0.1:2 udp len 4\n0 < 10.0.0.2:1 > 10.0.0.1:2 udp len 4 bad-csum\n")
    diff = [i for i, (a, b) in enumerate(zip(good.data, bad.data)) if a != b]
    assert diff and all(i in (26, 27) for i in diff)


@pytest.mark.parametrize(("line", "reason"), [
    ("0 < 10.0.0.2:1 > 10.0.0.1:2 X", "line 4: column 29: unexpected 'X' (expected TCP flags, icmp, udp)"),
    ("0 < 10.0.0.2:1 > 10.0.0.1:2 S seq", "line 4: column 34: unexpected end of line (expected a number)"),
    ("0 < 10.0.0.2:1 > 10.0.0.1:2 S (ttl 300)", "line 4: ttl 300 is out of range (0..255)"),
    ("0 < 10.0.0.2:1 > fd00::1 S", "line 4: source and destination are of different address families"),
    ("0 < 10.0.0.2 > 10.0.0.1 udp len 5", "line 4: TCP and UDP need address:port on both sides"),
    ("0 < fd00::2 > fd00::1 icmp echo-request", "line 4: icmp does not go with IPv6 addresses"),
    ("1 < 10.0.0.2:1 > 10.0.0.1:2 S\n0.5 < 10.0.0.2:1 > 10.0.0.1:2 S",
     "line 5: time 0.5 is before the previous packet's (1)"),
])
def test_bad_lines_give_the_file_line_and_reason(line: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(HOST + line + "\n", "s.scn")
    assert str(err.value).startswith(f"s.scn: {reason}")
    assert "\n" not in str(err.value)


def test_host_part_errors_and_a_missing_separator() -> None:
    with pytest.raises(HostFileError, match=r"s.scn: line 1: TOML syntax"):
        parse_scenario("[host\n---\n", "s.scn")
    with pytest.raises(ScenarioError, match=r"s.scn: line 2: no '---' line"):
        parse_scenario('[host]\naddresses = ["10.0.0.1/24"]', "s.scn")
    with pytest.raises(ScenarioError, match="No such file"):
        load_scenario("/nonexistent.scn")


def test_cli_run_prints_checks_and_updates(tmp_path: pathlib.Path) -> None:
    scenario = tmp_path / "s.scn"
    scenario.write_text(HOST + "0 < 10.0.0.2:40000 > 10.0.0.1:81 S seq 1 win 100\n")
    runner = CliRunner()
    printed = runner.invoke(main, ["run", str(scenario)])
    assert printed.exit_code == 0
    assert printed.stdout.endswith("0.000000 > 10.0.0.1:81 > 10.0.0.2:40000 R. seq 0 ack 2 win 0 (ttl 64 id 0 DF len 40)\n")
    golden = tmp_path / "s.golden"
    assert runner.invoke(main, ["run", str(scenario), "--golden", str(golden), "--update-golden"]).exit_code == 0
    assert golden.read_text() == printed.stdout
    assert runner.invoke(main, ["run", str(scenario), "--golden", str(golden)]).exit_code == 0
    scenario.write_text(HOST + "0 < 10.0.0.2:40000 > 10.0.0.1:81 S seq 2 win 100\n")
    differs = runner.invoke(main, ["run", str(scenario), "--golden", str(golden)])
    assert differs.exit_code == 1 and "+0.000000 > 10.0.0.1:81 > 10.0.0.2:40000 R. seq 0 ack 3 " in differs.stdout


def test_cli_run_bad_scenario_is_one_line(tmp_path: pathlib.Path) -> None:
    scenario = tmp_path / "s.scn"
    scenario.write_text(HOST + "0 < 10.0.0.2:1 > 10.0.0.1:2 S win\n")
    result = CliRunner().invoke(main, ["run", str(scenario)])
    assert result.exit_code == 2
    assert result.stderr == f"pktdemux: error: {scenario}: line 4: column 34: unexpected end of line (expected a number)\n"
