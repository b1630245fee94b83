"""The ``pktdemux`` command line.

``pktdemux replay CAPTURE --host HOST.toml [--jsonl FILE] [--write FILE.pcapng] [--seed N]``

Exit status: 0 on success, 2 on bad usage or bad input (a corrupt capture, a
malformed host file, an output file that cannot be written).  Bad input gives
one line on stderr, ``pktdemux: error: FILE: POSITION: REASON``; whatever was
computed before it is kept: the JSONL and pcapng outputs are closed with
every packet read so far, and the rows and the summary are printed.
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from typing import Any

import click

from . import __version__
from .errors import PktdemuxError

#: captures larger than this (bytes) get a progress bar on a terminal
PROGRESS_MIN_BYTES = 2_000_000
EXIT_BAD_INPUT = 2


def _fail(message: str) -> None:
    click.echo(f"pktdemux: error: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message="pktdemux %(version)s")
def main() -> None:
    """What would this host's Linux kernel have done with that packet?"""


@main.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--host", "host_path", type=click.Path(dir_okay=False),
              help="Host file (TOML): the host's addresses, sockets and sysctls.")
@click.option("--host-from-ss", "ss_path", type=click.Path(dir_okay=False),
              help="Instead of --host: the host's `ss -tuanpe` output (see `pktdemux host from-ss`).")
@click.option("--infer", is_flag=True, help="Instead of --host: infer the host from CAPTURE (`pktdemux host infer`).")
@click.option("--address", "addresses", multiple=True, metavar="ADDR[/PREFIX]",
              help="With --host-from-ss or --infer: the host's address (repeatable).")
@click.option("--jsonl", "jsonl_path", type=click.Path(dir_okay=False),
              help="Write one JSON object per packet to FILE.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False),
              help="Write the capture with the emulated replies merged in, as pcapng.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the values the kernel draws at random (ISN, IDs...).")
@click.option("--summary-only", is_flag=True, help="Print the summary, not the per-packet rows.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on stdout (errors still go to stderr).")
@click.option("--golden", "golden_path", type=click.Path(dir_okay=False),
              help="Compare the golden transcript with FILE: print the diff and exit 1 when they differ.")
@click.option("--update-golden", is_flag=True, help="Write the golden transcript to the --golden FILE.")
def replay(capture: str, host_path: str | None, ss_path: str | None, infer: bool, addresses: tuple[str, ...],
           jsonl_path: str | None, write_path: str | None, seed: int, summary_only: bool, quiet: bool,
           golden_path: str | None, update_golden: bool) -> None:
    """Replay CAPTURE (pcap or pcapng) against the host described by --host
    (or --host-from-ss, or --infer)."""
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # our errors are one line
    if sum((host_path is not None, ss_path is not None, infer)) != 1:
        raise click.UsageError("give exactly one of --host, --host-from-ss and --infer")
    if addresses and host_path is not None:
        raise click.UsageError("--address goes with --host-from-ss or --infer, not --host")
    if host_path is None:
        from .cli_host import imported_kernel

        try:
            kernel = imported_kernel(capture, ss_path, addresses, seed)
        except PktdemuxError as e:
            _fail(str(e))
            sys.exit(EXIT_BAD_INPUT)
        sys.exit(_run(kernel, capture, jsonl_path, write_path, summary_only, quiet))
    if golden_path or update_golden:
        from .cli_golden import replay_golden

        sys.exit(replay_golden(capture, host_path, golden_path, update_golden, seed))
    try:
        kernel = _load_kernel(host_path, seed)
    except PktdemuxError as e:
        _fail(str(e))
        sys.exit(EXIT_BAD_INPUT)
    status = _run(kernel, capture, jsonl_path, write_path, summary_only, quiet)
    sys.exit(status)


def _load_kernel(host_path: str, seed: int) -> Any:
    from .hostfile import build_kernel, load_host

    return build_kernel(load_host(host_path), seed=seed)


def _run(kernel: Any, capture_path: str, jsonl_path: str | None, write_path: str | None,
         summary_only: bool, quiet: bool) -> int:
    from .capture import Capture
    from .replay import Replay

    replay = Replay(kernel)
    compared = hasattr(kernel, "transmit")
    error: str | None = None
    with ExitStack() as stack:
        try:
            cap = stack.enter_context(Capture(capture_path))
            sinks = _open_sinks(stack, jsonl_path, write_path)
        except (PktdemuxError, OSError) as e:
            _fail(_describe(e))
            return EXIT_BAD_INPUT
        view = _View(quiet, summary_only, cap)
        stack.enter_context(view)
        try:
            for result in replay.run(cap.records()):
                for write in sinks:
                    write(result)
                view.row(result)
        except BrokenPipeError:
            # The reader of stdout went away (e.g. `| head`): stop quietly.
            view.quiet = True
            _silence_stdout()
        except PktdemuxError as e:
            error = str(e)
        except OSError as e:
            error = _describe(e)
        except KeyboardInterrupt:
            error = f"{capture_path}: interrupted after {replay.totals.packets} packets"
    # Outputs are closed (flushed) here, before the summary and the error line.
    view.summary(replay.totals, compared)
    if error:
        _fail(error)
        return EXIT_BAD_INPUT
    return 0


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)


def _open_sinks(stack: ExitStack, jsonl_path: str | None, write_path: str | None) -> list[Any]:
    sinks = []
    if jsonl_path:
        from .jsonl import JsonlWriter

        sinks.append(stack.enter_context(JsonlWriter(jsonl_path)).write)
    if write_path:
        from .pcapng_out import AnnotatedPcapNg

        sinks.append(stack.enter_context(AnnotatedPcapNg(write_path)).write)
    return sinks


class _View:
    """Rows and summary on stdout: rich on a terminal, plain text otherwise."""

    def __init__(self, quiet: bool, summary_only: bool, cap: Any) -> None:
        self.quiet = quiet
        self.tty = sys.stdout.isatty()
        self.cap = cap
        self.rows: Any = None
        self.progress: Any = None
        self.console: Any = None
        self._count = 0
        if self.tty and not quiet:
            from rich.console import Console

            self.console = Console(highlight=False)
        if not (quiet or summary_only):
            from .report import PlainRows, RichRows

            self.rows = RichRows(self.console) if self.tty else PlainRows(sys.stdout)

    def __enter__(self) -> _View:
        size = self.cap.size
        if self.console is not None and (size is None or size >= PROGRESS_MIN_BYTES):
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("replaying"), BarColumn(), DownloadColumn(),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
            self._task = self.progress.add_task("replay", total=size)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def row(self, result: Any) -> None:
        if self.rows is not None:
            self.rows.row(result)
        self._count += 1
        if self.progress is not None and not self._count & 1023:
            self.progress.update(self._task, completed=self.cap.offset)

    def summary(self, totals: Any, compared: bool) -> None:
        if self.quiet:
            return
        from .report import print_summary_rich, summary_lines

        if self.console is not None:
            print_summary_rich(self.console, totals, compared)
        else:
            if self.rows is not None:
                sys.stdout.write("\n")
            sys.stdout.write("\n".join(summary_lines(totals, compared)) + "\n")
        sys.stdout.flush()



from .cli_shell import shell, ss

main.add_command(shell)
main.add_command(ss)

from .cli_host import host

main.add_command(host)


from .cli_golden import record, run

main.add_command(run)
main.add_command(record)
