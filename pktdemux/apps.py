"""Applications on emulated sockets: a callable that answers what a socket receives.

>>> serve(listener, echo)   # doctest: +SKIP

After :meth:`pktdemux.host.Host.receive` delivers data to a served socket
(or to a connection accepted from a served listener), the application reads
it (``recv()``), and what it returns is sent: the packets are in
``Received.sent``.

The core has no send path yet, so this module builds the packets itself,
from the socket's state, as Linux's would be built:

* TCP: one segment, flags PSH|ACK, SEQ = SND.NXT, ACK = RCV.NXT (the data
  just received is acknowledged), the window last advertised, timestamps
  when negotiated; SND.NXT advances by the length (tcp_sendmsg,
  tcp_transmit_skb).  Not modelled: the kernel's separate ACK before the
  application answers, segmentation beyond one MSS, retransmission.
* UDP: one datagram from the socket's port to the sender; the source
  address is the one the datagram was sent to (what routing picks on a
  host with one address per family); DF set; IPv4 ID from the per-destination
  generator (ip_select_ident).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import tcp_delack, tcp_rtx
from .explain import peek
from .sockets import Proto, Socket
from .tcp_options import timestamp_option
from .tcp_output import tcp_segment_bytes, tsval
from .wire import PROTO_TCP, build_ipv4, build_ipv6, transport_checksum

if TYPE_CHECKING:
    from .host import HostSocket
    from .kernel import Kernel

App = Callable[[bytes], bytes | None]
PSH_ACK = 0x18
PROTO_UDP = 17


def echo(data: bytes) -> bytes:
    """The echo service (RFC 862): answers with what it received."""
    return data


def serve(sock: HostSocket, app: App = echo) -> None:
    """Make ``app`` answer what ``sock`` (or a connection accepted from it) receives."""
    sock.app = app


def app_of(host_sock: HostSocket) -> App | None:
    """The application serving a socket: its own, or its listener's."""
    if host_sock.app is not None:
        return host_sock.app  # type: ignore[no-any-return]
    parent = host_sock.sock.parent
    return host_sock.host.wrap(parent).app if parent is not None else None


def answer(host_sock: HostSocket, packet: bytes) -> tuple[bytes, ...]:
    """Let the socket's application read what arrived and send its answer.

    Args:
        packet: the packet just delivered (its source is a UDP answer's destination).

    Returns:
        The packets sent, as IP bytes (none when the app returns nothing).
    """
    app = app_of(host_sock)
    if app is None:
        return ()
    kernel = host_sock.host.kernel
    sent: list[bytes] = []
    while (data := host_sock.recv()) is not None:
        reply = app(data)
        if not reply:
            continue
        if host_sock.sock.proto is Proto.TCP:
            sent.append(tcp_data(kernel, host_sock.sock, reply))
        else:
            sent.append(udp_datagram(kernel, host_sock.sock, packet, reply))
    return tuple(sent)


def tcp_data(kernel: Kernel, sock: Socket, data: bytes) -> bytes:
    """A PSH|ACK segment carrying ``data`` on an established connection.

    Raises:
        ValueError: the connection's sequence numbers are not known yet.
    """
    tcb = sock.tcb
    if tcb is None or sock.remote_addr is None:
        raise ValueError(f"{sock.label}: no synchronized connection to send on")
    options = timestamp_option(tsval(kernel, tcb), tcb.ts_recent) if tcb.ts_ok else b""
    window = min(tcb.rcv_wnd >> tcb.rcv_wscale, 0xFFFF)
    src, dst = _plain(sock.local_addr), _plain(sock.remote_addr)
    segment = tcp_segment_bytes(src, dst, sock.local_port, sock.remote_port, tcb.snd_nxt, tcb.rcv_nxt,
                                PSH_ACK, window, options, data)
    tcp_delack.data_sent(kernel, tcb)  # tcp_event_data_sent: an answer within ato makes it interactive
    tcp_delack.ack_sent(tcb)  # tcp_event_ack_sent: a pending delayed ACK rides on the data
    tcp_rtx.data_sent(kernel, tcb, tcb.snd_nxt, (tcb.snd_nxt + len(data)) & 0xFFFFFFFF)  # for its ACK's RTT sample
    tcb.snd_nxt = (tcb.snd_nxt + len(data)) & 0xFFFFFFFF
    if len(src) == 4:
        ident, tcb.ip_id = tcb.ip_id, (tcb.ip_id + 1) & 0xFFFF
        return build_ipv4(src=src, dst=dst, proto=PROTO_TCP, payload=segment,
                          ttl=kernel.sysctls.int("net.ipv4.ip_default_ttl"), tos=tcb.tos, ident=ident, df=True)
    return _ipv6(kernel, src, dst, PROTO_TCP, segment, sock.local_port, sock.remote_port)


def udp_datagram(kernel: Kernel, sock: Socket, request: bytes, data: bytes) -> bytes:
    """A datagram from ``sock`` back to the sender of ``request``."""
    flow = peek(request)
    if flow is None:
        raise ValueError("cannot tell where the request came from")
    src, dst = flow.dst, flow.src
    length = 8 + len(data)
    header = sock.local_port.to_bytes(2, "big") + flow.sport.to_bytes(2, "big") + length.to_bytes(2, "big")
    csum = transport_checksum(src, dst, PROTO_UDP, header + b"\0\0" + data) or 0xFFFF  # RFC 768: 0 is sent as all ones
    segment = header + csum.to_bytes(2, "big") + data
    if len(src) == 4:
        return build_ipv4(src=src, dst=dst, proto=PROTO_UDP, payload=segment, df=True,
                          ttl=kernel.sysctls.int("net.ipv4.ip_default_ttl"), ident=kernel.entropy.ip_id(dst, PROTO_UDP))
    return _ipv6(kernel, src, dst, PROTO_UDP, segment, sock.local_port, flow.sport)


def _ipv6(kernel: Kernel, src: bytes, dst: bytes, proto: int, payload: bytes, sport: int, dport: int) -> bytes:
    label = 0
    if kernel.sysctls.int("net.ipv6.auto_flowlabels"):
        label = kernel.entropy.flow_label(src, dst, sport, dport, proto)
    return build_ipv6(src=src, dst=dst, next_header=proto, payload=payload,
                      hop_limit=kernel.sysctls.int("net.ipv6.conf.all.hop_limit"), flow_label=label)


def _plain(addr: bytes) -> bytes:
    """The IPv4 address inside a v4-mapped one: a dual-stack socket talks IPv4 on the wire."""
    return addr[12:] if len(addr) == 16 and addr[:12] == bytes(10) + b"\xff\xff" else addr
