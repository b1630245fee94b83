"""``pktdemux host``: write a host file from ``ss`` output, /proc/net copies or a capture.

::

    pktdemux host from-ss FILE [-o OUT] [--address ADDR/PREFIX ...] [--proto tcp|udp] [--interface DEV]
    pktdemux host from-proc DIR [-o OUT] [--addresses IP-J-ADDR.json] [--address ...] [--byte-order little|big]
    pktdemux host infer CAPTURE [-o OUT] [--address ADDR[/PREFIX] ...]

The host file goes to OUT, or to stdout.  The file is then loaded as
``pktdemux replay --host`` would load it; a table the emulation refuses is
written all the same, with a warning naming the socket and the rule.
Exit status 2 on bad input, with one line ``pktdemux: error: FILE: POSITION:
REASON``.  Reading files happens here: :mod:`pktdemux.hostimport` is pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import click

from .errors import InputError, PktdemuxError

EXIT_BAD_INPUT = 2
PROC_TABLES = ("tcp", "tcp6", "udp", "udp6")


def _fail(message: str) -> None:
    click.echo(f"pktdemux: error: {message}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


def read_text(path: str, missing_ok: bool = False) -> Any:
    """The UTF-8 text of ``path`` (``-``: stdin); None for a missing file when ``missing_ok``.

    Raises:
        InputError: unreadable, or not text.
    """
    try:
        with click.open_file(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise InputError(path, "", "No such file or directory") from None
    except OSError as err:
        raise InputError(path, "", err.strerror or str(err)) from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"byte {err.start}", "not UTF-8 text") from None


def parse_addresses(values: Sequence[str], prefix_required: bool = True) -> list[Any] | None:
    """``--address`` values → interfaces; None when none were given.

    Raises:
        click.BadParameter: a value that is not ADDR/PREFIX (or ADDR, when
            the prefix is optional: /24 or /64 is then assumed).
    """
    if not values:
        return None
    result = []
    for text in values:
        if "/" not in text and not prefix_required:
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                raise click.BadParameter(f"{text!r} is not an IP address", param_hint="--address") from None
            text = f"{ip}/{24 if ip.version == 4 else 64}"
        try:
            if "/" not in text:
                raise ValueError
            result.append(ipaddress.ip_interface(text))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not ADDRESS/PREFIX such as 10.0.0.1/24",
                                     param_hint="--address") from None
    return result


def spec_from_ss(path: str, addresses: list[Any] | None = None, proto: str | None = None,
                 interface: str | None = None) -> Any:
    """An :class:`~pktdemux.hostimport.model.Imported` host from the ss output at ``path``."""
    from .hostimport import build_host, parse_ss

    listing = parse_ss(read_text(path), path, proto)
    return build_host(listing.sockets, source=f"Sockets from the ss output in {path}.", addresses=addresses,
                      interface=interface, header=listing.notes)


def spec_from_proc(directory: str, addresses_json: str | None, addresses: list[Any] | None,
                   byteorder: str) -> Any:
    """An Imported host from copies of /proc/net/{tcp,tcp6,udp,udp6} in ``directory``."""
    from .hostimport import build_host, parse_ip_addr_json, parse_proc_net

    sockets, found = [], []
    for name in PROC_TABLES:
        path = f"{directory.rstrip('/')}/{name}"
        text = read_text(path, missing_ok=True)
        if text is None:
            continue
        found.append(name)
        sockets += parse_proc_net(text, name, path, byteorder)
    if not found:
        raise InputError(directory, "", f"none of {', '.join(PROC_TABLES)} is there (copies of /proc/net/...)")
    header = [f"Tables read: {', '.join(found)}; missing: {', '.join(n for n in PROC_TABLES if n not in found) or 'none'}.",
              "/proc/net shows no backlog, IPV6_V6ONLY, bound device or process: see each socket."]
    interface = mtu = None
    if addresses_json:
        ip = parse_ip_addr_json(read_text(addresses_json), addresses_json)
        header.append(f"Addresses and device from {addresses_json} (ip -j addr).")
        header += ip.notes
        interface, mtu = ip.interface, ip.mtu
        addresses = (addresses or []) + [a for a in ip.addresses if a not in (addresses or [])]
    return build_host(sockets, source=f"Sockets from the /proc/net copies in {directory}.",
                      addresses=addresses, interface=interface, mtu=mtu, header=header)


def spec_from_capture(capture: str, addresses: list[Any] | None) -> Any:
    """An Imported host inferred from the capture at ``capture``."""
    from .capture import Capture
    from .hostimport import infer_host

    with Capture(capture) as cap:
        return infer_host(cap.records(), addresses, source=capture)


def check(imported: Any, out_name: str) -> str | None:
    """Why the emulation refuses the imported table, or None when it loads."""
    from .hostfile import build_kernel

    try:
        build_kernel(imported.spec)
    except PktdemuxError as err:
        return f"{out_name}: {getattr(err, 'position', '')}: {getattr(err, 'reason', err)}"
    return None


def _emit(imported: Any, output: str | None) -> None:
    from .hostimport import render

    text = render(imported)
    problem = check(imported, output or "<stdout>")
    if output:
        try:
            with click.open_file(output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as err:
            _fail(f"{output}: {err.strerror or err}")
    else:
        click.echo(text, nl=False)
    if problem:
        click.echo(f"pktdemux: warning: the emulation refuses this table: {problem}", err=True)


def _run(make: Any) -> Any:
    try:
        return make()
    except PktdemuxError as err:
        _fail(str(err))


_OUTPUT = click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the host file here (default: stdout).")


@click.group()
def host() -> None:
    """Write a host file from ss output, /proc/net copies or a capture."""


@host.command("from-ss")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_OUTPUT
@click.option("--address", "address", multiple=True, metavar="ADDR/PREFIX",
              help="The host's address (repeatable); default: the sockets' specific addresses, prefix guessed.")
@click.option("--proto", type=click.Choice(["tcp", "udp"]), help="Kind of the sockets when ss printed no Netid column.")
@click.option("--interface", help="The host's device name (default: the device sockets are bound to, else eth0).")
def from_ss(file: str, output: str | None, address: tuple[str, ...], proto: str | None, interface: str | None) -> None:
    """FILE: the output of `ss -tuanpe` (or -tuanp, -tlnp, -ulnp...)."""
    addresses = parse_addresses(address)
    _emit(_run(lambda: spec_from_ss(file, addresses, proto, interface)), output)


@host.command("from-proc")
@click.argument("directory", type=click.Path(file_okay=False))
@_OUTPUT
@click.option("--addresses", "addresses_json", type=click.Path(dir_okay=False),
              help="The output of `ip -j addr` on the host: its addresses and device.")
@click.option("--address", "address", multiple=True, metavar="ADDR/PREFIX", help="The host's address (repeatable).")
@click.option("--byte-order", type=click.Choice(["little", "big"]), default="little", show_default=True,
              help="Byte order of the host the copies come from (x86 and arm64: little).")
def from_proc(directory: str, output: str | None, addresses_json: str | None, address: tuple[str, ...],
              byte_order: str) -> None:
    """DIRECTORY holds copies of /proc/net/{tcp,tcp6,udp,udp6}."""
    addresses = parse_addresses(address)
    _emit(_run(lambda: spec_from_proc(directory, addresses_json, addresses, byte_order)), output)


@host.command("infer")
@click.argument("capture", type=click.Path(dir_okay=False))
@_OUTPUT
@click.option("--address", "address", multiple=True, metavar="ADDR[/PREFIX]",
              help="The host's address (repeatable); default: the capture's busiest responder.")
def infer(capture: str, output: str | None, address: tuple[str, ...]) -> None:
    """Infer the host file of the host that answered in CAPTURE."""
    addresses = parse_addresses(address, prefix_required=False)
    _emit(_run(lambda: spec_from_capture(capture, addresses)), output)


def imported_kernel(capture: str, ss_path: str | None, address: Sequence[str], seed: int) -> Any:
    """The kernel of ``pktdemux replay --host-from-ss FILE`` (``ss_path``) or ``--infer`` (None).

    Raises:
        PktdemuxError: bad input, or a table the emulation refuses.
        click.BadParameter: a bad ``--address``.
    """
    from .hostfile import build_kernel

    if ss_path is not None:
        imported = spec_from_ss(ss_path, parse_addresses(address))
    else:
        imported = spec_from_capture(capture, parse_addresses(address, prefix_required=False))
    return build_kernel(imported.spec, seed=seed)
