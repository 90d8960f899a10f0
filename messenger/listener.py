"""Stop taking new connections on a listening socket without resetting the queued ones.

When the last descriptor of a listening socket is closed, the kernel resets every
connection waiting in its accept queue: clients that have already sent their request see
ECONNRESET (issue 11, item 20). Closing cleanly therefore needs two steps: first stop the
kernel from completing new handshakes, then accept and serve what is queued, then close.
Only a socket filter does the first step without closing: this classic BPF program drops
TCP segments that have SYN set and ACK clear (new connection attempts) and lets every
other segment through, so handshakes already under way complete and are served. A client
whose SYN is dropped retries it; by then the socket is closed and the retry is refused
(ECONNREFUSED: nothing was sent, nothing to reset). Neither gunicorn nor gevent offers
this, hence the hand-written filter. Linux only (SO_ATTACH_FILTER); elsewhere a no-op."""

import ctypes
import socket
import struct
import sys
from collections.abc import Iterable

SO_ATTACH_FILTER = 26
# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}; a socket filter sees the TCP header.
_DROP_NEW_CONNECTIONS = [
    (0x30, 0, 0, 13),  # ldb [13]          TCP flags byte
    (0x54, 0, 0, 0x12),  # and #0x12       SYN|ACK bits
    (0x15, 0, 1, 0x02),  # jeq #0x02       SYN without ACK?
    (0x06, 0, 0, 0),  # ret #0             yes: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1   no: keep the whole segment
]


def refuse_new_connections(listeners: Iterable) -> None:
    """Attach the filter to each TCP listener (gunicorn's listener objects or sockets)."""
    if not sys.platform.startswith("linux"):
        return
    code = b"".join(struct.pack("HBBI", *insn) for insn in _DROP_NEW_CONNECTIONS)
    buffer = ctypes.create_string_buffer(code)
    # struct sock_fprog {unsigned short len; struct sock_filter *filter}; the kernel copies it.
    program = struct.pack("HP", len(_DROP_NEW_CONNECTIONS), ctypes.addressof(buffer))
    for listener in listeners:
        sock = getattr(listener, "sock", listener)
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
