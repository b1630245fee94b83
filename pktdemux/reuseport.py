"""SO_REUSEPORT groups (net/core/sock_reuseport.c), shared by TCP and UDP.

A group is the set of sockets that may share one (address, port): same
protocol, family, V6ONLY setting, bound device, owner uid and identical bound
address, all with SO_REUSEPORT (inet_reuseport_add_sock, spec §2.3).
"""

from __future__ import annotations

from .sockets import Socket, TcpState


class ReuseportGroup:
    """The members of one SO_REUSEPORT group, in the kernel's array order.

    Members are appended in listen()/bind() order (__reuseport_add_sock); a
    leaving member is replaced by the last one (__reuseport_detach_sock), so
    closing a socket reorders the array as on Linux.
    """

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: list[Socket] = []

    def add(self, sock: Socket) -> None:
        """Append ``sock`` (__reuseport_add_sock)."""
        self.members.append(sock)

    def remove(self, sock: Socket) -> None:
        """Detach ``sock``, moving the last member into its slot (__reuseport_detach_sock).

        Raises:
            ValueError: if ``sock`` is not a member.
        """
        i = self.members.index(sock)
        last = self.members.pop()
        if i < len(self.members):
            self.members[i] = last

    def select(self, flow_hash: int) -> Socket:
        """The member that receives a flow with this 32-bit hash.

        index = reciprocal_scale(hash, n) = (hash × n) >> 32; from there, the
        first member that is not a connected (ESTABLISHED) UDP socket
        (reuseport_select_sock_by_hash, spec §2.3).

        Raises:
            IndexError: for an empty group.
        """
        members = self.members
        n = len(members)
        i = (flow_hash * n) >> 32
        for step in range(n):
            sock = members[(i + step) % n]
            if sock.state is not TcpState.ESTABLISHED:
                return sock
        return members[i]

    def __len__(self) -> int:
        return len(self.members)


def same_group(a: Socket, b: Socket) -> bool:
    """Whether ``b`` may join ``a``'s group (inet_reuseport_add_sock, spec §2.3)."""
    return (
        a.reuseport and b.reuseport
        and a.proto == b.proto
        and a.family == b.family
        and a.v6only == b.v6only
        and a.device == b.device
        and a.uid == b.uid
        and a.local_port == b.local_port
        and a.local_addr == b.local_addr
    )
