"""A container's log files, found and read on the host: never through the engine's API.

A responder's runbook keeps the current and the previous logs before the container is
gone. The engine's log API can follow and block; the files cannot, so they are read
directly, read-only (``O_NOFOLLOW``, ``O_NONBLOCK``, ``O_NOATIME`` where allowed):

=====================  ===================================================================
Docker ``json-file``   ``<data-root>/containers/<id>/<id>-json.log`` and its rotations
                       ``.1``, ``.2.gz`` ...; one JSON object a line, ``time`` RFC 3339
Docker ``local``       ``<data-root>/containers/<id>/local-logs/container.log[.N[.gz]]``;
                       length-framed protobuf ``LogEntry`` records (``time_nano``)
containerd / CRI       ``/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`` and its
                       rotations ``<n>.log.<YYYYmmdd-HHMMSS>[.gz]``; ``/var/log/containers``
                       holds symlinks to them (recorded as aliases, never followed out)
=====================  ===================================================================

Each file is hashed as stored and summarized (entries, first and last time) in the same
read; a gzip rotation is decompressed on the fly for its summary, its digest is of the
compressed bytes. The entries themselves are container-controlled text: they stay in
the file (a bundle keeps its bytes) and are escaped wherever shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from drifttools.acquisition.protobuf import varint_fields
from drifttools.clock import rfc3339_ns
from drifttools.models import LogRecord, LogSource

POD_UID = "io.kubernetes.pod.uid"

_CHUNK = 1 << 20
#: Decompressed bytes of one rotation read for its summary at most.
_MAX_INFLATE = 1 << 30
#: A local-driver frame larger than this is not a frame: the file is not that format.
_MAX_FRAME = 16 << 20
_RFC3339 = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
_JSON_FILE = re.compile(r"(?P<id>[0-9a-f]{64})-json\.log(\.\d+)?(\.gz)?")
_LOCAL_FILE = re.compile(r"container\.log(\.\d+)?(\.gz)?")
_CRI_FILE = re.compile(r"\d+\.log(\.\d{8}-\d{6})?(\.gz)?")


def docker_logs(container_dir: Path) -> tuple[LogSource, ...]:
    """The ``json-file`` and ``local`` log files in a Docker container's directory."""
    found = [
        LogSource(str(path), "json-file")
        for path in _regular_files(container_dir)
        if (match := _JSON_FILE.fullmatch(path.name)) and container_dir.name == match["id"]
    ]
    found += [
        LogSource(str(path), "local")
        for path in _regular_files(container_dir / "local-logs")
        if _LOCAL_FILE.fullmatch(path.name)
    ]
    return tuple(sorted(found, key=lambda source: _rotation_order(source.path)))


def cri_logs(
    host_root: Path, labels: Mapping[str, str], container_id: str
) -> tuple[LogSource, ...]:
    """The CRI log files of a Kubernetes container under ``host_root`` (``/`` when live, the
    mounted disk of a dead host), found by its pod labels; ``/var/log/containers`` symlinks
    that name one of them become its aliases."""
    namespace, pod = labels.get("io.kubernetes.pod.namespace"), labels.get("io.kubernetes.pod.name")
    name = labels.get("io.kubernetes.container.name")
    if not (namespace and pod and name) or any("/" in part for part in (namespace, pod, name)):
        return ()
    pods = host_root / "var/log/pods"
    uid = labels.get(POD_UID)
    pod_dirs = [pods / f"{namespace}_{pod}_{uid}"] if uid and "/" not in uid else []
    if not pod_dirs and pods.is_dir():
        pod_dirs = sorted(p for p in pods.iterdir() if p.name.startswith(f"{namespace}_{pod}_"))
    files = [
        path
        for pod_dir in pod_dirs
        for path in _regular_files(pod_dir / name)
        if _CRI_FILE.fullmatch(path.name)
    ]
    aliases: dict[str, list[str]] = {str(path): [] for path in files}
    link = host_root / "var/log/containers" / f"{pod}_{namespace}_{name}-{container_id}.log"
    try:
        target = os.readlink(link)
    except OSError:
        target = None
    if target is not None:
        rebased = str(host_root / target.lstrip("/")) if target.startswith("/") else None
        if rebased in aliases:
            aliases[rebased].append(str(link))
    return tuple(
        LogSource(path, "cri", tuple(aliases[path]))
        for path in sorted(aliases, key=_rotation_order)
    )


def host_root_of(data_root: Path, standard: str) -> Path:
    """The root of the host a data root belongs to: ``/mnt/disk`` for
    ``/mnt/disk/var/lib/containerd`` (``standard``: ``var/lib/containerd``); ``/`` when the
    data root is not at its standard place."""
    parts = Path(standard).parts
    if data_root.parts[-len(parts) :] == parts:
        return (
            Path(*data_root.parts[: -len(parts)])
            if len(data_root.parts) > len(parts)
            else Path("/")
        )
    return Path("/")


def read_logs(sources: Iterable[LogSource]) -> tuple[LogRecord, ...]:
    """Each log file hashed and summarized (see the module's table of formats)."""
    return tuple(read_log(source) for source in sources)


def read_log(source: LogSource) -> LogRecord:
    """One log file hashed as stored and summarized; a file that cannot be read is a
    record with its reason."""
    name = os.path.basename(source.path)
    compressed = name.endswith(".gz")
    rotated = compressed or not name.endswith(".log")
    scanner = _FrameScanner() if source.format == "local" else _LineScanner(source.format)
    digest = hashlib.sha256()
    size = 0
    reason = None
    try:
        fd = open_log(source.path)
    except OSError as exc:
        return LogRecord(
            source.path, source.format, rotated, compressed, 0, None,
            aliases=source.aliases, reason=f"not readable: {exc.strerror or exc}",
        )  # fmt: skip
    try:
        inflate = _Inflater() if compressed else None
        while chunk := os.read(fd, _CHUNK):
            size += len(chunk)
            digest.update(chunk)
            if inflate is None:
                scanner.feed(chunk)
            elif inflate.ok:
                for data in inflate.feed(chunk):
                    scanner.feed(data)
        if inflate is not None:
            reason = inflate.problem
    except OSError as exc:
        return LogRecord(
            source.path, source.format, rotated, compressed, size, None,
            aliases=source.aliases, reason=f"read failed: {exc.strerror or exc}",
        )  # fmt: skip
    finally:
        os.close(fd)
    scanner.finish()
    return LogRecord(
        path=source.path,
        format=source.format,
        rotated=rotated,
        compressed=compressed,
        size=size,
        sha256=digest.hexdigest(),
        entries=scanner.entries,
        first_at=scanner.first_at,
        last_at=scanner.last_at,
        aliases=source.aliases,
        reason=reason or scanner.problem,
    )


def open_log(path: str) -> int:
    """A read-only descriptor of a regular file: a final symlink is refused, a FIFO never
    blocks, the access time is left alone where the kernel allows it."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs the file's owner (or CAP_FOWNER)
        fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file")
    return fd


def _regular_files(directory: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.is_file(follow_symlinks=False):
            yield Path(entry.path)


def _rotation_order(path: str) -> tuple[str, str, int, str]:
    """Per directory and log, the current file first, then its rotations (``.1``, ``.2``)."""
    directory, name = os.path.split(path)
    stem = name.removesuffix(".gz")
    head, _, tail = stem.rpartition(".")
    if tail.isdigit() and head:
        return (directory, head, int(tail), name)
    return (directory, stem, 0, name)


class _Inflater:
    """gzip members (rotations can hold several) inflated chunk by chunk, bounded."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(wbits=31)
        self.out = 0
        self.problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        while chunk and self.ok:
            try:
                data = self._inflate.decompress(chunk, _CHUNK)
            except zlib.error as exc:
                self.problem = f"gzip damaged: {exc}"
                return
            self.out += len(data)
            if self.out > _MAX_INFLATE:
                self.problem = f"summary of the first {_MAX_INFLATE} decompressed bytes only"
                return
            yield data
            if self._inflate.unconsumed_tail:
                chunk = self._inflate.unconsumed_tail
            elif self._inflate.eof:
                chunk = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
            else:
                chunk = b""


class _Scanner:
    entries: int
    first_at: str | None
    last_at: str | None
    problem: str | None

    def __init__(self) -> None:
        self.entries = 0
        self.first_at = self.last_at = None
        self.problem = None

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


class _LineScanner(_Scanner):
    """One entry a line: ``json-file`` (a ``time`` member) or CRI (the first word)."""

    def __init__(self, format: str) -> None:
        super().__init__()
        self._json = format == "json-file"
        self._pending = b""
        self._last = b""

    def feed(self, data: bytes) -> None:
        data = self._pending + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending = data
            return
        lines, self._pending = data[:cut], data[cut + 1 :]
        count = lines.count(b"\n") + 1
        if self.entries == 0:
            self.first_at = self._time(lines.partition(b"\n")[0])
        self.entries += count
        self._last = lines.rpartition(b"\n")[2]

    def finish(self) -> None:
        if self._pending:
            self.feed(b"\n")
        if self.entries:
            self.last_at = self._time(self._last)

    def _time(self, line: bytes) -> str | None:
        if self._json:
            try:
                stamp = json.loads(line).get("time", "")
            except (ValueError, AttributeError):
                return None
            raw = stamp.encode() if isinstance(stamp, str) else b""
        else:
            raw = line.partition(b" ")[0]
        return raw.decode() if _RFC3339.fullmatch(raw) else None


class _FrameScanner(_Scanner):
    """Docker's ``local`` driver: ``size (4 bytes, big endian) | LogEntry | size``."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._last = b""

    def feed(self, data: bytes) -> None:
        if self.problem:
            return
        self._buffer += data
        at = 0
        while len(self._buffer) - at >= 4:
            size = int.from_bytes(self._buffer[at : at + 4], "big")
            if size > _MAX_FRAME:
                self.problem = f"not local-driver frames at entry {self.entries + 1}"
                return
            if len(self._buffer) - at < size + 8:
                break
            message = bytes(self._buffer[at + 4 : at + 4 + size])
            if self.entries == 0:
                self.first_at = rfc3339_ns(_time_nano(message))
            self.entries += 1
            self._last = message
            at += size + 8
        del self._buffer[:at]

    def finish(self) -> None:
        if self.entries:
            self.last_at = rfc3339_ns(_time_nano(self._last))
        if self._buffer and not self.problem:
            self.problem = f"{len(self._buffer)} trailing bytes are not a whole entry"


def _time_nano(message: bytes) -> int | None:
    """Field 2 (``time_nano``, varint) of a protobuf ``LogEntry``."""
    return varint_fields(message).get(2)
