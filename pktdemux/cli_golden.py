"""The golden-transcript commands: ``pktdemux run`` and ``pktdemux record``,
and the ``--golden`` / ``--update-golden`` mode of ``pktdemux replay``.

``pktdemux run SCENARIO [--golden FILE [--update-golden]] [--seed N]``
``pktdemux record SCENARIO --kernel [-o GOLDEN]``

Exit status: 0 (transcript written, or equal to the golden), 1 (differs
from the golden: the unified diff is on stdout), 2 (bad input, or the real
kernel cannot be asked here), with one line on stderr,
``pktdemux: error: FILE: POSITION: REASON``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from .errors import PktdemuxError

EXIT_DIFFERS = 1
EXIT_BAD_INPUT = 2


def _fail(message: str) -> int:
    click.echo(f"pktdemux: error: {message}", err=True)
    return EXIT_BAD_INPUT


def check_golden(make: Callable[[], str], golden: str | None, update: bool) -> int:
    """Make the transcript and print it, write it to ``golden`` (``update``),
    or compare it with ``golden``; returns the exit status."""
    from .golden import compare, read_golden, write_golden

    try:
        text = make()
        if golden is None:
            click.echo(text, nl=False)
            return 0
        if update:
            write_golden(golden, text)
            click.echo(f"wrote {golden}", err=True)
            return 0
        if not os.path.exists(golden):
            return _fail(f"{golden}: no golden file yet (write it with --update-golden)")
        diff = compare(read_golden(golden), text, golden, "now")
    except PktdemuxError as err:
        return _fail(str(err))
    if diff:
        click.echo(diff, nl=False)
        click.echo(f"{golden}: differs (rewrite it with --update-golden if the change is intended)", err=True)
        return EXIT_DIFFERS
    click.echo(f"{golden}: matches", err=True)
    return 0


def replay_golden(capture: str, host_path: str, golden: str | None, update: bool, seed: int) -> int:
    """``pktdemux replay CAPTURE --host HOST --golden FILE [--update-golden]``."""
    from .golden import capture_transcript
    from .hostfile import load_host

    if golden is None:
        return _fail("--update-golden needs --golden FILE")
    return check_golden(lambda: capture_transcript(capture, load_host(host_path), seed), golden, update)


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--golden", type=click.Path(dir_okay=False),
              help="Compare the transcript with this golden file (diff and exit 1 when they differ).")
@click.option("--update-golden", is_flag=True, help="Write the transcript to the --golden file.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the values the kernel draws at random (they show symbolically).")
def run(scenario: str, golden: str | None, update_golden: bool, seed: int) -> None:
    """Run SCENARIO on the emulation and print its golden transcript."""
    from .record import emulated
    from .scenario import load_scenario

    if update_golden and golden is None:
        sys.exit(_fail("--update-golden needs --golden FILE"))
    sys.exit(check_golden(lambda: emulated(load_scenario(scenario), seed), golden, update_golden))


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--kernel", "on_kernel", is_flag=True,
              help="Run it on this machine's Linux kernel, in a private network namespace (needs root).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the golden transcript here (default: stdout).")
def record(scenario: str, on_kernel: bool, output: str | None) -> None:
    """Record SCENARIO's golden transcript from the real kernel."""
    import platform

    from .oracle import OracleUnavailable
    from .record import recorded
    from .scenario import load_scenario

    if not on_kernel:
        sys.exit(_fail("record needs --kernel (the real Linux kernel is the only recorder)"))
    try:
        parsed = load_scenario(scenario)
    except PktdemuxError as err:
        sys.exit(_fail(str(err)))

    def make() -> str:
        try:
            return recorded(parsed, platform.release())
        except OracleUnavailable as err:
            raise PktdemuxError(f"{scenario}: cannot run on the real kernel here: {err.reason}") from None

    sys.exit(check_golden(make, output, update=output is not None))
