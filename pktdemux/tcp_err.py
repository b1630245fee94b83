"""ICMP and ICMPv6 errors about a TCP segment the host sent
(net/ipv4/tcp_ipv4.c:tcp_v4_err, net/ipv6/tcp_ipv6.c:tcp_v6_err).

The error quotes the host's segment: its addresses and ports find the
connection in the established table (the quote's source is the local end),
its sequence number must lie in [SND.UNA, SND.NXT].  A connect() still in
SYN_SENT fails at once with the errno the error converts to
(icmp_err_convert, icmpv6_err_convert: ECONNREFUSED for a port unreachable,
EHOSTUNREACH for a host or address unreachable...): the socket is CLOSE,
out of the tables, its SO_ERROR set.

Not modelled: the soft errors of synchronized connections (sk_err_soft,
which SO_ERROR does not show), path-MTU updates (fragmentation needed,
packet too big), RFC 6069 RTO reverts, and errors about a request socket
(tcp_req_err).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from .sockets import V4_MAPPED_PREFIX, TcpState
from .tcp_segment import MOD32
from .verdict import Verdict, deliver

if TYPE_CHECKING:
    from .kernel import Kernel
    from .sockets import Socket

HANDLER = "tcp icmp error"

_ICMP_DEST_UNREACH, _ICMP_TIME_EXCEEDED, _ICMP_PARAMETERPROB = 3, 11, 12
_ICMP_FRAG_NEEDED = 4
#: net/ipv4/icmp.c icmp_err_convert, by Destination Unreachable code (0..15)
_UNREACH4 = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOPROTOOPT, errno.ECONNREFUSED, errno.EMSGSIZE,
             errno.EOPNOTSUPP, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENONET, errno.ENETUNREACH,
             errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTUNREACH, errno.EHOSTUNREACH,
             errno.EHOSTUNREACH)
_ICMPV6_DEST_UNREACH, _ICMPV6_PKT_TOOBIG, _ICMPV6_TIME_EXCEED, _ICMPV6_PARAMPROB = 1, 2, 3, 4
#: net/ipv6/icmp.c tab_unreach, by Destination Unreachable code (0..6)
_UNREACH6 = (errno.ENETUNREACH, errno.EACCES, errno.EHOSTUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED,
             errno.EACCES, errno.EACCES)


def error_number(version: int, type_: int, code: int) -> int | None:
    """The errno an ICMP (``version`` 4) or ICMPv6 error converts to for
    TCP, or None when tcp_v4_err / tcp_v6_err ignores it or only updates
    the path MTU."""
    if version == 4:
        if type_ == _ICMP_DEST_UNREACH:
            return None if code == _ICMP_FRAG_NEEDED or code >= len(_UNREACH4) else _UNREACH4[code]
        if type_ == _ICMP_TIME_EXCEEDED:
            return errno.EHOSTUNREACH
        if type_ == _ICMP_PARAMETERPROB:
            return errno.EPROTO
        return None  # source quench, redirect
    if type_ == _ICMPV6_DEST_UNREACH:
        return _UNREACH6[code] if code < len(_UNREACH6) else errno.EPROTO
    if type_ == _ICMPV6_TIME_EXCEED:
        return errno.EHOSTUNREACH
    if type_ == _ICMPV6_PARAMPROB:
        return errno.EPROTO
    return None  # packet too big: path MTU only


def receive_error(kernel: Kernel, version: int, type_: int, code: int, quote: bytes) -> Verdict | None:
    """An ICMP/ICMPv6 error whose ``quote`` (from the quoted IP header on)
    is a TCP segment: what TCP does with it.  None when the quote is not TCP
    or too short (the caller's generic handling applies)."""
    parsed = _quoted(version, quote)
    if parsed is None:
        return None
    local, lport, remote, rport, seq = parsed
    sock = kernel.tcp.established.get((local, lport, remote, rport))
    kind = f"ICMP{'v6' if version == 6 else ''} error {type_}/{code}"
    if sock is None:
        return deliver((), f"{kind} for a TCP segment of no connection: ignored", handler=HANDLER)
    tcb = sock.tcb
    if sock.state is not TcpState.SYN_SENT:
        return deliver((sock,), f"{kind} for a {sock.state.name} connection: no state change (not modelled)",
                       handler=HANDLER)
    if (seq - tcb.snd_una) & MOD32 > (tcb.snd_nxt - tcb.snd_una) & MOD32:
        return deliver((), f"{kind} quoting a sequence number outside [SND.UNA, SND.NXT]: ignored "
                       "(OUTOFWINDOWICMPS)", handler=HANDLER)
    error = error_number(version, type_, code)
    if error is None:
        return deliver((sock,), f"{kind} for a connecting socket: no error", handler=HANDLER)
    _connect_failed(kernel, sock, error)
    return deliver((sock,), f"{kind} for the SYN: connect() fails with {errno.errorcode[error]}",
                   handler=HANDLER)


def _connect_failed(kernel: Kernel, sock: Socket, error: int) -> None:
    from . import tcp_synsent

    tcp_synsent.done(kernel, sock, error)


def _quoted(version: int, quote: bytes) -> tuple[bytes, int, bytes, int, int] | None:
    """(local address, local port, remote address, remote port, sequence
    number) of the quoted TCP segment, IPv4 addresses plain."""
    if version == 4:
        if len(quote) < 20 or quote[0] >> 4 != 4 or quote[9] != 6:
            return None
        ihl = (quote[0] & 0x0F) * 4
        src, dst, tcp = quote[12:16], quote[16:20], quote[ihl:]
    else:
        if len(quote) < 40 or quote[0] >> 4 != 6 or quote[6] != 6:
            return None
        src, dst, tcp = _plain(quote[8:24]), _plain(quote[24:40]), quote[40:]
    if len(tcp) < 8:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", tcp)
    return src, sport, dst, dport, seq


def _plain(addr: bytes) -> bytes:
    return addr[12:] if addr.startswith(V4_MAPPED_PREFIX) else addr
