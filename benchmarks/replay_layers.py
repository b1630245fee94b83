#!/usr/bin/env python3
"""Where a replay spends its time, layer by layer, on one capture.

    python benchmarks/replay_layers.py                    # builds 200,000 mixed packets
    python benchmarks/replay_layers.py --capture X.pcap --host H.toml

Each stage runs the whole capture and adds one layer to the previous stage;
the difference between two stages is the cost of the layer added:

1. reader: :func:`pktdemux.capture.read_capture`, records only;
2. + link decode: :func:`pktdemux.linklayer.decode` on every frame;
3. + direction: :meth:`pktdemux.direction.Directions.classify`;
4. + kernel IP: the replay with the transport handlers (TCP, UDP, ICMP)
   replaced by a constant verdict and ``transmit`` by nothing;
5. + kernel TCP/UDP/ICMP: the real handlers, ``transmit`` still off;
6. + transmit: the whole replay (:class:`pktdemux.replay.Replay`);
7. + JSON Lines: every result written by :class:`pktdemux.jsonl.JsonlWriter`.

Times are the best of ``--repeat`` runs, in seconds and microseconds per
packet.  A measurement script, not a test: nothing in it asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "pcaps"))

from pktdemux import ipv4, ipv6
from pktdemux.capture import read_capture
from pktdemux.direction import Directions
from pktdemux.hostfile import build_kernel, load_host
from pktdemux.jsonl import JsonlWriter
from pktdemux.linklayer import decode
from pktdemux.replay import Replay
from pktdemux.verdict import deliver

BENCH_HOST = ROOT / "pcaps" / "bench.toml"


def best(fn: Callable[[], object], repeat: int) -> float:
    """The best wall time of ``repeat`` runs of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def reader(capture: pathlib.Path) -> None:
    for _ in read_capture(capture):
        pass


def link(capture: pathlib.Path) -> None:
    for record in read_capture(capture):
        decode(record.linktype, record.frame)


def direction(capture: pathlib.Path, host: pathlib.Path) -> None:
    classify = Directions.of_kernel(build_kernel(load_host(str(host)), seed=0)).classify
    for record in read_capture(capture):
        decoded = decode(record.linktype, record.frame)
        if decoded[0].__class__ is int:
            classify(decoded[1])


_CONSTANT = deliver((), "transport stubbed", handler="stub")


@contextlib.contextmanager
def transports_stubbed() -> Iterator[None]:
    """The IPv4/IPv6 layers hand every datagram to a stub instead of TCP/UDP/ICMP."""
    stub = type("Stub", (), {"receive": staticmethod(lambda kernel, pkt: _CONSTANT)})
    saved = [(mod, name, getattr(mod, name)) for mod in (ipv4, ipv6) for name in ("tcp", "udp", "icmp")]
    try:
        for mod, name, _ in saved:
            if name != "icmp":  # icmp also builds the errors the IP layer sends
                setattr(mod, name, stub)
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


def replay(capture: pathlib.Path, host: pathlib.Path, *, transmit: bool, jsonl: pathlib.Path | None = None) -> None:
    kernel = build_kernel(load_host(str(host)), seed=0)
    driver = Replay(kernel)
    if not transmit:
        driver._transmit = None
    results = driver.run(read_capture(capture))
    if jsonl is None:
        for _ in results:
            pass
        return
    with JsonlWriter(jsonl) as writer:
        for result in results:
            writer.write(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", type=pathlib.Path, help="replay this capture instead of building one")
    parser.add_argument("--host", type=pathlib.Path, default=BENCH_HOST, help="host file (default pcaps/bench.toml)")
    parser.add_argument("-n", "--count", type=int, default=200_000, help="packets to build (default 200000)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per stage; the best counts (default 2)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pktdemux-layers-") as tmp:
        tmpdir = pathlib.Path(tmp)
        capture = args.capture
        if capture is None:
            import make_pcaps

            capture = tmpdir / "mixed.pcap"
            make_pcaps.build_mixed(capture, args.count, 0)
        packets = sum(1 for _ in read_capture(capture))
        host = args.host

        def stubbed() -> None:
            with transports_stubbed():
                replay(capture, host, transmit=False)

        stages: list[tuple[str, Callable[[], object]]] = [
            ("reader", lambda: reader(capture)),
            ("+ link decode", lambda: link(capture)),
            ("+ direction", lambda: direction(capture, host)),
            ("+ kernel IP (replay, transports stubbed)", stubbed),
            ("+ kernel TCP/UDP/ICMP (no transmit)", lambda: replay(capture, host, transmit=False)),
            ("+ transmit (whole replay)", lambda: replay(capture, host, transmit=True)),
            ("+ JSON Lines", lambda: replay(capture, host, transmit=True, jsonl=tmpdir / "out.jsonl")),
        ]
        print(f"capture: {capture} ({packets} packets)  host: {host}  Python {sys.version.split()[0]}")
        print()
        width = max(len(name) for name, _ in stages)
        print(f"{'stage':{width}}  {'seconds':>8}  {'us/pkt':>7}  {'layer us/pkt':>12}  {'packets/s':>10}")
        previous = 0.0
        for name, fn in stages:
            seconds = best(fn, args.repeat)
            layer = max(seconds - previous, 0.0)
            print(f"{name:{width}}  {seconds:8.2f}  {seconds / packets * 1e6:7.2f}  "
                  f"{layer / packets * 1e6:12.2f}  {packets / seconds:10,.0f}")
            previous = seconds
    return 0


if __name__ == "__main__":
    sys.exit(main())
