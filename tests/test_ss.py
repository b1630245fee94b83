"""pktdemux.ss: ss's spellings, queues and compact layout (the real-kernel
comparison is tests/test_ss_kernel.py)."""

from __future__ import annotations

from click.testing import CliRunner
from scapy.layers.inet import IP, TCP

from pktdemux.cli import main
from pktdemux.host import Host
from pktdemux.ss import SsRow, render

EMPTY = "Netid State Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"


def lines(host: Host) -> list[str]:
    return str(host.ss()).splitlines()


def test_empty_table_is_the_header_alone() -> None:
    assert str(Host().ss()) == EMPTY


def test_spellings_of_wildcards_and_devices() -> None:
    host = Host()
    for family, addr, port, options in ((4, "0.0.0.0", 80, {}), (6, "::", 81, {"v6only": False}),
                                        (6, "::", 82, {"v6only": True}), (6, "::ffff:10.0.0.1", 83, {}),
                                        (4, "0.0.0.0", 84, {"device": "eth0"})):
        sock = host.socket("tcp", family, **options)
        sock.bind(addr, port)
        sock.listen(7)
    cells = [line.split()[4:6] for line in lines(host)[1:]]
    assert cells == [["0.0.0.0:80", "0.0.0.0:*"], ["0.0.0.0%eth0:84", "0.0.0.0:*"], ["*:81", "*:*"],
                     ["[::]:82", "[::]:*"], ["[::ffff:10.0.0.1]:83", "*:*"]]


def test_listen_queues_and_unread_bytes() -> None:
    host = Host()
    web = host.socket("tcp", process="nginx", pid=1234)
    web.bind("0.0.0.0", 80)
    web.listen(511)
    synack = host.receive(IP() / TCP(sport=40000, dport=80, flags="S", seq=7)).replies[0]
    host.receive(IP() / TCP(sport=40000, dport=80, flags="A", seq=8, ack=synack[TCP].seq + 1) / b"hello")
    table = lines(host)
    assert len({len(line) for line in table}) == 1  # every line padded to the Process column
    assert [line.rstrip() for line in table[1:]] == [
        'tcp   LISTEN 1      511          0.0.0.0:80        0.0.0.0:*     users:(("nginx",pid=1234,fd=3))',
        "tcp   ESTAB  5      0           10.0.0.1:80       10.0.0.2:40000",
    ]
    conn = web.accept()
    assert conn is not None and conn.recv() == b"hello"
    assert [line.split()[:4] for line in lines(host)[1:]] == [["tcp", "LISTEN", "0", "511"],
                                                             ["tcp", "ESTAB", "0", "0"]]
    assert lines(host)[2].endswith('users:(("nginx",pid=1234,fd=4))')


def test_udp_before_tcp_and_bound_only_tcp_hidden() -> None:
    host = Host()
    host.socket("tcp").bind("10.0.0.1", 8080)
    host.socket("udp", 6).bind("::", 54)
    host.socket("udp").bind("0.0.0.0", 53)
    assert [line.split()[0] + " " + line.split()[4] for line in lines(host)[1:]] == ["udp 0.0.0.0:53", "udp *:54"]


def test_layout_measures_all_but_the_last_process_cell() -> None:
    row = SsRow("tcp", "LISTEN", "0     ", "5     ", "0.0.0.0:", "80", "0.0.0.0:", "*",
                ' users:(("python",pid=3917,fd=3))')
    assert render([row]) == (
        "Netid State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"
        'tcp   LISTEN 0      5            0.0.0.0:80        0.0.0.0:*    users:(("python",pid=3917,fd=3))\n')
    two = render([row, row]).splitlines()
    assert two[0].endswith("Process" + " " * 26) and len(two[0]) == len(two[1])


def test_ss_command_prints_the_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "host.toml"
    path.write_text('[host]\naddresses = ["10.0.0.1/24"]\n[[sockets]]\nlabel = "tcp://[::]:80"\n'
                    'listen = 511\nprocess = "nginx"\npid = 1234\n')
    result = CliRunner().invoke(main, ["ss", "--host", str(path)])
    assert result.exit_code == 0
    assert result.output.splitlines()[1] == 'tcp   LISTEN 0      511                *:80              *:*    ' \
                                            'users:(("nginx",pid=1234,fd=3))'
    bare = CliRunner().invoke(main, ["ss", "--host", str(path), "--no-processes"])
    assert "users" not in bare.output


def test_ss_command_bad_host_file_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["ss", "--host", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("pktdemux: error: ") and len(result.output.strip().splitlines()) == 1
