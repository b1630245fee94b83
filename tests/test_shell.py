"""``pktdemux shell``: the namespace, the banner, and a user's session
typed into the plain console under tmux and read back from the screen."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_support import require_module, require_program

from pktdemux.host import Host
from pktdemux.shell import EXAMPLES, banner, namespace

TYPED = 'host.receive(IP(src="10.0.0.2", dst="10.0.0.1")/TCP(dport=81, flags="S"))'
EXPECTED = "dropped: NO_SOCKET — nothing listens on tcp 10.0.0.1:81; the kernel answers with a RST"
ROOT = Path(__file__).resolve().parent.parent
#: seconds to wait for the console to answer
PATIENCE = 60.0


def test_namespace_has_host_and_scapy_layers() -> None:
    host = Host()
    names = namespace(host)
    assert names["host"] is host
    assert {"IP", "IPv6", "TCP", "UDP", "ICMP", "ICMPv6EchoRequest", "Raw", "Host", "hexdump", "ls"} <= set(names)
    packet = names["IP"](dst="10.0.0.1") / names["UDP"](dport=53)
    assert host.receive(packet).reason.value == "NO_SOCKET"


def test_banner_says_what_to_type_first() -> None:
    text = banner(Host())
    assert "10.0.0.1/24" in text and all(example in text for example in EXAMPLES)
    assert EXAMPLES[0] == TYPED


def test_examples_in_the_banner_run() -> None:
    names = namespace(Host())
    for example in EXAMPLES:
        exec(example, names)  # noqa: S102  (the banner's own examples)
    assert names["web"].state.value == "LISTEN"


def tmux(session: str) -> list[str]:
    """tmux on a server of the session's own (``-L``): a test never races
    another test's server shutting down after its last session is killed."""
    return ["tmux", "-L", session]


#: console -> (extra arguments of ``pktdemux shell``, its first prompt as the pane shows it)
CONSOLES = {"plain": (["--plain"], ">>>"), "ipython": ([], "In [1]:")}


@pytest.fixture(params=sorted(CONSOLES))
def tmux_session(request: pytest.FixtureRequest) -> Iterator[str]:
    """``pktdemux shell`` running under tmux, at its first prompt; the
    parameter is the console: the standard one or IPython."""
    require_program("tmux")
    if request.param == "ipython":
        require_module("IPython")
    args, prompt = CONSOLES[request.param]
    name = f"pktdemux-{uuid.uuid4().hex[:8]}"
    subprocess.run([*tmux(name), "new-session", "-d", "-s", name, "-x", "220", "-y", "50", "-c", str(ROOT),
                    sys.executable, "-m", "pktdemux", "shell", *args], check=True)
    try:
        wait_for(name, prompt)
        yield name
    finally:
        subprocess.run([*tmux(name), "kill-server"], check=False, capture_output=True)


def type_line(session: str, line: str) -> None:
    subprocess.run([*tmux(session), "send-keys", "-t", session, "-l", line], check=True)
    subprocess.run([*tmux(session), "send-keys", "-t", session, "Enter"], check=True)


def screen(session: str) -> str:
    return subprocess.run([*tmux(session), "capture-pane", "-p", "-t", session], capture_output=True, text=True,
                          check=True).stdout


def wait_for(session: str, text: str) -> str:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.2)
    pytest.fail(f"{text!r} never appeared; the screen shows:\n{screen(session)}")


def test_user_types_a_packet_and_reads_the_verdict(tmux_session: str) -> None:
    type_line(tmux_session, TYPED)
    shown = wait_for(tmux_session, EXPECTED)
    assert "reply: IP / TCP 10.0.0.1:81 > 10.0.0.2:" in shown
    type_line(tmux_session, "print(host.ss())")
    wait_for(tmux_session, "Netid State Recv-Q Send-Q Local Address:Port")


def test_address_already_in_use_is_one_line_not_a_traceback(tmux_session: str) -> None:
    type_line(tmux_session, 'a = host.socket("tcp"); a.bind("0.0.0.0", 8080); a.listen()')
    type_line(tmux_session, 'b = host.socket("tcp"); b.bind("10.0.0.1", 8080)')
    shown = wait_for(tmux_session, "OSError: [Errno 98] Address already in use: overlaps tcp://0.0.0.0:8080")
    assert "Traceback" not in shown
    type_line(tmux_session, "1/0")  # a real exception keeps its traceback
    wait_for(tmux_session, "ZeroDivisionError")
    assert "Traceback" in screen(tmux_session)
