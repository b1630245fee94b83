"""Delayed ACKs (pktdemux.tcp_delack) against a capture of Linux 6.18
itself: tests/data/delack_pingpong_lo_6_18.pcap is a request/response
exchange over loopback in a private network namespace (the client sends
145 bytes, the server answers 17 + 25 + 22 + 19 bytes with Nagle on, four
times), recorded on the 6.18 kernel the oracle runs.

The first exchange is ACKed at once (quick ACKs).  From the second on both
ends are interactive (pingpong: each answered within ato of receiving):
the server's ACK of a request rides on its answer, and the client's ACK of
the answer's first segment comes from the delayed-ACK timer ~40 ms later
(Nagle holds the rest of the answer until then).  The differential tests
cannot show this: the oracle's peer does not answer.
"""

from __future__ import annotations

import pathlib

from pktdemux.capture import Capture
from pktdemux.hostfile import build_kernel
from pktdemux.hostimport import infer_host
from pktdemux.replay import Replay
from pktdemux.tcp_delack import WHAT

CAPTURE = pathlib.Path(__file__).with_name("data") / "delack_pingpong_lo_6_18.pcap"


def _replay():  # type: ignore[no-untyped-def]
    with Capture(CAPTURE) as cap:
        imported = infer_host(cap.records(), source=CAPTURE.name)
    replay = Replay(build_kernel(imported.spec))
    with Capture(CAPTURE) as cap:
        results = list(replay.run(cap.records()))
    return results, replay.totals


def test_every_reply_of_linux_6_18_is_reproduced() -> None:
    _, totals = _replay()
    assert totals.own_generated == 13 and totals.own_matched == 13


def test_pingpong_acks_ride_on_the_answer_or_wait_for_the_timer() -> None:
    results, _ = _replay()
    packets = [r for r in results if r.direction != "timer"]
    timers = [r for r in results if r.direction == "timer"]
    assert [r.note for r in timers] == [WHAT] * 3
    # the 2nd, 3rd and 4th requests (packets 12, 17, 22) and their answers' first segments: no ACK at once
    by_n = {r.n: r for r in packets}
    assert [len(by_n[n].replies) for n in (12, 13, 17, 18, 22, 23)] == [0] * 6
    # each timer fires 40 ms after the answer's first segment; its ACK is the client's next packet
    for timer, (answer, ack) in zip(timers, ((13, 14), (18, 19), (23, 24))):
        assert round(timer.time - by_n[answer].time, 3) == 0.04
        assert by_n[ack].matched is True
