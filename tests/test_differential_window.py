"""The receive window a full socket advertises with window scaling, compared
with Linux (pktdemux.oracle): __tcp_select_window rounds the free space *up*
to the scale unit (ALIGN(free_space, 1 << rcv_wscale)), so a connection
whose initial window is 64240 advertises 64512 >> 10 = 63, not 62 (window
scale 10: tcp_rmem[2] is 6 MiB).

Each connection is made by a handshake with a listener, then a SYN on it
draws a challenge ACK from the full socket (tcp_send_challenge_ack), whose
window is the socket's tcp_select_window().
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kernel_support import Case, assert_agree, host_toml
from lifecycle_support import Timeline, differences, emulate
from tcp_helpers import segment, tcp_header

LOCAL4, LOCAL6, PEER4, PEER6 = "10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"
GAP = 0.01

NO_TS = b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02\x01\x01"  # MSS 1460, NOP, WS 7, SACK-permitted, NOP, NOP
WITH_TS = b"\x02\x04\x05\x78\x04\x02\x08\x0a" + (777).to_bytes(4, "big") + bytes(4) + b"\x01\x03\x03\x09"

#: connection id → (peer, peer port, SYN options, the window Linux advertises
#: in the challenge ACK).  The initial window is tcp_rmem[1] / 2 = 65536
#: rounded down to our segment size (from our MSS, not the peer's).
CONNECTIONS = {
    # 44 * 1460 = 64240, ALIGN(64240, 1024) >> 10 = 63 (rounded down: 62)
    "V4": (PEER4, 43001, NO_TS, 63),
    # segments of 1448 bytes with timestamps: 45 * 1448 = 65160, ALIGN >> 10 = 64 (rounded down: 63)
    "V4TS": (PEER4, 43002, WITH_TS, 64),
    # IPv6 MSS 1440: 45 * 1440 = 64800, ALIGN >> 10 = 64 (rounded down: 63)
    "V6": (PEER6, 43003, NO_TS, 64),
}


def _window_case() -> Case:
    case = Case("scaled windows", host_toml([{"name": "web", "label": "tcp://[::]:96", "listen": 16}]),
                settle=0.1)
    for vid, (peer, pport, options, _) in CONNECTIONS.items():
        local = LOCAL4 if peer == PEER4 else LOCAL6
        case.add(segment(peer, local, pport, 96, "S", seq=5000, window=64240, options=options), gap=GAP,
                 label=f"{vid} handshake", complete_handshake=True)
        case.add(segment(peer, local, pport, 96, "S", seq=5100, window=64240), gap=GAP, label=f"{vid} SYN")
    return case


@pytest.fixture(scope="module")
def windows(kernel_oracle: Callable[..., Any]) -> tuple[Case, Timeline]:
    case = _window_case()
    return case, emulate(case, kernel_oracle(case.scenario()))


@pytest.mark.kernel
@pytest.mark.parametrize("vid", list(CONNECTIONS))
def test_challenge_ack_window_is_the_free_space_rounded_up(windows: tuple[Case, Timeline], vid: str) -> None:
    case, run = windows
    i = case.labels.index(f"{vid} SYN")
    replies = [r.packet for r in run.oracle.packets[i].replies]
    assert [tcp_header(p)[4] & 0x3F for p in replies] == [0x10], "Linux did not answer with a challenge ACK"
    assert tcp_header(replies[0])[5] == CONNECTIONS[vid][3], "Linux's window is not the one this test explains"
    assert_agree(differences(case, run, flows=[(96, CONNECTIONS[vid][1])], labels=vid + " "))
