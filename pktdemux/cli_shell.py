"""``pktdemux shell`` and ``pktdemux ss``: the emulated host, interactively
and as ``ss -tuanp`` shows its sockets.

``pktdemux shell [--host HOST.toml] [--seed N] [--plain]``
``pktdemux ss --host HOST.toml [--no-processes]``

Exit status 0, or 2 with one line ``pktdemux: error: ...`` for a bad host file.
"""

from __future__ import annotations

from typing import Any

import click

from .errors import PktdemuxError

EXIT_BAD_INPUT = 2

_HOST_OPTION = click.option("--host", "host_path", type=click.Path(dir_okay=False),
                            help="Host file (TOML): the host's addresses, sockets and sysctls.")
_SEED_OPTION = click.option("--seed", type=int, default=0, show_default=True,
                            help="Seed of the values the kernel draws at random (ISN, ports...).")


def _load(host_path: str | None, seed: int) -> Any:
    from .host import Host

    if host_path is None:
        return Host(seed=seed)
    try:
        return Host.from_file(host_path, seed=seed)
    except PktdemuxError as err:
        click.echo(f"pktdemux: error: {err}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None


@click.command()
@_HOST_OPTION
@_SEED_OPTION
@click.option("--plain", is_flag=True, help="Use the standard Python console even if IPython is installed.")
def shell(host_path: str | None, seed: int, plain: bool) -> None:
    """An interactive shell with `host` (from --host, else 10.0.0.1/24 and fd00::1/64) and Scapy's layers."""
    from .shell import interact

    interact(_load(host_path, seed), ipython=False if plain else None)


@click.command()
@click.option("--host", "host_path", required=True, type=click.Path(dir_okay=False),
              help="Host file (TOML): the host's addresses, sockets and sysctls.")
@_SEED_OPTION
@click.option("--no-processes", is_flag=True, help="Leave out the Process column's contents, as `ss -tuan`.")
def ss(host_path: str, seed: int, no_processes: bool) -> None:
    """The host's sockets as `ss -tuanp` shows them."""
    host = _load(host_path, seed)
    click.echo(str(host.ss(processes=not no_processes)), nl=False)
