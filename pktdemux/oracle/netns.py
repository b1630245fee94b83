"""The oracle's helper process, run inside a fresh network namespace:
``unshare -n python -m pktdemux.oracle.netns``.

Reads a scenario (:meth:`Scenario.to_json`) as JSON on stdin, sets up the
namespace, injects the packets at their offsets and writes the result
(the shape :meth:`OracleResult.from_json` reads) as JSON on stdout.  On
failure it writes ``{"error": kind, "reason": text}`` and exits with status 3
(setup failed: the oracle is unavailable) or 4 (the scenario failed).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from typing import Any

from .errors import OracleError
from .host_sockets import SocketTable
from .scenario import Scenario
from .segments import final_ack, parse_tcp, rebase_ack
from .tun import QUIET_IPV6, SetupError, TunDevice, write_sysctls

EXIT_SETUP = 3
EXIT_RUN = 4

#: Delay between the end of setup and the first injection (seconds).
LEAD_IN = 0.005
#: Longest wait for the SYN-ACK of a ``complete_handshake`` injection (seconds).
HANDSHAKE_WAIT = 0.2


def _setup(scenario: Scenario) -> tuple[TunDevice, SocketTable]:
    host = scenario.host
    write_sysctls(QUIET_IPV6)
    tun = TunDevice(host.interface)
    try:
        # The scenario's own settings: a failure here is the scenario's fault.
        write_sysctls(host.sysctls)
        tun.configure(host.addresses, host.mtu)
    except SetupError as exc:
        raise OracleError("host setup failed", str(exc)) from None
    table = SocketTable(tun, host.addresses)
    return tun, table


def _isn_for(packet: bytes, connections: list[dict[str, Any]]) -> int:
    """The local ISN of the connection ``packet`` (from the peer) belongs to."""
    view = parse_tcp(packet)
    for conn in connections:
        if view is not None and (str(ipaddress.ip_address(view.src)), view.sport, view.dport) == (
                conn["peer"], conn["pport"], conn["lport"]):
            return int(conn["local_isn"])
    raise OracleError("ack_from_isn on a packet of no ESTABLISHED connection", packet.hex())


def _inject(tun: TunDevice, scenario: Scenario,
            connections: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Inject every packet at its offset; per packet, the replies read
    until the next injection (the last: until ``settle`` has passed)."""
    base = time.monotonic() + LEAD_IN
    results: list[dict[str, Any]] = []
    packets = scenario.packets
    for i, injection in enumerate(packets):
        if results:
            results[-1]["replies"].extend(_stamp(tun.read_until(base + injection.offset), base))
        else:
            tun.read_until(base + injection.offset)
        packet = injection.packet
        if injection.ack_from_isn:
            packet = rebase_ack(packet, _isn_for(packet, connections))
        tun.write(packet)
        entry = {"index": i, "sent_at": time.monotonic() - base, "hex": packet.hex(),
                 "replies": [], "followup": None}
        results.append(entry)
        if injection.complete_handshake:
            limit = time.monotonic() + HANDSHAKE_WAIT
            if i + 1 < len(packets):
                limit = min(limit, base + packets[i + 1].offset)
            _complete_handshake(tun, packet, entry, limit, base)
    if results:
        results[-1]["replies"].extend(_stamp(tun.read_until(time.monotonic() + scenario.settle), base))
    return results, base


def _complete_handshake(tun: TunDevice, syn: bytes, entry: dict[str, Any], limit: float, base: float) -> None:
    while time.monotonic() < limit:
        for at, packet in tun.read_until(min(limit, time.monotonic() + 0.002)):
            entry["replies"].append({"at": at - base, "hex": packet.hex()})
            ack = final_ack(syn, packet)
            if ack is not None:
                tun.write(ack)
                entry["followup"] = ack.hex()
                return


def _stamp(packets: list[tuple[float, bytes]], base: float) -> list[dict[str, Any]]:
    return [{"at": at - base, "hex": packet.hex()} for at, packet in packets]


def run(scenario: Scenario) -> dict[str, Any]:
    """Carry out ``scenario`` in the current (fresh) network namespace.

    Returns:
        The JSON-ready result.

    Raises:
        SetupError: the namespace could not be configured.
        OracleError: a socket's handshake failed.
    """
    started = time.monotonic()
    tun, table = _setup(scenario)
    table.create(scenario.host.sockets)
    early = [packet.hex() for _, packet in tun.read_ready()] + [p.hex() for p in table.stray]
    setup_seconds = time.monotonic() - started
    connections = [s.connection for s in table.sockets if s.connection is not None]
    packets, base = _inject(tun, scenario, connections)
    result = {
        "name": scenario.name,
        "interface": tun.name,
        "packets": packets,
        "sockets": table.collect(),
        "connections": connections,
        "noise": tun.noise,
        "early": early,
        "setup_seconds": setup_seconds,
        "run_seconds": time.monotonic() - base,
    }
    tun.close()
    return result


def main() -> int:
    """Entry point: JSON scenario on stdin, JSON result on stdout."""
    scenario = Scenario.from_json(json.load(sys.stdin))
    try:
        result = run(scenario)
    except SetupError as exc:
        json.dump({"error": "setup", "reason": str(exc)}, sys.stdout)
        return EXIT_SETUP
    except OracleError as exc:
        json.dump({"error": "run", "reason": str(exc)}, sys.stdout)
        return EXIT_RUN
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
