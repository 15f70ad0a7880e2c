"""Pid-reuse guards: reads through ``/proc/<pid>`` held to the one process they mean.

A pid can be reused once its process exits, so a ``/proc/<pid>`` path may reach
another process than the one recorded, possibly the host's. Every read through
such a path is bracketed by a check of the process's start time (clock ticks
after boot: with the pid, it identifies the process):

* :class:`RootGuard` ties ``/proc/<pid>/root`` to the container process it is
  read through: same start time, still in the container's cgroup.
* :func:`opened_exe` opens ``/proc/<pid>/exe`` of a recorded process, the one way
  its executable is read after the snapshot (never by path: it may be deleted,
  a memfd, or a symlink on the host).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from drifttools.acquisition.cgroups import in_container_cgroup
from drifttools.acquisition.procfs import parse_stat, read_file, reason
from drifttools.errors import ProcessGone, RootfsError
from drifttools.models import ProcessRecord


@dataclass(frozen=True)
class RootGuard:
    """Ties ``/proc/<pid>/root`` to the container process it is read through.

    A pid can be reused once its process exits; ``/proc/<pid>/root`` would then
    be another process's root, possibly the host's. Every read through it is
    bracketed by :meth:`check`: same start time, still in the container's cgroup.
    """

    container_id: str
    pid: int
    start_ticks: int

    @property
    def root(self) -> str:
        return f"/proc/{self.pid}/root"

    @classmethod
    def take(cls, container_id: str, pid: int) -> RootGuard:
        """The guard of ``pid`` now; it must belong to the container."""
        guard = cls(container_id, pid, _start_ticks(f"/proc/{pid}/stat") or -1)
        guard.check()
        return guard

    def check(self) -> None:
        """Raise :class:`RootfsError` unless ``pid`` is still the container's process."""
        try:
            cgroup = read_file(f"/proc/{self.pid}/cgroup")
        except OSError:
            cgroup = b""
        ticks = _start_ticks(f"/proc/{self.pid}/stat")
        alive = ticks == self.start_ticks and self.start_ticks >= 0
        if not alive or not in_container_cgroup(cgroup, self.container_id.encode()):
            raise RootfsError(
                f"process {self.pid} is no longer the container's: its /proc root is not read"
            )


@contextmanager
def opened_exe(process: ProcessRecord, *, proc: str = "/proc") -> Iterator[int]:
    """The executable of a recorded process, as an fd opened through ``/proc/<pid>/exe``.

    Never by path (the file may be deleted, a memfd, or a symlink on the host), and only
    while the same process lives: its start time is checked before the open and after the
    caller is done. Raises :class:`ProcessGone` otherwise (an ``OSError``).
    """
    try:
        dirfd = os.open(f"{proc}/{process.pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ProcessGone(f"process gone: {reason(exc)}") from exc
    try:
        if _start_ticks("stat", dirfd) != process.start_ticks:
            raise ProcessGone("process gone: its pid was reused since the processes were read")
        try:
            fd = os.open("exe", os.O_RDONLY | os.O_NOATIME | os.O_CLOEXEC, dir_fd=dirfd)
        except PermissionError:
            fd = os.open("exe", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            yield fd
        finally:
            os.close(fd)
        if _start_ticks("stat", dirfd) != process.start_ticks:
            raise ProcessGone("process gone while its executable was read")
    finally:
        os.close(dirfd)


def _start_ticks(stat_file: str, dir_fd: int | None = None) -> int | None:
    """The start time in a process's ``stat`` file; None when it cannot be read."""
    try:
        return parse_stat(read_file(stat_file, dir_fd=dir_fd)).start_ticks
    except (OSError, ValueError, IndexError):
        return None
