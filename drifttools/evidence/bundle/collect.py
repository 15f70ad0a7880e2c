"""Collecting a bundle: the sink of one pipeline run that keeps the evidence as it is read.

In order of volatility (RFC 3227): right after the processes, the bytes of every process
executable (read through ``/proc/<pid>/exe``, so deleted and memfd binaries are kept) and
mountinfo; then, as the run walks them, the mounts the container writes to and the root
filesystem; after the diff, the bytes of every added or modified regular file. Each step is
in the hash-chained action log. Everything is staged in a temporary directory beside the
output and moved under its final name only when complete: a crash or a full disk never
leaves a partial bundle there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from drifttools.acquisition.content import ContentReader, ContentUnavailable
from drifttools.acquisition.guard import opened_exe
from drifttools.acquisition.logs import open_log
from drifttools.errors import BundleError
from drifttools.evidence.bundle.actions import SEALING, STARTED, ActionLog, now
from drifttools.evidence.bundle.layout import (
    ACQUISITION,
    ACTIONS,
    BLOBS,
    CHUNK,
    EVIDENCE,
    FACTS,
    IMAGE,
    INSPECT,
    MANIFEST,
    MOUNTINFO,
    PROCESSES,
    REPORT,
    SOCKETS,
    canonical_json,
    sha256_file,
    write_tar,
)
from drifttools.evidence.bundle.seal import load_private_key, write_digest_file
from drifttools.evidence.bundle.seal import seal as seal_members
from drifttools.evidence.report import plain, report_to_dict
from drifttools.models import (
    ChangeKind,
    ContainerInfo,
    DriftReport,
    ImageIndex,
    ProcessRecord,
    Snapshot,
)
from drifttools.options import AcquisitionOptions, BundleOptions
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress
from drifttools.version import __version__

#: Keys of the report that depend on the acquisition, kept in ``acquisition/record.json``
#: (``classification`` says how long this run took to load the rules).
_ACQUISITION_KEYS = ("acquired_at", "notes", "classification")
_CONTENT_CHANGES = (ChangeKind.ADDED, ChangeKind.MODIFIED, ChangeKind.TYPE)
#: The walks the action log records when the run enters them.
_LOGGED_STAGES = {
    Stage.MOUNTS: "mounts written to (tmpfs, volumes) walking",
    Stage.FILESYSTEM: "root filesystem walking",  # which view: the "snapshot taken" record
}


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
                while chunk := os.read(fd, CHUNK):
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


def _capture_logs(snapshot: Snapshot, staging: _Staging, log: ActionLog) -> list[dict[str, Any]]:
    """The bytes of each of the container's log files, as stored (rotations compressed)."""
    found = []
    for record in snapshot.logs:
        item: dict[str, Any] = {
            "path": record.path,
            "format": record.format,
            "sha256": None,
            "size": record.size,
            "reason": None,
        }
        found.append(item)
        try:
            fd = open_log(record.path)
        except OSError as exc:
            item["reason"] = f"log not stored: {exc.strerror or exc}"
            continue
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                item["size"], item["reason"] = 0, "empty: nothing to store"
                continue
            if (why := staging.room_for(size)) is not None:
                item["reason"] = why
                continue
            item["sha256"] = staging.store_fd(fd)
            item["size"] = size
        except OSError as exc:
            item["reason"] = f"log not stored: {exc.strerror or exc}"
            continue
        finally:
            os.close(fd)
        if item["sha256"] != record.sha256:  # a current log grows while the run goes on
            item["reason"] = f"content changed since the snapshot (then {record.sha256})"
    stored = sum(1 for item in found if item["sha256"])
    log.add("container log files read from the host", files=len(found), stored=stored)
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


class BundleWriter:
    """A bundle at ``output`` made from one run: give the run :meth:`observe` as its
    progress and :meth:`after_processes` / :meth:`after_snapshot` as its hooks, then
    :meth:`finish` it with the run's result.

    A context manager: the staging directory is removed on the way out, whatever happened.
    ``output`` must not exist.
    """

    def __init__(self, output: Path, options: BundleOptions, reference: str) -> None:
        self.output = output
        self.options = options
        self.reference = reference
        self.signer = load_private_key(options.sign_key) if options.sign_key is not None else None
        if output.exists() or output.is_symlink():
            raise BundleError(f"{output}: already exists")
        self.digest_file = output.with_name(output.name + ".sha256")
        if not output.parent.is_dir():
            raise BundleError(f"{output}: no such directory {output.parent}")
        self.started = now()
        self.log = ActionLog()
        self.log.add(STARTED, reference=reference, output=str(output))
        self.executables: list[dict[str, Any]] = []
        self.mountinfo: bytes | None = None
        self.logs: list[dict[str, Any]] = []
        self._entered: set[Stage] = set()
        self._collected: tuple[DriftReport, tuple[Mapping[str, Any], ...]] | None = None
        self._progress: Progress = no_progress
        self._stage = Path(
            tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part")
        )
        self.staging = _Staging(
            self._stage / "members", options.max_file_size, options.max_total_size
        )

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        shutil.rmtree(self._stage, ignore_errors=True)

    def observe(self, progress: Progress) -> Progress:
        """``progress``, with the walks logged as the run enters them."""
        self._progress = progress

        def observed(event: ProgressEvent) -> None:
            if event.stage in _LOGGED_STAGES and event.stage not in self._entered:
                self._entered.add(event.stage)
                self.log.add(_LOGGED_STAGES[event.stage])
            progress(event)

        return observed

    def after_processes(self, info: ContainerInfo, processes: tuple[ProcessRecord, ...]) -> None:
        """Keep each process's executable and the container's mountinfo, before any file."""
        self.log.add("processes and sockets read from /proc", processes=len(processes))
        self._progress(ProgressEvent(Stage.EXECUTABLES, 0, len(processes)))
        self.executables = _capture_executables(processes, self.staging, self.log)
        try:
            self.mountinfo = Path(f"/proc/{info.pid}/mountinfo").read_bytes()
            self.log.add("mountinfo read", pid=info.pid)
        except OSError as exc:
            self.log.add("mountinfo not readable", reason=exc.strerror or str(exc))

    def after_snapshot(self, snapshot: Snapshot) -> None:
        """Record what the snapshot read."""
        self.log.add("snapshot taken", filesystems=[s.source for s in snapshot.filesystems])
        self.logs = _capture_logs(snapshot, self.staging, self.log)

    def finish(
        self,
        report: DriftReport,
        snapshot: Snapshot,
        baseline: ImageIndex,
        acquisition: AcquisitionOptions,
        verify: bool,
        context: Mapping[str, Any] | None = None,
    ) -> BundleResult:
        """Keep the drifted files' bytes, write every member, seal, and move the bundle
        under its final name. ``context`` is added to the acquisition record (a scan puts
        its node summary there)."""
        self.collect(report, snapshot, baseline, acquisition, verify, context)
        return self.seal()

    def collect(
        self,
        report: DriftReport,
        snapshot: Snapshot,
        baseline: ImageIndex,
        acquisition: AcquisitionOptions,
        verify: bool,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep the drifted files' bytes and stage every member but the action log: the
        evidence is then complete, and what is done next (a response) can still be logged
        before :meth:`seal`. ``context`` is added to the acquisition record."""
        info = snapshot.container
        assert info is not None, "a live snapshot carries its container"
        log, staging = self.log, self.staging
        log.add("baseline read", image=baseline.image.id, verified=baseline.verified)
        log.add("diff and classification done", changes=len(report.changes))
        self._progress(ProgressEvent(Stage.CONTENT))
        files = _capture_files(report, ContentReader(snapshot), staging, log)
        skipped = (
            [
                {"kind": "executable", "pid": item["pid"], "path": item["exe"], **_why(item)}
                for item in self.executables
                if item["sha256"] is None
            ]
            + [
                {"kind": "file", "pid": None, "path": item["path"], **_why(item)}
                for item in files
                if item["sha256"] is None
            ]
            + [
                {"kind": "log", "pid": None, "path": item["path"], **_why(item)}
                for item in self.logs
                if item["sha256"] is None and item["size"]  # an empty log has nothing to keep
            ]
        )
        document = report_to_dict(report)
        acquired = {key: document.pop(key) for key in _ACQUISITION_KEYS if key in document}
        staging.write(REPORT, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode())
        staging.write(FACTS, canonical_json(_extra_facts(report)))
        staging.write(
            EVIDENCE,
            canonical_json(
                {
                    "executables": self.executables,
                    "files": files,
                    "logs": self.logs,
                    "skipped": skipped,
                }
            ),
        )
        staging.write(IMAGE, canonical_json(_image_identity(baseline)))
        staging.write(INSPECT, canonical_json(plain(info.raw)))
        staging.write(PROCESSES, canonical_json([plain(p) for p in report.processes]))
        staging.write(SOCKETS, canonical_json([plain(s) for s in report.sockets]))
        if self.mountinfo is not None:
            staging.write(MOUNTINFO, self.mountinfo)
        log.add("members staged", blobs=len(staging.blobs), skipped=len(skipped))
        options = self.options
        record = {
            "format": "drifttools.acquisition/v1",
            "tool": {"name": "drifttools", "version": __version__},
            # the YARA engine and rule-set hashes, when the report was classified
            "yara": (report.classification or {}).get("yara"),
            "host": _host(),
            "engine": plain(info.engine),
            "operator": options.operator,
            "case_id": options.case_id,
            "started_at": self.started,
            "finished_at": now(),
            "frozen": acquisition.freeze and info.running and info.status != "paused",
            "already_paused": info.status == "paused",
            "container": {"reference": self.reference, "id": info.id, "name": info.name},
            "options": {
                "method": acquisition.method,
                "env_values": acquisition.env_values,
                "verify": verify,
                "hash_max_size": acquisition.hash_max_size,
                "legacy_hashes": acquisition.legacy_hashes,
                "max_file_size": options.max_file_size,
                "max_total_size": options.max_total_size,
                "form": "directory" if options.directory else "tar",
            },
            "report": acquired,
            **plain(dict(context or {})),
        }
        staging.write(ACQUISITION, canonical_json(record))
        self._collected = (report, tuple(skipped))

    def seal(self) -> BundleResult:
        """Log the last entry (:data:`SEALING`, which ``verify`` expects at the end of the
        chain), write the action log, seal every member, and move the bundle under its final
        name (after :meth:`collect`)."""
        assert self._collected is not None, "collect() comes first"
        report, skipped = self._collected
        self.log.add(SEALING)
        self.staging.write(ACTIONS, self.log.data())
        members = seal_members(self.staging.root, self.signer)
        self._progress(ProgressEvent(Stage.SEAL))
        digest = self._move_into_place()
        return BundleResult(self.output, digest, self.digest_file, report, members, skipped)

    def _move_into_place(self) -> str:
        """The sealed members under the output's name, the digest file beside; their digest."""
        output, stage = self.output, self._stage
        if self.options.directory:
            digest = sha256_file(self.staging.root / MANIFEST)
            write_digest_file(stage, self.digest_file, digest, f"{output.name}/{MANIFEST}")
            os.rename(self.staging.root, output)
        else:
            packed = stage / "bundle.tar"
            with open(packed, "wb") as handle:
                write_tar(self.staging.root, handle)
                handle.flush()
                os.fsync(handle.fileno())
            digest = sha256_file(packed)
            write_digest_file(stage, self.digest_file, digest, output.name)
            os.rename(packed, output)
        os.replace(stage / "digest", self.digest_file)
        return digest


def _why(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"size": item["size"], "reason": item["reason"]}
