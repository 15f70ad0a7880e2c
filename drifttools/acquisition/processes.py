"""Process evidence of a running container, read from the host's ``/proc``.

Nothing here execs into the container, writes anything, or follows a link out of
it: every path is read with ``readlink`` and kept as text, and the only file
opened through a link is ``/proc/<pid>/exe`` itself, which the kernel resolves to
the very file the process runs (also when it was deleted or lives in a memfd).

Each process is read through a directory file descriptor of ``/proc/<pid>``. The
kernel binds that descriptor to one process: once the process is reaped, reads
through it fail instead of reaching a new process that was given the same pid.
Together with a pidfd and the start time read before and after, this is the pid
reuse guard (see :func:`read_processes`).

Run as root: reading other users' processes needs CAP_SYS_PTRACE, ``O_NOATIME``
needs CAP_FOWNER and ``/proc/<pid>/map_files`` CAP_SYS_ADMIN; what is refused
is recorded as an error of the process, never read another way.

Everything a process controls (its name, arguments, environment, paths, socket
paths) is attacker text. It is kept as data, bytes that are not UTF-8 written
``\\xNN`` by the path rule (:func:`drifttools._native.escape_path`); renderers
make it printable.
"""

from __future__ import annotations

import dataclasses
import os
import select
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from drifttools import _native
from drifttools._native import escape_path
from drifttools.acquisition.procfs import (
    PROC_TEXT_LIMIT,
    ProcStat,
    parse_stat,
    read_file,
    reason,
)
from drifttools.acquisition.sockets import namespace_sockets
from drifttools.models import DELETED_SUFFIX, MEMFD_PREFIX, OpenFile, ProcessRecord, SocketRecord

#: Executables larger than this are not hashed (an error says so).
EXE_HASH_LIMIT = 512 * 1024 * 1024
#: The error a process gets when it exited or its pid was reaped while it was read.
VANISHED = "process exited or pid reused during read"

_DELETED = DELETED_SUFFIX.encode()
_MEMFD = MEMFD_PREFIX.encode()
_DIR_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY | os.O_NOFOLLOW


def read_processes(
    pids: Iterable[int],
    *,
    env_values: bool = False,
    legacy_hashes: bool = True,
    proc: Path = Path("/proc"),
) -> tuple[tuple[ProcessRecord, ...], tuple[SocketRecord, ...]]:
    """Read each process, and the sockets of the container's network namespace(s).

    Order of volatility (RFC 3227) is the caller's job: call this before touching
    the container's filesystem. ``proc`` must be the procfs of this process's pid
    namespace (pidfds are opened by number).

    Per process, in this order: a pidfd is opened, then ``/proc/<pid>``, then
    ``stat`` and ``status`` are read (the identity: pid, ppid, ids, start time),
    then everything else, then ``stat`` again. Policy when a process goes away:

    * It is **dropped** (no record) when it was gone before its identity could be
      read: no such pid, or ``stat``/``status`` unreadable, or it had exited when
      its ``/proc`` directory was opened and started too recently to prove that
      the directory is still the same process.
    * It is **kept**, with what was read and the error :data:`VANISHED`, when it
      exited or was reaped while it was read. Reads go through the ``/proc/<pid>``
      descriptor, which the kernel ties to that one process, so nothing of a later
      process with the same pid is attached; should the start time read at the end
      differ anyway, only the identity is kept.
    * A zombie (exited before the read, not yet reaped) is a normal record in
      state ``Z``; what it no longer has (exe, cwd) is listed in its errors.

    Nothing raises for one process: each read that fails adds ``"<what>: <reason>"``
    to the record's ``errors``.

    ``libraries`` are the files mapped executable, in map order, without the
    executable itself and without pseudo mappings (``[vdso]``), each path exactly
    as the kernel links it: a file deleted since it was mapped keeps the kernel's
    ``" (deleted)"`` suffix and a memfd reads ``/memfd:<name> (deleted)``, so the
    evidence stays in the path
    (:func:`~drifttools.analysis.process_tags.tag_processes` strips it to look it up).

    ``env_names`` lists the names of the environment in order (duplicates kept);
    ``env`` holds the values only with ``env_values=True`` (they can be secrets),
    the first value of a duplicated name.

    Sockets are read once per distinct network namespace, from the first process
    in it (``net/tcp``, ``tcp6``, ``udp``, ``udp6``, ``unix``); each carries the
    pids whose descriptors hold it, and each process the sockets it holds. A
    container on the host network shows the host's sockets.
    """
    scan = _Scan(proc, _Clock.read(proc), env_values, legacy_hashes=legacy_hashes)
    holders: dict[int, set[int]] = {}
    read: list[tuple[ProcessRecord, set[int]]] = []
    for pid in dict.fromkeys(pids):
        got = _read_process(pid, scan)
        if got is None:
            continue
        record, inodes = got
        for inode in inodes:
            holders.setdefault(inode, set()).add(record.pid)
        read.append((record, inodes))

    sockets = tuple(
        dataclasses.replace(sock, pids=tuple(sorted(holders.get(sock.inode, ()))))
        if sock.inode
        else sock
        for table in scan.tables.values()
        for sock in table
    )
    processes = tuple(
        dataclasses.replace(record, sockets=tuple(s for s in sockets if s.inode in inodes))
        if inodes
        else record
        for record, inodes in read
    )
    return processes, sockets


@dataclass(frozen=True, slots=True)
class _Clock:
    """How to turn start ticks into time: the boot time and the tick rate."""

    boot: datetime
    hz: int

    @classmethod
    def read(cls, proc: Path) -> _Clock:
        btime = 0
        for line in read_file(os.fspath(proc / "stat")).split(b"\n"):
            if line.startswith(b"btime "):
                btime = int(line.split()[1])
        return cls(datetime.fromtimestamp(btime, UTC), os.sysconf("SC_CLK_TCK"))

    def started_at(self, ticks: int) -> str:
        moment = self.boot + timedelta(microseconds=ticks * 1_000_000 // self.hz)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def now_ticks(self) -> int:
        """Clock ticks since boot now, on the clock the kernel stamps start times with."""
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * self.hz // 1_000_000_000


def _status_ids(raw: bytes) -> dict[bytes, list[int]]:
    """The numeric lines of ``/proc/<pid>/status`` that the record needs."""
    found = {}
    for line in raw.split(b"\n"):
        key, _, value = line.partition(b":")
        if key in (b"Uid", b"Gid", b"NSpid"):
            found[key] = [int(number) for number in value.split()]
    return found


class _ProcessDir:
    """Reads of one process through its ``/proc/<pid>`` directory descriptor."""

    def __init__(self, fd: int, errors: list[str]) -> None:
        self.fd = fd
        self.errors = errors

    def read(self, name: str, *, quiet: bool = False) -> bytes | None:
        try:
            raw = read_file(name, self.fd)
        except OSError as exc:
            if not quiet:
                self.errors.append(f"{name}: {reason(exc)}")
            return None
        if len(raw) > PROC_TEXT_LIMIT:
            self.errors.append(f"{name}: truncated at {PROC_TEXT_LIMIT} bytes")
            raw = raw[:PROC_TEXT_LIMIT]
        return raw

    def readlink(self, name: str, *, within: tuple[str, int] | None = None) -> bytes | None:
        """The link ``name``, or in the subdirectory ``within`` (its name and descriptor)."""
        folder, fd = within or ("", self.fd)
        try:
            return os.readlink(name.encode(), dir_fd=fd)
        except OSError as exc:
            self.errors.append(f"{folder}{'/' if folder else ''}{name}: {reason(exc)}")
            return None

    def stat(self) -> ProcStat | None:
        raw = self.read("stat", quiet=True)
        try:
            return None if raw is None else parse_stat(raw)
        except (ValueError, IndexError):
            return None


@dataclass
class _Scan:
    """What one :func:`read_processes` call shares between its processes."""

    proc: Path
    clock: _Clock
    env_values: bool
    tables: dict[bytes, list[SocketRecord]] = field(default_factory=dict)  # by net namespace
    legacy_hashes: bool = True
    # digests by the file's identity, so that 100 workers of one binary hash it once
    hashes: dict[tuple[int, ...], ExeDigests] = field(default_factory=dict)


def _read_process(pid: int, scan: _Scan) -> tuple[ProcessRecord, set[int]] | None:
    errors: list[str] = []
    before = scan.clock.now_ticks()
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as exc:
        pidfd = None
        errors.append(f"pidfd_open: {reason(exc)}")
    try:
        try:
            dirfd = os.open(os.fspath(scan.proc / str(pid)), _DIR_FLAGS)
        except OSError:
            return None
        try:
            # A pidfd still open on a live process watches for its exit during the read.
            watch = pidfd if pidfd is not None and not _exited(pidfd) else None
            directory = _ProcessDir(dirfd, errors)
            return _read_bound(pid, directory, watch, before, scan)
        finally:
            os.close(dirfd)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _exited(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _read_bound(
    pid: int,
    d: _ProcessDir,
    watch: int | None,
    before: int,
    scan: _Scan,
) -> tuple[ProcessRecord, set[int]] | None:
    first = d.stat()
    status = d.read("status", quiet=True)
    if first is None or status is None:
        return None
    # The directory is this pid's process if that process was alive after the
    # directory was opened, or started before the pidfd was (a later process
    # holding the same number cannot have).
    if watch is None and first.start_ticks >= before:
        return None
    try:
        ids = _status_ids(status)
    except ValueError:
        return None
    uids = ids.get(b"Uid", [])
    gids = ids.get(b"Gid", [])
    if len(uids) < 2 or len(gids) < 2:
        return None
    nspid = ids.get(b"NSpid")
    identity = ProcessRecord(
        pid=pid,
        ns_pid=nspid[-1] if nspid else None,
        ppid=first.ppid,
        uid=uids[0],
        euid=uids[1],
        gid=gids[0],
        egid=gids[1],
        started_at=scan.clock.started_at(first.start_ticks),
        start_ticks=first.start_ticks,
        comm=escape_path(first.comm),
        cmdline=(),
        state=first.state,
        exe=None,
        exe_state="unreadable",
        exe_sha256=None,
        exe_size=None,
        cwd=None,
    )

    exe_link = d.readlink("exe")
    exe, exe_state = _exe_state(exe_link)
    digests = _hash_exe(d, scan) if exe_link is not None else _NO_DIGESTS
    cwd = d.readlink("cwd")
    fds = _open_files(d)
    inodes = {int(f.target[8:-1]) for f in fds if f.kind == "socket"}
    libraries = _libraries(d, exe_link)
    env_names, env = _environment(d, scan.env_values)
    cmdline = d.read("cmdline")
    _read_sockets(d, scan.tables)

    last = d.stat()
    if last is not None and last.start_ticks != first.start_ticks:
        return dataclasses.replace(identity, errors=(*d.errors, VANISHED)), set()
    if last is None or (watch is not None and _exited(watch)):
        d.errors.append(VANISHED)
    record = dataclasses.replace(
        identity,
        cmdline=_split_nul(cmdline or b""),
        exe=exe,
        exe_state=exe_state,
        exe_sha256=digests.sha256,
        exe_size=digests.size,
        exe_md5=digests.md5,
        exe_sha1=digests.sha1,
        cwd=None if cwd is None else escape_path(cwd),
        fds=fds,
        libraries=libraries,
        env_names=env_names,
        env=env,
        errors=tuple(d.errors),
    )
    return record, inodes


def _exe_state(link: bytes | None) -> tuple[str | None, str]:
    if link is None:
        return None, "unreadable"
    if link.endswith(_DELETED):
        path = escape_path(link.removesuffix(_DELETED))
        return path, "memfd" if link.startswith(_MEMFD) else "deleted"
    return escape_path(link), "present"


class ExeDigests(NamedTuple):
    """The digests of a process's executable (MD5 and SHA-1 when asked) and its size."""

    sha256: str | None
    md5: str | None
    sha1: str | None
    size: int | None


_NO_DIGESTS = ExeDigests(None, None, None, None)


def _hash_exe(d: _ProcessDir, scan: _Scan) -> ExeDigests:
    """Hash the file the process runs, opened through ``/proc/<pid>/exe`` (never by path),
    in one native read (MD5 and SHA-1 beside the SHA-256 when the scan asks for them).

    A file already hashed in this scan (same device, inode, size, mtime and ctime:
    any write changes the ctime) is not read again."""
    try:
        fd = os.open("exe", os.O_RDONLY | os.O_NOATIME | os.O_CLOEXEC, dir_fd=d.fd)
    except OSError as exc:
        d.errors.append(f"exe: open: {reason(exc)}")
        return _NO_DIGESTS
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            d.errors.append("exe: not a regular file")
            return _NO_DIGESTS._replace(size=info.st_size)
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if identity in scan.hashes:
            return scan.hashes[identity]
        if info.st_size > EXE_HASH_LIMIT:
            d.errors.append(f"exe: {info.st_size} bytes, over the {EXE_HASH_LIMIT} byte limit")
            return _NO_DIGESTS._replace(size=info.st_size)
        sha256, md5, sha1, size = _native.hash_fd(fd, legacy_hashes=scan.legacy_hashes)
        if size > EXE_HASH_LIMIT:
            d.errors.append(f"exe: grew over the {EXE_HASH_LIMIT} byte limit while read")
            return _NO_DIGESTS._replace(size=info.st_size)
        scan.hashes[identity] = ExeDigests(sha256, md5, sha1, size)
        return scan.hashes[identity]
    except OSError as exc:
        d.errors.append(f"exe: read: {reason(exc)}")
        return _NO_DIGESTS
    finally:
        os.close(fd)


def _open_files(d: _ProcessDir) -> tuple[OpenFile, ...]:
    try:
        fd_dir = os.open("fd", _DIR_FLAGS, dir_fd=d.fd)
    except OSError as exc:
        d.errors.append(f"fd: {reason(exc)}")
        return ()
    try:
        names = sorted((n for n in os.listdir(fd_dir) if n.isascii() and n.isdigit()), key=int)
        found = []
        for name in names:
            target = d.readlink(name, within=("fd", fd_dir))
            if target is not None:
                found.append(OpenFile(int(name), _fd_kind(target), escape_path(target)))
        return tuple(found)
    except OSError as exc:
        d.errors.append(f"fd: {reason(exc)}")
        return ()
    finally:
        os.close(fd_dir)


def _fd_kind(target: bytes) -> str:
    if target.startswith(b"socket:["):
        return "socket"
    if target.startswith(b"pipe:["):
        return "pipe"
    if target.startswith(_MEMFD) and target.endswith(_DELETED):
        return "memfd"
    if target.startswith(b"anon_inode:"):
        return "anon"
    if target.startswith(b"/"):
        return "file"
    return "other"


def _libraries(d: _ProcessDir, exe_link: bytes | None) -> tuple[str, ...]:
    """Files mapped executable, each path as ``map_files/`` links it (exact bytes)."""
    raw = d.read("maps")
    if raw is None:
        return ()
    exact: dict[tuple[bytes, bytes, bytes], bytes] = {}
    found: dict[bytes, None] = {}
    fallback_noted = False
    for line in raw.split(b"\n"):
        fields = line.split(None, 5)
        if len(fields) < 6 or fields[1][2:3] != b"x" or not fields[5].startswith(b"/"):
            continue  # not executable, anonymous, or a pseudo mapping such as [vdso]
        span, _perms, _offset, device, inode, text = fields
        key = (device, inode, text)
        if key not in exact:
            start, _, end = span.partition(b"-")
            name = f"map_files/{int(start, 16):x}-{int(end, 16):x}"
            try:
                exact[key] = os.readlink(name.encode(), dir_fd=d.fd)
            except OSError as exc:
                # maps writes a newline in a name as \012; keep its text as evidence
                if not fallback_noted:
                    d.errors.append(f"{name}: {reason(exc)}; paths as maps writes them")
                    fallback_noted = True
                exact[key] = text
        if exact[key] != exe_link:
            found[exact[key]] = None
    return tuple(escape_path(path) for path in found)


def _environment(d: _ProcessDir, values: bool) -> tuple[tuple[str, ...], dict[str, str] | None]:
    raw = d.read("environ")
    if raw is None:
        return (), None
    names = []
    env: dict[str, str] = {}
    for entry in _split_nul(raw):
        name, _, value = entry.partition("=")
        names.append(name)
        env.setdefault(name, value)
    return tuple(names), env if values else None


def _split_nul(raw: bytes) -> tuple[str, ...]:
    """NUL-separated strings (``cmdline``, ``environ``) as text, the final NUL optional."""
    if not raw:
        return ()
    return tuple(escape_path(part) for part in raw.removesuffix(b"\0").split(b"\0"))


def _read_sockets(d: _ProcessDir, tables: dict[bytes, list[SocketRecord]]) -> None:
    """The sockets of the process's network namespace, unless already read.

    A namespace whose tables could not be read (:func:`namespace_sockets` says
    which count) is tried again with the next process in it.
    """
    namespace = d.readlink("ns/net")
    if namespace is None or namespace in tables:
        return
    table = namespace_sockets(d.read)
    if table is not None:
        tables[namespace] = table
