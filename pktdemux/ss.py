"""The emulated host's socket table as ``ss -tuanp`` prints it.

The rows and their spellings are those of iproute2's ``ss`` on Linux 6.x
(misc/ss.c: inet_addr_print, sock_state_print, find_entry), checked against
the real command in a private network namespace (tests/test_ss_kernel.py):

* addresses: ``0.0.0.0:80`` (AF_INET), ``*:80`` (AF_INET6 ``::`` without
  V6ONLY: dual-stack), ``[::]:80`` (``::`` with V6ONLY),
  ``[::ffff:10.0.0.1]:80`` (v4-mapped), ``0.0.0.0%eth0:80`` and
  ``*%eth0:80`` (SO_BINDTODEVICE); an unconnected peer is the wildcard of
  the same spelling with port ``*``;
* Recv-Q / Send-Q: for LISTEN, the accept-queue length and the backlog; for
  a TCP connection, the bytes received and not yet read (``Socket.inbox``)
  and 0 (nothing unacknowledged); for UDP, 0 (Linux counts buffer memory,
  ``sk_rmem_alloc``, which the emulation does not model);
* Process: ``users:(("nginx",pid=1234,fd=3))`` when the socket has a process
  and a pid; fds are numbered from 3 per pid in socket order, as a process
  opening its sockets in that order would get them.  A connection still in
  its listener's accept queue has no fd, hence no process, as on Linux.

Which sockets show (``inet_diag``): bound UDP sockets, TCP listeners, and
every entry of the TCP established table (connections, SYN-RECV requests,
TIME-WAIT); a TCP socket that is bound but neither listening nor connected is
in no table ``ss`` dumps, so it does not show.  Order: UDP then TCP, AF_INET
then AF_INET6, for TCP the listeners first; within that, bind order (Linux
walks its hash tables, whose order the emulation does not reproduce).

Layout: ``ss``'s compact layout, used when its output is not a terminal:
each column as wide as its widest cell (the last row's Process cell is not
measured, as in ss's buffer), addresses right-aligned before their ``:``,
ports left-aligned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .sockets import V6_ANY, Proto, Socket, TcpState
from .wire import format_addr

if TYPE_CHECKING:
    from .kernel import Kernel

#: (header, left delimiter, right-aligned) of each column, in order (misc/ss.c ``columns``)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("Netid", "", False),
    ("State", " ", False),
    ("Recv-Q", " ", False),
    ("Send-Q", " ", False),
    ("Local Address:", " ", True),
    ("Port", "", False),
    ("Peer Address:", " ", True),
    ("Port", "", False),
    ("Process", "", False),
)
#: the fd a process's first socket gets (0-2 are stdin, stdout, stderr)
FIRST_FD = 3


@dataclass(frozen=True, slots=True)
class SsRow:
    """One socket as ``ss -tuanp`` shows it; each field is the cell's text.

    ``local`` and ``peer`` include the trailing ``:``; ``process`` includes
    the leading space ss prints before ``users:``, or is "".
    """

    netid: str
    state: str
    recv_q: str
    send_q: str
    local: str
    local_port: str
    peer: str
    peer_port: str
    process: str

    @property
    def cells(self) -> tuple[str, ...]:
        return (self.netid, self.state, self.recv_q, self.send_q, self.local, self.local_port,
                self.peer, self.peer_port, self.process)


class SsTable(str):
    """The text of ``ss -tuanp``; its repr is the text itself, so that a REPL shows the table."""

    def __repr__(self) -> str:
        return str(self)


def ss(kernel: Kernel, *, processes: bool = True) -> SsTable:
    """``ss -tuanp`` (``ss -tuan`` when ``processes`` is False) for ``kernel``'s sockets.

    Returns:
        The lines ss prints, each ending with a newline.
    """
    return SsTable(render(rows(kernel, processes=processes)))


def rows(kernel: Kernel, *, processes: bool = True) -> list[SsRow]:
    """The table's rows, in the order described in the module docstring."""
    fds = _fd_numbers(kernel)
    return [_row(sock, fds.get(sock) if processes else None) for sock in shown_sockets(kernel)]


def shown_sockets(kernel: Kernel) -> list[Socket]:
    """The sockets ``ss -tuan`` lists, in its order (see the module docstring)."""
    udp = [s for s in kernel.sockets if s.proto is Proto.UDP and s.local_port]
    listeners = [s for s in kernel.sockets if s.proto is Proto.TCP and s.state is TcpState.LISTEN]
    connected = list(kernel.tcp.established.values())
    ordered: list[Socket] = []
    for family in (4, 6):
        ordered += [s for s in udp if s.family == family]
    for family in (4, 6):
        ordered += [s for s in listeners if s.family == family]
        ordered += [s for s in connected if s.family == family]
    return ordered


def render(table: Iterable[SsRow]) -> str:
    """Lay ``table`` out as ss does when writing to a pipe (misc/ss.c render()).

    Column width: its widest cell (headers included; the last row's Process
    cell excluded, it is never flushed before ss measures), plus the left
    delimiter for every column but the first.
    """
    body = [row.cells for row in table]
    header = tuple(h for h, _, _ in COLUMNS)
    measured = [header, *body[:-1], *([body[-1][:-1] + ("",)] if body else [])]
    widths = []
    for i, (_, delim, _) in enumerate(COLUMNS):
        longest = max(len(cells[i]) for cells in measured)
        widths.append(longest + (len(delim) if i and longest else 0))
    return "".join(_line(cells, widths) + "\n" for cells in [header, *body])


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    out = []
    for i, (cell, (_, delim, right)) in enumerate(zip(cells, COLUMNS, strict=True)):
        lead = delim if i else ""
        pad = " " * max(widths[i] - len(lead) - len(cell), 0)
        out.append(lead + (pad + cell if right else cell + pad))
    return "".join(out)


def _row(sock: Socket, fd: int | None) -> SsRow:
    recv_q, send_q = _queues(sock)
    local, local_port = _endpoint(sock, sock.local_addr, sock.local_port, sock.device)
    remote = sock.remote_addr if sock.remote_addr is not None else bytes(len(sock.local_addr))
    peer, peer_port = _endpoint(sock, remote, sock.remote_port, None)
    process = ""
    if fd is not None and sock.process is not None and sock.pid is not None:
        process = f' users:(("{sock.process}",pid={sock.pid},fd={fd}))'
    return SsRow(str(sock.proto), sock.state.value, f"{recv_q:<6d}", f"{send_q:<6d}",
                 local, local_port, peer, peer_port, process)


def _endpoint(sock: Socket, addr: bytes, port: int, device: str | None) -> tuple[str, str]:
    """inet_addr_print: ``*`` for a dual-stack ``::``, brackets around IPv6."""
    if sock.family == 6 and not sock.v6only and addr == V6_ANY:
        text = "*"
    elif sock.family == 6:
        text = f"[{format_addr(addr)}]"
    else:
        text = format_addr(addr)
    if device is not None:
        text += f"%{device}"
    return text + ":", str(port) if port else "*"


def _queues(sock: Socket) -> tuple[int, int]:
    """(Recv-Q, Send-Q) as tcp_diag_get_info / udp_diag report them."""
    if sock.proto is Proto.UDP:
        return 0, 0
    if sock.state is TcpState.LISTEN:
        return len(getattr(sock.tcb, "accept_queue", ())), sock.backlog or 0
    if sock.state is TcpState.TIME_WAIT or sock.state is TcpState.SYN_RECV:
        return 0, 0
    return sum(len(chunk) for chunk in sock.inbox or ()), 0


def _fd_numbers(kernel: Kernel) -> dict[Socket, int]:
    """fd of each socket a process holds: 3, 4, ... per pid, in socket order.

    A connection waiting in its listener's accept queue has no fd yet.
    """
    fds: dict[Socket, int] = {}
    next_fd: dict[int, int] = {}
    for sock in _owned(kernel):
        if sock.pid is None:
            continue
        fd = next_fd.get(sock.pid, FIRST_FD)
        fds[sock] = fd
        next_fd[sock.pid] = fd + 1
    return fds


def _owned(kernel: Kernel) -> Iterator[Socket]:
    """Sockets some process holds an fd for, in creation order (``sid``)."""
    waiting = {id(child) for listener in kernel.sockets if listener.state is TcpState.LISTEN
               for child in getattr(listener.tcb, "accept_queue", ())}
    candidates = {id(s): s for s in [*kernel.sockets, *kernel.tcp.established.values()]}
    for sock in sorted(candidates.values(), key=lambda s: s.sid):
        if id(sock) in waiting or sock.state in (TcpState.SYN_RECV, TcpState.TIME_WAIT):
            continue
        yield sock
