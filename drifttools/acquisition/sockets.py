"""The sockets of a network namespace, parsed from its ``/proc/<pid>/net`` tables.

``tcp``, ``tcp6``, ``udp`` and ``udp6`` give addresses, ports and states in the
kernel's hex notation; ``unix`` gives paths, written raw. Socket paths are
attacker text: kept as data, bytes that are not UTF-8 written ``\\xNN`` by the
path rule (:func:`drifttools._native.escape_path`).
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Callable

from drifttools._native import escape_path
from drifttools.models import SocketRecord

# The tables of ``/proc/<pid>/net`` read for a namespace, in this order.
_TABLES = ("tcp", "tcp6", "udp", "udp6", "unix")

# include/net/tcp_states.h
_TCP_STATES = {
    0x01: "ESTABLISHED",
    0x02: "SYN_SENT",
    0x03: "SYN_RECV",
    0x04: "FIN_WAIT1",
    0x05: "FIN_WAIT2",
    0x06: "TIME_WAIT",
    0x07: "CLOSE",
    0x08: "CLOSE_WAIT",
    0x09: "LAST_ACK",
    0x0A: "LISTEN",
    0x0B: "CLOSING",
    0x0C: "NEW_SYN_RECV",
}
_UDP_STATES = {**_TCP_STATES, 0x07: "UNCONN"}
# include/uapi/linux/net.h (socket_state); __SO_ACCEPTCON marks a listening socket.
_UNIX_STATES = {0x01: "UNCONNECTED", 0x02: "CONNECTING", 0x03: "CONNECTED", 0x04: "DISCONNECTING"}
_SO_ACCEPTCON = 0x00010000
_HEX = re.compile(rb"[0-9A-Fa-f]{1,32}")
_UNIX_LINE = re.compile(
    rb"[0-9a-fA-F]+: [0-9A-F]{8} [0-9A-F]{8} ([0-9A-F]{8}) [0-9A-F]{4} ([0-9A-F]{2}) +(\d+)"
    rb"(?: (.*))?",
)


def namespace_sockets(read: Callable[[str], bytes | None]) -> list[SocketRecord] | None:
    """Every socket of one network namespace, its tables read by ``read("net/<table>")``.

    None when ``tcp`` or ``unix`` could not be read: they always exist, so the
    namespace was not read (``tcp6`` and ``udp6`` do not exist without IPv6).
    """
    table: list[SocketRecord] = []
    complete = True
    for protocol in _TABLES:
        raw = read(f"net/{protocol}")
        if raw is None:
            complete = complete and protocol not in ("tcp", "unix")
        elif protocol == "unix":
            table.extend(unix_sockets(raw))
        else:
            table.extend(inet_sockets(protocol, raw))
    return table if complete else None


def inet_sockets(protocol: str, raw: bytes) -> list[SocketRecord]:
    """``/proc/<pid>/net/{tcp,tcp6,udp,udp6}``: one socket a line, after the header."""
    states = _UDP_STATES if protocol.startswith("udp") else _TCP_STATES
    found = []
    for line in raw.split(b"\n")[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local, _ = _endpoint(fields[1])
            remote, unset = _endpoint(fields[2])
            code = int(fields[3], 16)
            inode = int(fields[9])
        except ValueError:
            continue  # the kernel writes these lines; a malformed one is not a socket
        found.append(
            SocketRecord(
                protocol=protocol,
                state=states.get(code, f"UNKNOWN({code:02X})"),
                local=local,
                remote="" if unset else remote,
                inode=inode,
            )
        )
    return found


def _endpoint(text: bytes) -> tuple[str, bool]:
    """``0100007F:1F90`` to ``127.0.0.1:8080`` (``[::1]:8080`` for IPv6), and whether it
    is unset (all zero). The kernel writes each 32-bit word of the address in host
    byte order and the port as a number."""
    host, port = text.split(b":")
    if len(host) not in (8, 32) or not _HEX.fullmatch(host) or not _HEX.fullmatch(port):
        raise ValueError(f"address {text!r} is not {len(host)} hex digits and a hex port")
    packed = b"".join(
        int(host[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(host), 8)
    )
    number = int(port, 16)
    unset = number == 0 and not any(packed)
    if len(packed) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, packed)}:{number}", unset
    return f"[{socket.inet_ntop(socket.AF_INET6, packed)}]:{number}", unset


def unix_sockets(raw: bytes) -> list[SocketRecord]:
    """``/proc/<pid>/net/unix``. Paths are written raw, so one may hold a newline: a
    line that is not a socket line continues the previous path. (A path crafted to
    look like a whole socket line would still read as one.)"""
    lines = raw.split(b"\n")[1:]
    if lines and not lines[-1]:
        lines.pop()
    parsed: list[tuple[int, int, int, list[bytes]]] = []
    for line in lines:
        match = _UNIX_LINE.fullmatch(line)
        if match is None:
            if parsed:
                parsed[-1][3].append(line)
            continue
        flags, state, inode, path = match.groups()
        parsed.append((int(flags, 16), int(state, 16), int(inode), [path or b""]))
    return [
        SocketRecord(
            protocol="unix",
            state="LISTEN" if flags & _SO_ACCEPTCON else _unix_state(state),
            local=escape_path(b"\n".join(path)),
            remote="",
            inode=inode,
        )
        for flags, state, inode, path in parsed
    ]


def _unix_state(code: int) -> str:
    return _UNIX_STATES.get(code, f"UNKNOWN({code:02X})")
