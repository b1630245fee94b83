"""The host's sockets inside the oracle's namespace: created in host-file
order with their options, ESTABLISHED TCP connections made by injecting the
peer's handshake, and what every socket received read back at the end.

Runs only inside the helper process.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import OracleError
from .scenario import SocketCall, SocketSetup, parse_endpoint
from .segments import SYN, build_segment, mss_option, parse_tcp
from .tun import TunDevice

#: Sequence number of the SYN the oracle injects to make an ESTABLISHED socket.
PEER_ISN = 1_000_000
#: How long a handshake may take before the oracle gives up (seconds).
HANDSHAKE_TIMEOUT = 1.0

_SO_REUSEPORT = getattr(socket, "SO_REUSEPORT", 15)
_IPV6_V6ONLY = getattr(socket, "IPV6_V6ONLY", 26)
_TCP_INFO = getattr(socket, "TCP_INFO", 11)

#: TCP states by number (include/net/tcp_states.h), as
#: :class:`pktdemux.sockets.TcpState` member names.
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "SYN_RECV",
}


@dataclass(slots=True)
class HostSocket:
    """One host-file socket as created in the namespace.

    Attributes:
        index: position in the host's socket list.
        setup: its host-file entry.
        sock: the kernel socket (for a connection: the accept()ed one), or
            None when creating it failed.
        error: the errno name of the failure, else None.
        connection: the handshake record of an ESTABLISHED socket (a dict in
            :class:`~pktdemux.oracle.result.ConnectionState` shape), else None.
    """

    index: int
    setup: SocketSetup
    sock: socket.socket | None = None
    error: str | None = None
    connection: dict[str, Any] | None = None
    listening: bool = field(default=False)


@contextlib.contextmanager
def _effective_uid(uid: int) -> Iterator[None]:
    """Run the block with this effective uid (the socket's owner, sk_uid)."""
    if uid == 0:
        yield
        return
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


def _sockaddr(family: int, addr: str, port: int) -> tuple[Any, ...]:
    """The address tuple for a socket of this family; an IPv4 peer of an
    AF_INET6 socket becomes ``::ffff:a.b.c.d``."""
    if family == socket.AF_INET6 and ipaddress.ip_address(addr).version == 4:
        addr = f"::ffff:{addr}"
    return (addr, port)


def _plain(addr: str) -> str:
    """Text of an address as the kernel reported it, scope id removed."""
    return str(ipaddress.ip_address(addr.split("%")[0]))


def _local_for(bound: str, version: int, host_addresses: Sequence[str]) -> str:
    """The local address of a connection on a socket bound to ``bound``."""
    ip = ipaddress.ip_address(bound)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if not ip.is_unspecified and ip.version == version:
        return str(ip)
    for text in host_addresses:
        iface = ipaddress.ip_interface(text)
        if iface.version == version:
            return str(iface.ip)
    raise OracleError(f"no IPv{version} host address for a connection on {bound}")


def _covers(listener: SocketSetup, local: str, version: int) -> bool:
    """Whether a listener's bound address can accept a connection to ``local``."""
    _, bound, _, family = listener.endpoint
    ip = ipaddress.ip_address(bound)
    if family == 4:
        return version == 4 and (ip.is_unspecified or str(ip) == local)
    if ip.ipv4_mapped is not None:
        return version == 4 and str(ip.ipv4_mapped) == local
    if ip.is_unspecified:
        return version == 6 or not listener.v6only
    return version == 6 and str(ip) == local


class SocketTable:
    """Creates the host's sockets in order and reads them back.

    Args:
        tun: the namespace's TUN device (for handshakes).
        host_addresses: the host's ``address/prefix`` strings (the local end
            of a connection on a wildcard socket is the first one of the
            family).
    """

    def __init__(self, tun: TunDevice, host_addresses: Sequence[str]) -> None:
        self.tun = tun
        self.host_addresses = list(host_addresses)
        self.sockets: list[HostSocket] = []
        #: packets the kernel sent during handshakes that were not SYN-ACKs
        self.stray: list[bytes] = []
        #: sockets made by ``connect`` calls, by name
        self.clients: dict[str, socket.socket] = {}

    def create(self, setups: Sequence[SocketSetup]) -> None:
        """Create every socket in order.  A failing bind/listen/connect is
        recorded as the socket's ``error`` (as on Linux, later sockets are
        still created).

        Raises:
            OracleError: an ESTABLISHED socket's handshake failed.
        """
        for index, setup in enumerate(setups):
            entry = HostSocket(index, setup)
            self.sockets.append(entry)
            try:
                with _effective_uid(setup.uid):
                    self._create(entry)
            except OSError as exc:
                entry.error = errno.errorcode.get(exc.errno or 0, str(exc))
                if entry.sock is not None:
                    entry.sock.close()
                    entry.sock = None

    def _new_socket(self, setup: SocketSetup) -> socket.socket:
        proto, addr, port, family = setup.endpoint
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(af, kind)
        try:
            if setup.reuseaddr:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if setup.reuseport:
                sock.setsockopt(socket.SOL_SOCKET, _SO_REUSEPORT, 1)
            if af == socket.AF_INET6 and setup.v6only is not None:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_V6ONLY, int(setup.v6only))
            if setup.device:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, setup.device.encode())
            sock.bind((addr, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _create(self, entry: HostSocket) -> None:
        setup = entry.setup
        proto = setup.endpoint[0]
        if proto == "tcp" and setup.peer is not None:
            self._establish(entry)
            return
        entry.sock = self._new_socket(setup)
        if proto == "tcp" and setup.listen is not None:
            entry.sock.listen(setup.listen)
            entry.listening = True
        elif proto == "udp" and setup.peer is not None:
            paddr, pport, _ = parse_endpoint(setup.peer)
            entry.sock.connect(_sockaddr(entry.sock.family, paddr, pport))
        entry.sock.setblocking(False)

    def _establish(self, entry: HostSocket) -> None:
        """Make an ESTABLISHED connection: the peer's SYN and ACK through the
        TUN device, accept() from an earlier listener that covers the address
        or, failing that, from this socket itself listening for the moment."""
        setup = entry.setup
        _, bound, port, _ = setup.endpoint
        paddr, pport, version = parse_endpoint(setup.peer or "")
        local = _local_for(bound, version, self.host_addresses)
        listeners = [
            s.sock for s in self.sockets
            if s.listening and s.sock is not None and s.setup.endpoint[0] == "tcp"
            and s.setup.endpoint[2] == port and _covers(s.setup, local, version)
        ]
        own = None
        if not listeners:
            own = self._new_socket(setup)
            own.listen(1)
            own.setblocking(False)
            listeners = [own]
        try:
            entry.connection = self._handshake(entry.index, local, port, paddr, pport)
            entry.sock = self._accept_from(listeners, paddr, pport)
        finally:
            if own is not None:
                own.close()
        entry.sock.setblocking(False)
        entry.connection.update(rtt_info(entry.sock))

    def _handshake(self, index: int, local: str, lport: int, peer: str, pport: int) -> dict[str, Any]:
        src, dst = ipaddress.ip_address(peer).packed, ipaddress.ip_address(local).packed
        mss = 1460 if len(src) == 4 else 1440
        syn = build_segment(src=src, dst=dst, sport=pport, dport=lport, seq=PEER_ISN, ack=0, flags=SYN,
                            options=mss_option(mss))
        self.tun.write(syn)
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        synack = None
        while synack is None and time.monotonic() < deadline:
            for _, packet in self.tun.read_until(min(deadline, time.monotonic() + 0.01)):
                view = parse_tcp(packet)
                if (synack is None and view is not None and view.flags & 0x17 == 0x12
                        and (view.dst, view.dport, view.sport) == (src, pport, lport)):
                    synack = (packet, view)
                else:
                    self.stray.append(packet)
        if synack is None:
            raise OracleError(f"no SYN-ACK from {local}:{lport} to the handshake of socket #{index}")
        packet, view = synack
        ack = build_segment(src=src, dst=dst, sport=pport, dport=lport, seq=PEER_ISN + 1, ack=view.seq + 1,
                            flags=0x10)
        self.tun.write(ack)
        return {
            "index": index, "local": local, "lport": lport, "peer": peer, "pport": pport,
            "local_isn": view.seq, "peer_isn": PEER_ISN, "snd_nxt": (view.seq + 1) & 0xFFFFFFFF,
            "rcv_nxt": PEER_ISN + 1, "window": view.window, "mss": mss,
            "handshake": [syn.hex(), packet.hex(), ack.hex()],
        }

    @staticmethod
    def _accept_from(listeners: Sequence[socket.socket], peer: str, pport: int) -> socket.socket:
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        while time.monotonic() < deadline:
            for listener in listeners:
                try:
                    conn, addr = listener.accept()
                except BlockingIOError:
                    continue
                if _plain(addr[0]).removeprefix("::ffff:") == peer and addr[1] == pport:
                    return conn
                conn.close()
            time.sleep(0.001)
        raise OracleError(f"the handshake from {peer}:{pport} completed but accept() got nothing")

    def call(self, call: SocketCall) -> dict[str, Any]:
        """Carry out ``call`` (see :class:`~pktdemux.oracle.scenario.SocketCall`);
        returns its result in :class:`~pktdemux.oracle.result.CallResult`
        shape, without index, time and replies.

        Raises:
            OracleError: no socket of that name, or it was closed before.
        """
        result: dict[str, Any] = {"socket": call.socket, "call": call.call}
        if call.call == "connect":
            sock = self._connect(call, result)
        else:
            sock = self._named(call.socket)
            try:
                if call.call == "close":
                    self._forget(call.socket)
                    sock.close()
                elif call.call == "shutdown_wr":
                    sock.shutdown(socket.SHUT_WR)
                elif call.call == "recv":
                    data, result["error"] = _drain(sock)
                    result["data"] = data.hex()
                elif call.call == "status":
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    result["so_error"] = errno.errorcode.get(error, str(error)) if error else None
            except OSError as exc:
                result["error"] = errno.errorcode.get(exc.errno or 0, str(exc))
        if sock.fileno() >= 0 and sock.type == socket.SOCK_STREAM:
            result["state"] = TCP_STATES.get(sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 8)[0])
        if call.call == "status":
            result["table"] = tcp_table()  # ~10 ms: reading /proc walks the whole hash table
        return result

    def _connect(self, call: SocketCall, result: dict[str, Any]) -> socket.socket:
        addr, port, version = parse_endpoint(call.peer or "")
        sock = socket.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.clients[call.socket] = sock
        code = sock.connect_ex((addr, port))
        if code:
            result["error"] = errno.errorcode.get(code, str(code))
        local = sock.getsockname()
        result["local"] = [_plain(local[0]), local[1]]
        return sock

    def _named(self, name: str) -> socket.socket:
        sock = self.clients.get(name)
        if sock is None:
            sock = next((e.sock for e in self.sockets if e.setup.display_name == name), None)
        if sock is None:
            raise OracleError(f"socket call on {name!r}: no such open socket")
        return sock

    def _forget(self, name: str) -> None:
        """The application closes ``name``: nothing is read from it at the end."""
        self.clients.pop(name, None)
        for entry in self.sockets:
            if entry.setup.display_name == name:
                entry.sock = None

    def collect(self) -> list[dict[str, Any]]:
        """What each socket received, read without blocking, as JSON-ready dicts
        in :class:`~pktdemux.oracle.result.SocketReport` shape.

        UDP: every queued datagram.  TCP listener: every connection in the
        accept queue, with its pending data.  ESTABLISHED TCP: the pending
        data; ``recv_error`` is the errno name of a failed read, or ``"EOF"``
        after the peer's FIN.
        """
        return [self._collect(entry) for entry in self.sockets]

    def _collect(self, entry: HostSocket) -> dict[str, Any]:
        report: dict[str, Any] = {
            "index": entry.index, "name": entry.setup.display_name, "error": entry.error,
            "datagrams": [], "accepted": [], "data": "", "recv_error": None,
        }
        sock = entry.sock
        if sock is None:
            return report
        if sock.type == socket.SOCK_DGRAM:
            while True:
                try:
                    payload, addr = sock.recvfrom(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError as exc:
                    report["recv_error"] = errno.errorcode.get(exc.errno or 0, str(exc))
                    continue
                report["datagrams"].append({"src": _plain(addr[0]), "sport": addr[1], "payload": payload.hex()})
        elif entry.listening:
            while True:
                try:
                    conn, addr = sock.accept()
                except BlockingIOError:
                    break
                with conn:
                    local = conn.getsockname()
                    data, _ = _drain(conn)
                report["accepted"].append({
                    "peer": _plain(addr[0]), "pport": addr[1], "local": _plain(local[0]), "lport": local[1],
                    "data": data.hex(),
                })
        elif entry.connection is not None:
            data, error = _drain(sock)
            report["data"], report["recv_error"] = data.hex(), error
        return report


def rtt_info(sock: socket.socket) -> dict[str, int]:
    """The connection's RTT estimate and RTO after its handshake (TCP_INFO:
    tcpi_rtt, the smoothed RTT, and tcpi_rto, both in µs)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    rto, rtt = struct.unpack_from("=I", info, 8)[0], struct.unpack_from("=I", info, 68)[0]
    return {"rtt_us": rtt, "rto_us": rto}


def tcp_table() -> list[dict[str, Any]]:
    """Every TCP socket of the namespace (/proc/net/tcp and tcp6: listeners,
    connections, orphans, TIME_WAIT entries, requests) in
    :class:`~pktdemux.oracle.result.TableEntry` shape."""
    entries = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            (local, lport), (remote, rport) = (_proc_endpoint(t) for t in fields[1:3])
            entries.append({"local": local, "lport": lport, "remote": remote, "rport": rport,
                            "state": TCP_STATES.get(int(fields[3], 16), fields[3])})
    return entries


def _proc_endpoint(text: str) -> tuple[str, int]:
    """``0100000A:0050`` → ("10.0.0.1", 80): the address is in 32-bit words
    of host (little-endian) order."""
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(packed)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)


def _drain(sock: socket.socket) -> tuple[bytes, str | None]:
    """Pending stream data, and the errno name (or ``"EOF"``) that ended it."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return b"".join(chunks), None
        except OSError as exc:
            return b"".join(chunks), errno.errorcode.get(exc.errno or 0, str(exc))
        if not chunk:
            return b"".join(chunks), "EOF"
        chunks.append(chunk)
