"""Why the emulated kernel dropped a packet.

The names are those of the kernel's ``enum skb_drop_reason``
(include/net/dropreason-core.h) without the ``SKB_DROP_REASON_`` prefix, so
that a verdict reads like ``perf``/``dropwatch`` output on a real host.  A
member is added here only when some rule of the emulation produces it.
"""

from __future__ import annotations

import enum


class DropReason(enum.Enum):
    """A kernel drop reason (``enum skb_drop_reason``)."""

    #: No better reason applies (the kernel's catch-all).
    NOT_SPECIFIED = "NOT_SPECIFIED"
    #: No socket matched the packet (tcp_v4_rcv / __udp4_lib_rcv ``no_tcp_socket``).
    NO_SOCKET = "NO_SOCKET"
    #: Packet shorter than the header it claims to carry.
    PKT_TOO_SMALL = "PKT_TOO_SMALL"
    #: Bad TCP checksum.
    TCP_CSUM = "TCP_CSUM"
    #: Bad UDP checksum (or a zero UDP checksum over IPv6, RFC 8200 §8.1).
    UDP_CSUM = "UDP_CSUM"
    #: Bad ICMP/ICMPv6 checksum.
    ICMP_CSUM = "ICMP_CSUM"
    #: Bad IPv4 header checksum (ip_rcv_core).
    IP_CSUM = "IP_CSUM"
    #: Invalid IPv4/IPv6 header: version, IHL, lengths (ip_rcv_core, ip6_rcv_core).
    IP_INHDR = "IP_INHDR"
    #: Frame not addressed to this host at layer 2, or IP destination not local.
    OTHERHOST = "OTHERHOST"
    #: Martian or own source address (ip_route_input_slow, fib_validate_source).
    IP_INVALID_SOURCE = "IP_INVALID_SOURCE"
    #: Own address used as source (fib_validate_source with accept_local=0).
    IP_LOCAL_SOURCE = "IP_LOCAL_SOURCE"
    #: Martian destination (0.0.0.0/8 and the like).
    IP_INVALID_DEST = "IP_INVALID_DEST"
    #: Loopback address seen on a non-loopback device (route_localnet=0).
    IP_LOCALNET = "IP_LOCALNET"
    #: No route: destination not local and forwarding off (ip_error).
    IP_INNOROUTES = "IP_INNOROUTES"
    #: Address errors: multicast not joined, bad source for IPv6, ...
    IP_INADDRERRORS = "IP_INADDRERRORS"
    #: Unknown IP protocol / IPv6 next header and no raw socket.
    IP_NOPROTO = "IP_NOPROTO"
    #: Source-route or malformed IPv4 option (ip_rcv_options).
    IP_OPTIONS = "IP_OPTIONS"
    #: Invalid IPv6 extension header.
    IPV6_BAD_EXTHDR = "IPV6_BAD_EXTHDR"
    #: Fragment kept for reassembly (not an error; the datagram is not complete yet).
    FRAG_PENDING = "FRAG_PENDING"
    #: Reassembly timed out (ip_expire).
    FRAG_REASM_TIMEOUT = "FRAG_REASM_TIMEOUT"
    #: Held fragments thrown away because more than ipfrag_max_dist fragments
    #: from the same source came in between (ip_frag_too_far, ip_frag_reinit).
    FRAG_TOO_FAR = "FRAG_TOO_FAR"
    #: Duplicate fragment: wholly inside a run already held (inet_frag_queue_insert);
    #: an overlapping one discards its queue with NOT_SPECIFIED instead.
    DUP_FRAG = "DUP_FRAG"
    #: TCP flags invalid for the socket's state (tcp_rcv_state_process).
    TCP_FLAGS = "TCP_FLAGS"
    #: Incoming RST (never answered).
    TCP_RESET = "TCP_RESET"
    #: SYN that must not be processed (e.g. SYN on an established connection).
    TCP_INVALID_SYN = "TCP_INVALID_SYN"
    #: Data already received (entirely before RCV.NXT).
    TCP_OLD_DATA = "TCP_OLD_DATA"
    #: Data beyond the receive window.
    TCP_OVERWINDOW = "TCP_OVERWINDOW"
    #: Sequence number outside the window (tcp_sequence).
    TCP_INVALID_SEQUENCE = "TCP_INVALID_SEQUENCE"
    #: Segment ends before the last advertised window's left edge (tcp_sequence).
    TCP_OLD_SEQUENCE = "TCP_OLD_SEQUENCE"
    #: SYN-ACK acknowledging something other than our SYN (tcp_rcv_synsent_state_process).
    TCP_INVALID_ACK_SEQUENCE = "TCP_INVALID_ACK_SEQUENCE"
    #: ACK of data never sent (tcp_ack).
    TCP_ACK_UNSENT_DATA = "TCP_ACK_UNSENT_DATA"
    #: Old duplicate ACK.
    TCP_OLD_ACK = "TCP_OLD_ACK"
    #: ACK older than SND.UNA minus the largest window (tcp_ack, RFC 5961 §5.2).
    TCP_TOO_OLD_ACK = "TCP_TOO_OLD_ACK"
    #: New data after close(): the connection is reset (tcp_rcv_state_process).
    TCP_ABORT_ON_DATA = "TCP_ABORT_ON_DATA"
    #: Segment for a closed/closing socket.
    TCP_CLOSE = "TCP_CLOSE"
    #: Accept queue full (LISTENOVERFLOWS).
    TCP_LISTEN_OVERFLOW = "TCP_LISTEN_OVERFLOW"
    #: SYN queue full and SYN cookies off (LISTENDROPS).
    TCP_REQQFULLDROP = "TCP_REQQFULLDROP"
    #: Segment handled by the TIME_WAIT mini-socket and discarded.
    TCP_TIMEWAIT = "TCP_TIMEWAIT"
    #: Packet breaks a protocol rule, e.g. ICMP echo/timestamp to a broadcast
    #: address with icmp_echo_ignore_broadcasts=1 (icmp_rcv).
    INVALID_PROTO = "INVALID_PROTO"
    #: Protocol or message type the kernel has no handler for (ICMP type > 18).
    UNHANDLED_PROTO = "UNHANDLED_PROTO"
    #: UDP/ICMP payload not wanted (e.g. broadcast echo ignored); kernel frees it.
    ICMP_IGNORED = "ICMP_IGNORED"
    #: Socket receive buffer full.
    SOCKET_RCVBUFF = "SOCKET_RCVBUFF"
    #: Frame pktdemux cannot decode (unknown link type, non-IP payload):
    #: not a kernel reason, the packet never reached the IP layer.
    UNSUPPORTED_LINK = "UNSUPPORTED_LINK"
    #: Frame cut short by the capture's snap length: not a kernel reason, the
    #: packet's bytes are not all known, so the emulation cannot run it.
    CAPTURE_TRUNCATED = "CAPTURE_TRUNCATED"

    def __str__(self) -> str:
        return self.value
