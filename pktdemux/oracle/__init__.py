"""The real Linux kernel as a test oracle.

Runs a scenario (a host's addresses, sysctls and sockets, and packets with
time offsets) in a private network namespace with a TUN device, and reports
what the kernel transmitted after each packet and what the sockets received.
This is an adapter: it needs root, starts a process, sleeps and uses real
sockets.  Nothing leaves the private namespace.

Example::

    scenario = Scenario.evenly_spaced(host_toml, [syn_bytes])
    result = run_scenario(scenario)
    result.packets[0].reply_bytes   # the RST or SYN-ACK the kernel sent
"""

from __future__ import annotations

from .errors import OracleError, OracleUnavailable
from .noise import is_background_noise
from .result import (
    Accepted,
    CallResult,
    ConnectionState,
    Datagram,
    OracleResult,
    PacketResult,
    Reply,
    SocketReport,
    TableEntry,
)
from .runner import check_available, run_scenario
from .scenario import HostSetup, Injection, Scenario, SocketCall, SocketSetup
from .segments import final_ack

__all__ = [
    "Accepted",
    "CallResult",
    "ConnectionState",
    "Datagram",
    "HostSetup",
    "Injection",
    "OracleError",
    "OracleResult",
    "OracleUnavailable",
    "PacketResult",
    "Reply",
    "Scenario",
    "SocketCall",
    "SocketReport",
    "SocketSetup",
    "TableEntry",
    "check_available",
    "final_ack",
    "is_background_noise",
    "run_scenario",
]
