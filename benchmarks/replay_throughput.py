#!/usr/bin/env python3
"""Replay throughput and memory, side by side with Scapy, in one run.

    python benchmarks/replay_throughput.py                 # builds 200,000 packets in a temp dir
    python benchmarks/replay_throughput.py --capture X.pcap --host H.toml
    python benchmarks/replay_throughput.py -n 50000 --scapy-sample 5000

Figures printed (packets per second, best of ``--repeat`` runs):

* Scapy ``PcapReader``: full dissection of each packet (the baseline), over
  the first ``--scapy-sample`` packets of the same file;
* Scapy ``RawPcapReader``: reading the records without dissection, whole file;
* pktdemux replay (:class:`pktdemux.replay.Replay` on a kernel from the host
  file, results consumed, nothing printed), whole file;
* the same with every result written as JSON Lines to a file;
* the ratio replay / Scapy dissection (the target is 30 or more);
* peak resident memory (``ru_maxrss``) of a replay in a fresh interpreter for
  two capture lengths, to show that memory does not grow with the capture.

The default capture is the mixed traffic of ``pcaps/make_pcaps.py`` against
``pcaps/bench.toml``.  This is a measurement script, not a test: nothing in
it asserts a speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "pcaps"))

BENCH_HOST = ROOT / "pcaps" / "bench.toml"


def build_capture(path: pathlib.Path, count: int, seed: int = 0) -> None:
    import make_pcaps

    make_pcaps.build_mixed(path, count, seed)


def timed(fn: Callable[[], int], repeat: int) -> tuple[int, float]:
    """(packets, best seconds) over ``repeat`` runs of ``fn``."""
    best = float("inf")
    count = 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return count, best


def scapy_dissect(path: pathlib.Path, limit: int) -> int:
    # Dissecting needs the layer bindings that scapy.all would load.
    import scapy.layers.inet
    import scapy.layers.inet6
    import scapy.layers.l2  # noqa: F401
    from scapy.utils import PcapReader

    n = 0
    with PcapReader(str(path)) as reader:
        for _pkt in reader:
            n += 1
            if n >= limit:
                break
    return n


def scapy_raw(path: pathlib.Path) -> int:
    from scapy.utils import RawPcapReader

    n = 0
    with RawPcapReader(str(path)) as reader:
        for _data, _meta in reader:
            n += 1
    return n


def pktdemux_replay(path: pathlib.Path, host: pathlib.Path, jsonl: pathlib.Path | None = None) -> int:
    from pktdemux.capture import read_capture
    from pktdemux.hostfile import build_kernel, load_host
    from pktdemux.replay import Replay

    replay = Replay(build_kernel(load_host(str(host)), seed=0))
    results = replay.run(read_capture(path))
    if jsonl is None:
        for _ in results:
            pass
    else:
        from pktdemux.jsonl import JsonlWriter

        with JsonlWriter(jsonl) as writer:
            write = writer.write
            for result in results:
                write(result)
    return replay.totals.packets


def child_memory(path: pathlib.Path, host: pathlib.Path) -> None:
    """Replay in this (fresh) process, print packets and peak RSS as JSON."""
    import pktdemux.capture
    import pktdemux.hostfile
    import pktdemux.replay  # noqa: F401

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_before = current_rss_kib()
    packets = pktdemux_replay(path, host)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"packets": packets, "rss_before_kib": before, "rss_peak_kib": peak,
                      "rss_now_before_kib": rss_before, "rss_now_after_kib": current_rss_kib()}))


def current_rss_kib() -> int:
    """The resident set size now (Linux /proc), in KiB; 0 where unavailable."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_in_subprocess(path: pathlib.Path, host: pathlib.Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-memory", str(path), "--host", str(host)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", type=pathlib.Path, help="replay this capture instead of building one")
    parser.add_argument("--host", type=pathlib.Path, default=BENCH_HOST, help="host file (default pcaps/bench.toml)")
    parser.add_argument("-n", "--count", type=int, default=200_000, help="packets to build (default 200000)")
    parser.add_argument("--scapy-sample", type=int, default=20_000, help="packets Scapy dissects (default 20000)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure; the best counts (default 2)")
    parser.add_argument("--mem-counts", default="50000,200000",
                        help="capture lengths for the memory figure (default 50000,200000)")
    parser.add_argument("--child-memory", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_memory:
        child_memory(args.child_memory, args.host)
        return 0

    with tempfile.TemporaryDirectory(prefix="pktdemux-bench-") as tmp:
        tmpdir = pathlib.Path(tmp)
        capture = args.capture
        if capture is None:
            capture = tmpdir / f"mixed_{args.count}.pcap"
            start = time.perf_counter()
            build_capture(capture, args.count)
            print(f"built {capture.name}: {args.count} packets, {capture.stat().st_size / 1e6:.1f} MB "
                  f"in {time.perf_counter() - start:.1f} s")
        print(f"capture: {capture}  host: {args.host}  Python {sys.version.split()[0]}")
        print()

        rows: list[tuple[str, int, float]] = []
        n, t = timed(lambda: scapy_dissect(capture, args.scapy_sample), args.repeat)
        rows.append(("Scapy PcapReader (dissect)", n, t))
        scapy_rate = n / t
        n, t = timed(lambda: scapy_raw(capture), args.repeat)
        rows.append(("Scapy RawPcapReader (no dissection)", n, t))
        n, t = timed(lambda: pktdemux_replay(capture, args.host), args.repeat)
        rows.append(("pktdemux replay", n, t))
        replay_rate = n / t
        jsonl = tmpdir / "out.jsonl"
        n, t = timed(lambda: pktdemux_replay(capture, args.host, jsonl), args.repeat)
        rows.append(("pktdemux replay + JSON Lines", n, t))
        jsonl_rate = n / t
        jsonl_size = jsonl.stat().st_size

        width = max(len(r[0]) for r in rows)
        print(f"{'':{width}}  {'packets':>9}  {'seconds':>8}  {'packets/s':>10}  {'x Scapy':>8}")
        for name, count, seconds in rows:
            rate = count / seconds
            print(f"{name:{width}}  {count:9d}  {seconds:8.2f}  {rate:10,.0f}  {rate / scapy_rate:8.1f}")
        print()
        print(f"replay / Scapy dissection: {replay_rate / scapy_rate:.1f}x "
              f"(with JSON Lines {jsonl_rate / scapy_rate:.1f}x; target >= 30x); "
              f"JSON Lines output {jsonl_size / 1e6:.1f} MB")
        print()

        print("peak memory of a replay in a fresh interpreter (ru_maxrss):")
        for count in (int(c) for c in args.mem_counts.split(",") if c):
            path = tmpdir / f"mem_{count}.pcap"
            build_capture(path, count)
            mem = memory_in_subprocess(path, args.host)
            print(f"  {mem['packets']:9d} packets: peak {mem['rss_peak_kib'] / 1024:7.1f} MiB "
                  f"(peak after imports {mem['rss_before_kib'] / 1024:.1f} MiB; resident before the replay "
                  f"{mem['rss_now_before_kib'] / 1024:.1f} MiB, after it {mem['rss_now_after_kib'] / 1024:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
