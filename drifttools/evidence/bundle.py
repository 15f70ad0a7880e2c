"""Evidence bundles: collect a container's evidence once, seal it, verify it, read it back.

:func:`bundle` collects in order of volatility (RFC 3227): the processes, at once
the bytes of every process executable (read through ``/proc/<pid>/exe``, so
deleted and memfd binaries are kept), mountinfo, the mounts the container writes
to (tmpfs first), the upper dir, then the baseline and the report, then the bytes
of every added or modified regular file. Everything is staged in a temporary
directory beside the output and moved under its final name only when complete:
a crash or a full disk never leaves a partial bundle there.

The format (``drifttools.bundle/v1``, see ``docs/bundle.md``) is a deterministic
tar (sorted members, fixed times, owners and modes, PAX, no compression) or the
same members as a directory. ``manifest.json`` holds the SHA-256 of every other
member; ``manifest.json.sig`` (optional) is a detached Ed25519 signature of the
manifest's exact bytes. Everything that depends on *when* and *by whom* the
evidence was taken lives under ``acquisition/``; every other member depends only
on the evidence, so two bundles of an unchanged container differ only there.

:func:`verify_bundle` checks every byte: member digests, the manifest (and that
it is in canonical form), the signature, and for a tar that every header,
padding and trailer byte is the canonical one. :func:`open_bundle` gives the
report model back, with lazy access to the blobs, without Docker.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

from drifttools.acquisition.content import ContentReader, ContentUnavailable
from drifttools.acquisition.guard import opened_exe
from drifttools.acquisition.rootfs import DEFAULT_HASH_CAP
from drifttools.acquisition.runtime import Runtime, runtime_for
from drifttools.acquisition.snapshot import take_snapshot
from drifttools.analysis.classify import DEFAULT_CLASSIFICATION, ClassifyOptions
from drifttools.analysis.diff import DEFAULT_EXCLUSIONS
from drifttools.api import diff_taken
from drifttools.baseline.cache import DEFAULT_CACHE, LayerCache
from drifttools.errors import BundleCorrupt, BundleError
from drifttools.evidence.report import plain, report_to_dict, rfc3339_ns
from drifttools.evidence.report_read import report_from_dict
from drifttools.models import (
    ChangeKind,
    ContainerInfo,
    DriftReport,
    Exclusion,
    ImageIndex,
    ProcessRecord,
)
from drifttools.progress import Progress, no_progress
from drifttools.version import __version__

FORMAT = "drifttools.bundle/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
ACQUISITION = "acquisition/record.json"
ACTIONS = "acquisition/actions.jsonl"
REPORT = "report.json"
FACTS = "facts.json"
EVIDENCE = "evidence.json"
IMAGE = "image.json"
INSPECT = "container/inspect.json"
MOUNTINFO = "container/mountinfo"
PROCESSES = "container/processes.json"
SOCKETS = "container/sockets.json"
BLOBS = "blobs/sha256/"

#: A file or executable larger than this is listed as skipped, not stored.
DEFAULT_MAX_FILE_SIZE = 256 << 20
#: Blobs stop being stored once they would take more than this in all.
DEFAULT_MAX_TOTAL_SIZE = 4 << 30

#: Keys of the report that depend on the acquisition, kept in ``acquisition/record.json``.
_ACQUISITION_KEYS = ("acquired_at", "notes")
_CHUNK = 1 << 20
_CONTENT_CHANGES = (ChangeKind.ADDED, ChangeKind.MODIFIED, ChangeKind.TYPE)


# ---------------------------------------------------------------------------------------------
# Collection


def _now() -> str:
    return rfc3339_ns(time.time_ns()) or ""


def _dumps(data: Any) -> bytes:
    """Canonical JSON of the bundle's own members: sorted keys, two-space indent, newline."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


class ActionLog:
    """An append-only log: each line names the digest of the line before it."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, action: str, **detail: Any) -> None:
        previous = hashlib.sha256(self.lines[-1]).hexdigest() if self.lines else None
        entry = {"seq": len(self.lines), "at": _now(), "action": action, "prev": previous}
        if detail:
            entry["detail"] = detail
        self.lines.append(json.dumps(entry, sort_keys=True, ensure_ascii=False).encode() + b"\n")

    def data(self) -> bytes:
        return b"".join(self.lines)


class _Staging:
    """The bundle's members as files under a temporary directory, blobs stored by content."""

    def __init__(self, root: Path, max_file_size: int, max_total_size: int) -> None:
        self.root = root
        self.max_file_size = max_file_size
        self.max_total_size = max_total_size
        self.stored = 0
        self.blobs: set[str] = set()
        (root / BLOBS).mkdir(parents=True)

    def write(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def room_for(self, size: int) -> str | None:
        """Why a blob of ``size`` bytes cannot be stored, or None."""
        if size > self.max_file_size:
            return f"{size} bytes, over the {self.max_file_size} byte file cap"
        if self.stored + size > self.max_total_size:
            return f"{size} bytes would pass the {self.max_total_size} byte total cap"
        return None

    def store(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self.blobs:
            self.write(BLOBS + digest, data)
            self.blobs.add(digest)
            self.stored += len(data)
        return digest

    def store_fd(self, fd: int) -> str:
        """Copy an open file into a blob while hashing it (never more than the file cap)."""
        digest = hashlib.sha256()
        partial = self.root / BLOBS / ".incoming"
        copied = 0
        try:
            with open(partial, "wb") as out:
                while chunk := os.read(fd, _CHUNK):
                    copied += len(chunk)
                    if copied > self.max_file_size:
                        raise OSError(f"grew over the {self.max_file_size} byte cap while read")
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)  # never sealed into the bundle
            raise
        name = digest.hexdigest()
        if name in self.blobs:
            partial.unlink()
        else:
            partial.rename(self.root / BLOBS / name)
            self.blobs.add(name)
            self.stored += copied
        return name


def _capture_executables(
    processes: Sequence[ProcessRecord], staging: _Staging, log: ActionLog
) -> list[dict[str, Any]]:
    """The bytes of each process's executable, through ``/proc/<pid>/exe`` (never by path).

    ``/proc/<pid>`` is opened first and its start time checked against the record,
    so a pid reused since the processes were read is not mistaken for the process.
    """
    found = []
    for process in processes:
        item: dict[str, Any] = {
            "pid": process.pid,
            "ns_pid": process.ns_pid,
            "start_ticks": process.start_ticks,
            "exe": process.exe,
            "exe_state": process.exe_state,
            "sha256": None,
            "size": process.exe_size,
            "reason": None,
        }
        found.append(item)
        try:
            with opened_exe(process) as fd:
                info = os.fstat(fd)
                item["size"] = info.st_size
                if not stat.S_ISREG(info.st_mode):
                    item["reason"] = "not a regular file"
                elif (why := staging.room_for(info.st_size)) is not None:
                    item["reason"] = why
                else:
                    item["sha256"] = staging.store_fd(fd)
        except OSError as exc:
            item["reason"] = f"exe not stored: {exc.strerror or exc}"
            continue
        if item["sha256"] and process.exe_sha256 and item["sha256"] != process.exe_sha256:
            item["reason"] = f"content differs from the process record ({process.exe_sha256})"
    stored = sum(1 for item in found if item["sha256"])
    log.add("executables read through /proc/<pid>/exe", processes=len(found), stored=stored)
    return found


def _capture_files(
    report: DriftReport, reader: ContentReader, staging: _Staging, log: ActionLog
) -> list[dict[str, Any]]:
    """The bytes of every added or modified regular file, as the container has it."""
    found = []
    for change in report.changes:
        after = change.after
        if change.change not in _CONTENT_CHANGES or after is None or after.kind != "file":
            continue
        item: dict[str, Any] = {
            "path": change.path,
            "mount": change.mount,
            "change": change.change.value,
            "sha256": None,
            "size": after.size,
            "reason": None,
        }
        found.append(item)
        if (why := staging.room_for(after.size)) is not None:
            item["reason"] = why
            continue
        result = reader.read_many([change.path], staging.max_file_size + 1)[change.path]
        if isinstance(result, ContentUnavailable):
            item["reason"] = str(result)
            continue
        if not result.complete:
            item["size"] = result.size
            item["reason"] = f"{result.size} bytes now, over the {staging.max_file_size} byte cap"
            continue
        item["sha256"] = staging.store(result.data)
        item["size"] = result.size
        if after.sha256 is not None and item["sha256"] != after.sha256:
            item["reason"] = f"content changed since the snapshot (then {after.sha256})"
    stored = sum(1 for item in found if item["sha256"])
    log.add("content of added and modified files read", files=len(found), stored=stored)
    return found


def _host() -> dict[str, Any]:
    def first_line(path: str) -> str | None:
        try:
            return Path(path).read_text().strip() or None
        except OSError:
            return None

    uname = os.uname()
    return {
        "hostname": uname.nodename,
        "kernel": f"{uname.sysname} {uname.release} {uname.version}",
        "machine": uname.machine,
        "boot_id": first_line("/proc/sys/kernel/random/boot_id"),
        "machine_id": first_line("/etc/machine-id"),
    }


def _image_identity(baseline: ImageIndex) -> dict[str, Any]:
    """What names the image (its config digest, ref, layer digests), not its layers' bytes."""
    return {
        "id": baseline.image.id,
        "ref": baseline.image.ref,
        "platform": baseline.image.platform,
        "verified": baseline.verified,
        "problems": list(baseline.problems),
        "layers": [
            {"diff_id": layer.diff_id, "digest": layer.digest, "created_by": layer.created_by}
            for layer in baseline.layers
        ],
        "config": dict(baseline.image.config),
    }


def _extra_facts(report: DriftReport) -> dict[str, Any]:
    """Facts of each change the report v1 schema does not carry (atime, inode, links)."""
    found = {}
    for change in report.changes:
        facts = change.after
        if facts is not None:
            found[change.path] = {
                "atime_ns": facts.atime_ns,
                "inode": facts.inode,
                "nlink": facts.nlink,
            }
    return found


@dataclass(frozen=True)
class BundleResult:
    """Where a bundle was written, its own digest, and what it holds."""

    path: Path
    sha256: str  # of the tar file; of ``manifest.json`` for a directory
    digest_file: Path  # ``<bundle>.sha256``
    report: DriftReport
    members: int
    skipped: tuple[Mapping[str, Any], ...] = ()


def bundle(
    reference: str,
    output: str | Path,
    *,
    directory: bool = False,
    runtime: Runtime | None = None,
    method: str = "auto",
    freeze: bool = False,
    env_values: bool = False,
    cache: LayerCache | Literal["default"] | None = DEFAULT_CACHE,
    verify: bool = True,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    hash_max_size: int | None = DEFAULT_HASH_CAP,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    max_total_size: int = DEFAULT_MAX_TOTAL_SIZE,
    operator: str | None = None,
    case_id: str | None = None,
    sign_key: str | Path | None = None,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    progress: Progress = no_progress,
) -> BundleResult:
    """Collect the evidence of a live container into one sealed bundle at ``output``.

    ``output`` must not exist. A tar file unless ``directory``; ``sign_key`` is a
    PEM Ed25519 private key (unencrypted) to sign the manifest with. The other
    options are those of :func:`drifttools.diff`. Returns the bundle's path and
    its SHA-256, also written to ``<output>.sha256``.
    """
    output = Path(output)
    signer = _load_private_key(sign_key) if sign_key is not None else None
    if output.exists() or output.is_symlink():
        raise BundleError(f"{output}: already exists")
    digest_file = output.with_name(output.name + ".sha256")
    output.parent.mkdir(parents=True, exist_ok=True)
    started = _now()
    log = ActionLog()
    log.add("bundle started", reference=reference, output=str(output))
    runtime = runtime or runtime_for(reference)
    stage = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part"))
    try:
        staging = _Staging(stage / "members", max_file_size, max_total_size)
        executables: list[dict[str, Any]] = []
        mountinfo: list[bytes] = []

        def after_processes(info: ContainerInfo, processes: tuple[ProcessRecord, ...]) -> None:
            log.add("processes and sockets read from /proc", processes=len(processes))
            executables.extend(_capture_executables(processes, staging, log))
            try:
                mountinfo.append(Path(f"/proc/{info.pid}/mountinfo").read_bytes())
                log.add("mountinfo read", pid=info.pid)
            except OSError as exc:
                log.add("mountinfo not readable", reason=exc.strerror or str(exc))

        def staged(stage_name: str, done: int, total: int | None) -> None:
            if done == 0 and stage_name in ("mounts", "filesystem"):
                log.add(
                    "mounts written to (tmpfs, volumes) walking"
                    if stage_name == "mounts"
                    else "root filesystem (upper dir) walking"
                )
            progress(stage_name, done, total)

        taken = take_snapshot(
            reference,
            runtime=runtime,
            method=method,
            freeze=freeze,
            env_values=env_values,
            hash_max_size=hash_max_size,
            progress=staged,
            after_processes=after_processes,
        )
        info = taken.container
        assert info is not None
        log.add("snapshot taken", filesystems=[s.source for s in taken.filesystems])
        report, taken, baseline = diff_taken(
            taken,
            runtime,
            cache=cache,
            verify=verify,
            exclusions=exclusions,
            hash_max_size=hash_max_size,
            classification=classification,
            progress=progress,
        )
        log.add("baseline read", image=baseline.image.id, verified=baseline.verified)
        log.add("diff and classification done", changes=len(report.changes))
        progress("content", 0, None)
        files = _capture_files(report, ContentReader(taken), staging, log)

        skipped = [
            {"kind": "executable", "pid": item["pid"], "path": item["exe"], **_why(item)}
            for item in executables
            if item["sha256"] is None
        ] + [
            {"kind": "file", "pid": None, "path": item["path"], **_why(item)}
            for item in files
            if item["sha256"] is None
        ]
        document = report_to_dict(report)
        acquired = {key: document.pop(key) for key in _ACQUISITION_KEYS}
        staging.write(REPORT, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode())
        staging.write(FACTS, _dumps(_extra_facts(report)))
        staging.write(
            EVIDENCE,
            _dumps({"executables": executables, "files": files, "skipped": skipped}),
        )
        staging.write(IMAGE, _dumps(_image_identity(baseline)))
        staging.write(INSPECT, _dumps(plain(info.raw)))
        staging.write(PROCESSES, _dumps([plain(p) for p in report.processes]))
        staging.write(SOCKETS, _dumps([plain(s) for s in report.sockets]))
        if mountinfo:
            staging.write(MOUNTINFO, mountinfo[0])
        log.add("members staged", blobs=len(staging.blobs), skipped=len(skipped))
        frozen = freeze and info.running and info.status != "paused"
        record = {
            "format": "drifttools.acquisition/v1",
            "tool": {"name": "drifttools", "version": __version__},
            # the YARA engine and rule-set hashes, when the report was classified
            "yara": (report.classification or {}).get("yara"),
            "host": _host(),
            "engine": plain(info.engine),
            "operator": operator,
            "case_id": case_id,
            "started_at": started,
            "finished_at": _now(),
            "frozen": frozen,
            "already_paused": info.status == "paused",
            "container": {"reference": reference, "id": info.id, "name": info.name},
            "options": {
                "method": method,
                "env_values": env_values,
                "verify": verify,
                "hash_max_size": hash_max_size,
                "max_file_size": max_file_size,
                "max_total_size": max_total_size,
                "form": "directory" if directory else "tar",
            },
            "report": acquired,
        }
        staging.write(ACQUISITION, _dumps(record))
        log.add("acquisition record written; sealing")
        staging.write(ACTIONS, log.data())
        members = _seal(staging.root, signer)
        progress("seal", 0, None)
        if directory:
            digest = _sha256_file(staging.root / MANIFEST)
            _write_digest_file(stage, digest_file, digest, f"{output.name}/{MANIFEST}")
            os.rename(staging.root, output)
        else:
            packed = stage / "bundle.tar"
            with open(packed, "wb") as handle:
                write_tar(staging.root, handle)
                handle.flush()
                os.fsync(handle.fileno())
            digest = _sha256_file(packed)
            _write_digest_file(stage, digest_file, digest, output.name)
            os.rename(packed, output)
        os.replace(stage / "digest", digest_file)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return BundleResult(output, digest, digest_file, report, members, tuple(skipped))


def _why(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"size": item["size"], "reason": item["reason"]}


def _write_digest_file(stage: Path, final: Path, digest: str, name: str) -> None:
    """The ``sha256sum`` line of the bundle, staged (renamed beside the bundle at the end)."""
    if final.exists():
        raise BundleError(f"{final}: already exists")
    with open(stage / "digest", "w") as handle:
        handle.write(f"{digest}  {name}\n")
        handle.flush()
        os.fsync(handle.fileno())


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _seal(root: Path, signer: Any) -> int:
    """Write ``manifest.json`` (and its signature) over every member staged under ``root``."""
    members = sorted(_files_under(root))
    manifest = {
        "format": FORMAT,
        "algorithm": "sha256",
        "members": [
            {
                "path": name,
                "sha256": _sha256_file(root / name),
                "size": (root / name).stat().st_size,
            }
            for name in members
        ],
        "signature": None,
    }
    if signer is not None:
        from cryptography.hazmat.primitives import serialization

        public = signer.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        manifest["signature"] = {"algorithm": "ed25519", "public_key": public.hex()}
    data = canonical_manifest(manifest)
    (root / MANIFEST).write_bytes(data)
    if signer is not None:
        (root / SIGNATURE).write_bytes(signer.sign(data))
    return len(members)


def canonical_manifest(manifest: Mapping[str, Any]) -> bytes:
    """The one byte form a manifest may have (verification rejects any other)."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


def _files_under(root: Path) -> Iterator[str]:
    for directory, _, names in os.walk(root):
        for name in names:
            yield os.path.relpath(os.path.join(directory, name), root)


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _tar_header(name: str, size: int) -> bytes:
    return _tar_info(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def write_tar(root: Path, handle: BinaryIO) -> None:
    """The members under ``root`` as a deterministic tar: sorted names, fixed metadata, PAX."""
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(_files_under(root)):
            path = root / name
            with open(path, "rb") as member:
                archive.addfile(_tar_info(name, os.fstat(member.fileno()).st_size), member)


# ---------------------------------------------------------------------------------------------
# Keys


def _load_private_key(path: str | Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a usable PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 private key")
    return key


def _load_public_key(path: str | Path) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a usable PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---------------------------------------------------------------------------------------------
# Reading and verifying


class _Members:
    """Random access to the members of a bundle, a tar file or a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_dir = path.is_dir()
        self.problems: list[str] = []
        self.spans: dict[str, tuple[int, int]] = {}
        self._handle: BinaryIO | None = None
        if self.is_dir:
            for name in _files_under(path):
                if not (path / name).is_file() or (path / name).is_symlink():
                    self.problems.append(f"{name}: not a regular file")
                else:
                    self.spans[name] = (0, (path / name).stat().st_size)
        else:
            self._handle = open(path, "rb")  # noqa: SIM115 - closed by close()
            self._scan_tar()

    def _scan_tar(self) -> None:
        assert self._handle is not None
        try:
            with tarfile.open(fileobj=self._handle, mode="r:") as archive:
                infos = archive.getmembers()
        except tarfile.TarError as exc:
            self.problems.append(f"not a readable tar: {exc}")
            return
        names = [info.name for info in infos]
        if names != sorted(set(names)):
            self.problems.append("members not in sorted order, or repeated")
        end = 0
        for info in infos:
            if not info.isreg():
                self.problems.append(f"{info.name}: not a regular file member")
                continue
            self.spans[info.name] = (info.offset_data, info.size)
            expected = _tar_header(info.name, info.size)
            if info.offset != end or self._read(end, len(expected)) != expected:
                self.problems.append(f"{info.name}: tar header not in canonical form")
            end = info.offset_data + info.size
            padding = -info.size % tarfile.BLOCKSIZE
            if self._read(end, padding) != bytes(padding):
                self.problems.append(f"{info.name}: non-zero tar padding")
            end += padding
        trailer = end + 2 * tarfile.BLOCKSIZE
        trailer += -trailer % tarfile.RECORDSIZE
        size = os.fstat(self._handle.fileno()).st_size
        if size != trailer or any(self._read(end, trailer - end)):
            self.problems.append("tar trailer not in canonical form (bytes after the members)")

    def _read(self, offset: int, size: int) -> bytes:
        assert self._handle is not None
        self._handle.seek(offset)
        return self._handle.read(size)

    def read(self, name: str) -> bytes:
        offset, size = self.spans[name]
        if self.is_dir:
            return (self.path / name).read_bytes()
        return self._read(offset, size)

    def chunks(self, name: str) -> Iterator[bytes]:
        offset, size = self.spans[name]
        if self.is_dir:
            with open(self.path / name, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
            return
        done = 0
        while done < size:
            chunk = self._read(offset + done, min(_CHUNK, size - done))
            if not chunk:
                raise BundleCorrupt(f"{name}: truncated")
            done += len(chunk)
            yield chunk

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(name):
            digest.update(chunk)
        return digest.hexdigest()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_bundle`: ``ok`` when ``problems`` is empty."""

    path: Path
    sha256: str  # the bundle's own digest (of manifest.json for a directory)
    members: int
    signed: bool
    key_given: bool
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def _open_members(path: Path) -> _Members:
    if not path.exists():
        raise BundleError(f"{path}: no such bundle")
    try:
        return _Members(path)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def verify_bundle(path: str | Path, *, public_key: str | Path | None = None) -> Verification:
    """Check every byte of a bundle. Raises :class:`BundleError` only when it cannot be read.

    Checked: the tar framing (canonical headers, padding, trailer) or the
    directory's files; that ``manifest.json`` is in canonical form and names
    exactly the members present; every member's SHA-256 and size; blob names
    against their content; the signature when present (against ``public_key``,
    a PEM Ed25519 public key, when given; a bundle that is not signed fails when
    a key is given); ``<bundle>.sha256`` beside it when present.
    """
    path = Path(path)
    expected_key = _load_public_key(public_key) if public_key is not None else None
    members = _open_members(path)
    try:
        problems = list(members.problems)
        manifest = _check_manifest(members, problems)
        signed = bool(manifest and manifest.get("signature"))
        if manifest is not None:
            _check_members(members, manifest, problems)
            _check_signature(members, manifest, expected_key, problems)
        elif expected_key is not None:
            problems.append("signature: cannot be checked without a manifest")
        if MANIFEST in members.spans:
            own = members.sha256(MANIFEST) if members.is_dir else _sha256_file(path)
        else:
            own = ""
        _check_digest_file(path, own, problems)
        return Verification(
            path=path,
            sha256=own,
            members=len(members.spans),
            signed=signed,
            key_given=expected_key is not None,
            problems=tuple(problems),
        )
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    finally:
        members.close()


def _check_manifest(members: _Members, problems: list[str]) -> dict[str, Any] | None:
    if MANIFEST not in members.spans:
        problems.append(f"{MANIFEST}: missing")
        return None
    data = members.read(MANIFEST)
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        problems.append(f"{MANIFEST}: not JSON: {exc}")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: not a {FORMAT} manifest")
        return None
    if canonical_manifest(manifest) != data:
        problems.append(f"{MANIFEST}: not in canonical form (edited?)")
    if manifest.get("algorithm") != "sha256" or not isinstance(manifest.get("members"), list):
        problems.append(f"{MANIFEST}: unknown algorithm or no member list")
        return None
    return manifest


def _check_members(members: _Members, manifest: Mapping[str, Any], problems: list[str]) -> None:
    listed: dict[str, Mapping[str, Any]] = {}
    for entry in manifest["members"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            problems.append(f"{MANIFEST}: malformed member entry")
            continue
        listed[entry["path"]] = entry
    present = set(members.spans) - {MANIFEST, SIGNATURE}
    for name in sorted(present - listed.keys()):
        problems.append(f"{name}: not in the manifest")
    for name in sorted(listed.keys() - present):
        problems.append(f"{name}: in the manifest but missing")
    for name in sorted(present & listed.keys()):
        entry = listed[name]
        size = members.spans[name][1]
        if entry.get("size") != size:
            problems.append(f"{name}: size {size}, manifest says {entry.get('size')}")
        digest = members.sha256(name)
        if entry.get("sha256") != digest:
            problems.append(f"{name}: sha256 {digest}, manifest says {entry.get('sha256')}")
        elif name.startswith(BLOBS) and name[len(BLOBS) :] != digest:
            problems.append(f"{name}: blob content does not match its name")


def _check_signature(
    members: _Members,
    manifest: Mapping[str, Any],
    expected_key: bytes | None,
    problems: list[str],
) -> None:
    info = manifest.get("signature")
    if info is None:
        if SIGNATURE in members.spans:
            problems.append(f"{SIGNATURE}: present but the manifest names no signature")
        if expected_key is not None:
            problems.append("signature: a key was given but the bundle is not signed")
        return
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if SIGNATURE not in members.spans:
        problems.append(f"{SIGNATURE}: missing (the manifest says the bundle is signed)")
        return
    try:
        raw = bytes.fromhex(info.get("public_key", ""))
        key = Ed25519PublicKey.from_public_bytes(raw)
        key.verify(members.read(SIGNATURE), members.read(MANIFEST))
    except (ValueError, AttributeError, InvalidSignature):
        problems.append(f"{SIGNATURE}: signature does not verify")
        return
    if expected_key is not None and raw != expected_key:
        problems.append("signature: made with another key than the one given")


def _check_digest_file(path: Path, own: str, problems: list[str]) -> None:
    beside = path.with_name(path.name + ".sha256")
    if not beside.is_file():
        return
    recorded = beside.read_text(errors="replace").split(maxsplit=1)
    if not recorded or recorded[0] != own:
        problems.append(f"{beside.name}: the bundle's digest is {own}, the file says otherwise")


class Bundle:
    """An opened bundle: the report model, the acquisition record, lazy blobs.

    Use as a context manager (or call :meth:`close`) to release the tar file.
    """

    def __init__(self, path: Path, members: _Members) -> None:
        self.path = path
        self._members = members
        self.manifest: dict[str, Any] = json.loads(members.read(MANIFEST))
        self.acquisition: dict[str, Any] = self._json(ACQUISITION)
        self.evidence: dict[str, Any] = self._json(EVIDENCE)
        self.image: dict[str, Any] = self._json(IMAGE)
        self.inspect: dict[str, Any] = self._json(INSPECT)
        document = {**self._json(REPORT), **self.acquisition.get("report", {})}
        report = report_from_dict(document)
        self.report: DriftReport = _with_extra_facts(report, self._json(FACTS))

    def _json(self, name: str) -> Any:
        if name not in self._members.spans:
            raise BundleCorrupt(f"{self.path}: {name} missing")
        try:
            return json.loads(self._members.read(name))
        except ValueError as exc:
            raise BundleCorrupt(f"{self.path}: {name}: not JSON: {exc}") from exc

    @property
    def actions(self) -> list[dict[str, Any]]:
        """The acquisition's action log, oldest first."""
        return [json.loads(line) for line in self._members.read(ACTIONS).splitlines()]

    @property
    def mountinfo(self) -> bytes | None:
        return self._members.read(MOUNTINFO) if MOUNTINFO in self._members.spans else None

    @property
    def blobs(self) -> list[str]:
        """The SHA-256 (hex) of every stored blob."""
        return sorted(name[len(BLOBS) :] for name in self._members.spans if name.startswith(BLOBS))

    def blob(self, sha256: str) -> bytes:
        """The bytes of a stored file or executable, by its SHA-256 (read when asked)."""
        name = BLOBS + sha256.removeprefix("sha256:")
        if name not in self._members.spans:
            raise KeyError(sha256)
        return self._members.read(name)

    def content(self, path: str) -> bytes | None:
        """The stored bytes of the container file ``path``, or None when it was not stored."""
        for item in self.evidence.get("files", ()):
            if item["path"] == path and item["sha256"]:
                return self.blob(item["sha256"])
        return None

    def executable(self, pid: int) -> bytes | None:
        """The stored executable of the process with host pid ``pid``, or None."""
        for item in self.evidence.get("executables", ()):
            if item["pid"] == pid and item["sha256"]:
                return self.blob(item["sha256"])
        return None

    def close(self) -> None:
        self._members.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _with_extra_facts(report: DriftReport, extra: Mapping[str, Any]) -> DriftReport:
    changes = []
    for change in report.changes:
        facts = extra.get(change.path)
        if change.after is not None and facts:
            after = replace(
                change.after,
                atime_ns=facts.get("atime_ns"),
                inode=facts.get("inode"),
                nlink=facts.get("nlink"),
            )
            change = replace(change, after=after)
        changes.append(change)
    return replace(report, changes=tuple(changes))


def open_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Open a bundle (tar or directory): no engine needed.

    With ``verify`` (the default) every byte is checked first and a bundle that
    fails raises :class:`BundleCorrupt` naming what failed.
    """
    path = Path(path)
    if verify:
        result = verify_bundle(path)
        if not result.ok:
            raise BundleCorrupt(f"{path}: {'; '.join(result.problems)}")
    members = _open_members(path)
    try:
        return Bundle(path, members)
    except BaseException:
        members.close()
        raise


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` looks like a bundle (a tar file, or a directory with a manifest)."""
    path = Path(path)
    if path.is_dir():
        return (path / MANIFEST).is_file()
    return path.is_file() and tarfile.is_tarfile(path)
