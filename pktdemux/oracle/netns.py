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
from .scenario import Injection, Scenario
from .segments import final_ack, parse_tcp, quoted_flow, rebase_ack, rebase_quoted_seq
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
        if host.initrwnd:
            tun.set_initrwnd(host.initrwnd)
    except SetupError as exc:
        raise OracleError("host setup failed", str(exc)) from None
    table = SocketTable(tun, host.addresses)
    return tun, table


def _isn_for(flow: tuple[str, int, int] | None, flows: list[dict[str, Any]], packet: bytes) -> int:
    """The local ISN of the connection ``flow`` (peer, peer port, local
    port): an ESTABLISHED one the oracle set up or one a ``connect`` call
    started."""
    if flow is not None:
        for conn in flows:
            if flow == (conn["peer"], conn["pport"], conn["lport"]):
                return int(conn["local_isn"])
    raise OracleError("ack_from_isn/quote_from_isn on a packet of no known connection", packet.hex())


def _rebased(injection: Injection, flows: list[dict[str, Any]]) -> bytes:
    """The injection's bytes, its ACK or quoted sequence number counted
    from the connection's ISN when it asks for that."""
    packet = injection.packet
    if injection.ack_from_isn:
        view = parse_tcp(packet)
        flow = None if view is None else (str(ipaddress.ip_address(view.src)), view.sport, view.dport)
        packet = rebase_ack(packet, _isn_for(flow, flows, packet))
    if injection.quote_from_isn:
        quoted = quoted_flow(packet)
        flow = None if quoted is None else (str(ipaddress.ip_address(quoted[2])), quoted[3], quoted[1])
        packet = rebase_quoted_seq(packet, _isn_for(flow, flows, packet))
    return packet


def _client_isn(entry: dict[str, Any]) -> dict[str, Any] | None:
    """A connect call's flow and the ISN of its SYN, once the SYN was read."""
    if entry.get("call") != "connect" or not entry.get("local"):
        return None
    lport = entry["local"][1]
    for reply in entry["replies"]:
        view = parse_tcp(bytes.fromhex(reply["hex"]))
        if view is not None and view.sport == lport and view.flags & 0x12 == 0x02:
            entry["isn"] = view.seq
            return {"peer": str(ipaddress.ip_address(view.dst)), "pport": view.dport, "lport": lport,
                    "local_isn": view.seq}
    return None


def _inject(tun: TunDevice, scenario: Scenario, table: SocketTable,
            connections: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Carry out every step at its offset: inject a packet, or make a socket
    call.  Per step, the replies read until the next step (the last: until
    ``settle`` has passed)."""
    base = time.monotonic() + LEAD_IN
    packets: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    flows = list(connections)
    steps = scenario.steps()
    offsets = [scenario.packets[i].offset if kind == "packet" else scenario.calls[i].offset for kind, i in steps]
    last: dict[str, Any] | None = None

    def read_until(deadline: float) -> None:
        got = tun.read_until(deadline)
        if last is not None:
            last["replies"].extend(_stamp(got, base))
            if "isn" not in last:
                flow = _client_isn(last)
                if flow is not None:
                    flows.append(flow)

    for n, (kind, i) in enumerate(steps):
        read_until(base + offsets[n])
        if kind == "call":
            at = time.monotonic() - base
            entry = {"index": i, "at": at, **table.call(scenario.calls[i]), "replies": []}
            calls.append(entry)
            last = entry
            continue
        injection = scenario.packets[i]
        packet = _rebased(injection, flows)
        tun.write(packet)
        entry = {"index": i, "sent_at": time.monotonic() - base, "hex": packet.hex(),
                 "replies": [], "followup": None}
        packets.append(entry)
        last = entry
        if injection.complete_handshake:
            limit = time.monotonic() + HANDSHAKE_WAIT
            if n + 1 < len(steps):
                limit = min(limit, base + offsets[n + 1])
            flow = _complete_handshake(tun, packet, entry, limit, base)
            if flow is not None:
                flows.append(flow)
    read_until(time.monotonic() + scenario.settle)
    return packets, calls, base


def _complete_handshake(tun: TunDevice, syn: bytes, entry: dict[str, Any], limit: float,
                        base: float) -> dict[str, Any] | None:
    """Answer the SYN-ACK to ``syn`` with the final ACK; returns the
    connection's flow and ISN (for later ``ack_from_isn`` injections), None
    when no SYN-ACK came in time."""
    while time.monotonic() < limit:
        for at, packet in tun.read_until(min(limit, time.monotonic() + 0.002)):
            entry["replies"].append({"at": at - base, "hex": packet.hex()})
            ack = final_ack(syn, packet)
            if ack is not None:
                tun.write(ack)
                entry["followup"] = ack.hex()
                view = parse_tcp(packet)
                if view is None:
                    return None
                return {"peer": str(ipaddress.ip_address(view.dst)), "pport": view.dport, "lport": view.sport,
                        "local_isn": view.seq}
    return None


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
    packets, calls, base = _inject(tun, scenario, table, connections)
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
        "calls": calls,
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
