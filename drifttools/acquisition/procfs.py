"""Reading ``/proc`` files: bounded, never through a link, and the ``stat`` line parsed.

Shared by the process reader, the cgroup membership and the pid-reuse guards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: A ``/proc`` text (cmdline, environ, maps, socket tables) is read up to this size.
PROC_TEXT_LIMIT = 64 * 1024 * 1024
#: How much one ``read`` asks for.
CHUNK = 1024 * 1024

_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW


def read_file(name: str, dir_fd: int | None = None) -> bytes:
    """The bytes of ``name`` (relative to ``dir_fd`` when given), no link followed.

    Reading stops once more than :data:`PROC_TEXT_LIMIT` bytes were read (one
    :data:`CHUNK` past it at most): the caller says when that is too much.
    """
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        parts = []
        size = 0
        while size <= PROC_TEXT_LIMIT and (chunk := os.read(fd, CHUNK)):
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def reason(exc: OSError) -> str:
    """Why a read failed, in the words of the error a record keeps."""
    return exc.strerror or type(exc).__name__


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` a record needs."""

    comm: bytes
    state: str
    ppid: int
    start_ticks: int


def parse_stat(raw: bytes) -> ProcStat:
    """``/proc/<pid>/stat``: the name sits in parentheses and may hold ``)`` and spaces,
    so the fields are counted from the last ``)``."""
    close = raw.rindex(b")")
    fields = raw[close + 2 :].split()  # fields[0] is field 3, the state
    return ProcStat(
        comm=raw[raw.index(b"(") + 1 : close],
        state=fields[0].decode("ascii"),
        ppid=int(fields[1]),
        start_ticks=int(fields[19]),
    )
