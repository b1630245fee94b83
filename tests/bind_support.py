"""Run a :mod:`bind_cases` sequence on the emulation: one fresh Kernel per case."""

from __future__ import annotations

import ipaddress

from bind_cases import (
    ADDRESSES,
    BASE_PORT,
    DEVICE,
    CallStep,
    Case,
    SocketStep,
    SysctlStep,
    errname,
    parse_step,
)

from pktdemux import Interface, Kernel, Proto, Socket, SocketError, Sysctls


def emulated_host() -> Kernel:
    """The emulated twin of the namespace the kernel side sets up."""
    return Kernel([Interface(DEVICE, [ipaddress.ip_interface(a) for a in ADDRESSES])], seed=1)


def run_emulated(case: Case, port: int = BASE_PORT, kernel: Kernel | None = None) -> list[str]:
    """The result of each call of ``case`` on the emulation, in the case's notation."""
    kernel = kernel or emulated_host()
    sockets: dict[str, Socket] = {}
    results = []
    for text in case.steps:
        step = parse_step(text, port)
        if isinstance(step, SysctlStep):
            value = [int(v) for v in step.value.split()]
            overrides = {**kernel.sysctls.changed(), step.sysctl: value if len(value) > 1 else value[0]}
            kernel.sysctls = Sysctls(overrides)
        elif isinstance(step, SocketStep):
            sockets[step.name] = kernel.socket(
                step.proto, step.family, reuseaddr=step.reuseaddr, reuseport=step.reuseport,
                v6only=step.v6only, device=step.device, uid=step.uid, name=step.name)
        else:
            results.append(_call(kernel, sockets[step.name], step))
    return results


def _call(kernel: Kernel, sock: Socket, step: CallStep) -> str:
    picks_port = sock.local_port == 0 and (step.call != "bind" or step.port == 0)
    try:
        if step.call == "bind":
            kernel.bind(sock, step.addr, step.port)
        elif step.call == "listen":
            kernel.listen(sock, 128)
        elif step.call == "connect":
            kernel.connect(sock, step.addr, step.port)
        elif step.call == "close":
            kernel.close(sock)
        else:
            raise ValueError(f"unknown call {step.call!r}")
    except SocketError as err:
        return errname(err.errno)
    if picks_port and sock.proto is Proto.TCP:
        return "OK even" if sock.local_port % 2 == 0 else "OK odd"
    return "OK"
