"""A Kubernetes container checkpoint archive (KEP-2008), read without a runtime.

The archive (``kubelet .../checkpoint`` writes it, a tar) holds ``config.dump`` (the
container's id, name and image), ``spec.dump`` (its OCI runtime spec),
``rootfs-diff.tar`` (the files the container changed or added), ``deleted.files`` (a
JSON list of paths it removed) and ``checkpoint/`` (CRIU images). The image is not in
the archive: the baseline comes from an image archive or layout given beside it.

The changes are read as an overlay upper view: ``rootfs-diff.tar``'s entries, plus one
``.wh.`` whiteout per deleted path, built in memory. Processes are listed from CRIU's
``pstree.img`` where present (pid, parent, session: no /proc exists for them).
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from drifttools import _native
from drifttools.acquisition.protobuf import varint_fields
from drifttools.acquisition.runtimes.containerd.records import spec_mounts
from drifttools.acquisition.runtimes.posture import spec_posture
from drifttools.errors import ContainerNotFound, ImageNotFound, RootfsError, RuntimeUnavailable
from drifttools.models import ContainerInfo, FilesystemState, Snapshot, Target

_JSON_LIMIT = 64 << 20
_CRIU_PSTREE_MAGIC = 0x50273030


class CheckpointArchive:
    """The members of a checkpoint archive, read on demand (the tar is never extracted)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ContainerNotFound(f"no checkpoint archive at {self.path}")
        try:
            with tarfile.open(self.path) as archive:
                self.names = {m.name.removeprefix("./"): m for m in archive.getmembers()}
        except (tarfile.TarError, OSError) as exc:
            raise RootfsError(f"{self.path}: not a readable checkpoint archive: {exc}") from exc
        if "config.dump" not in self.names or "rootfs-diff.tar" not in self.names:
            raise RootfsError(f"{self.path}: no config.dump / rootfs-diff.tar: not a checkpoint")

    def read(self, name: str, limit: int = _JSON_LIMIT) -> bytes | None:
        member = self.names.get(name)
        if member is None or not member.isfile() or member.size > limit:
            return None
        with tarfile.open(self.path) as archive:
            handle = archive.extractfile(member.name)
            return handle.read() if handle else None

    def json(self, name: str) -> Any:
        data = self.read(name)
        try:
            return json.loads(data) if data else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def changes_tree(self) -> _native.Tree:
        """``rootfs-diff.tar`` as a native tree (streamed from inside the archive)."""
        with tarfile.open(self.path) as archive:
            handle = archive.extractfile(self.names["rootfs-diff.tar"].name)
            assert handle is not None
            return _native.read_layer(handle).entries

    def deleted(self) -> list[str]:
        """The paths of ``deleted.files``; :class:`RootfsError` when it is not a list."""
        found = self.json("deleted.files") or []
        if not isinstance(found, list):
            raise RootfsError(f"{self.path}: deleted.files is not a JSON list")
        return ["/" + str(p).strip("/") for p in found if str(p).strip("/")]

    def processes(self) -> list[dict[str, int]]:
        """(pid, ppid, pgid, sid) of each task CRIU dumped, from ``pstree.img``."""
        data = self.read("checkpoint/pstree.img")
        if not data or len(data) < 8:
            return []
        if int.from_bytes(data[4:8], "little") != _CRIU_PSTREE_MAGIC:
            return []
        found, at = [], 8
        while at + 4 <= len(data):
            size = int.from_bytes(data[at : at + 4], "little")
            entry = varint_fields(data[at + 4 : at + 4 + size])
            at += 4 + size
            found.append(
                {k: entry.get(n, 0) for n, k in enumerate(("", "pid", "ppid", "pgid", "sid")) if k}
            )
        return found


def _whiteouts(paths: Sequence[str]) -> _native.Tree:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in paths:
            parent, name = posixpath.split(path)
            info = tarfile.TarInfo(posixpath.join(parent, ".wh." + name).lstrip("/"))
            archive.addfile(info, io.BytesIO(b""))
    buffer.seek(0)
    return _native.read_layer(buffer).entries


class CheckpointRuntime:
    """A checkpoint archive as a (stopped) container; its image comes from ``image``."""

    name = "checkpoint"

    def __init__(self, path: str | Path, *, image: str | Path | None = None) -> None:
        self.archive = CheckpointArchive(path)
        self.endpoint = f"checkpoint://{self.archive.path}"
        self.image = Path(image) if image else None

    def resolve(self, reference: str = "") -> ContainerInfo:
        """The container the archive holds. :class:`RootfsError` when its ``config.dump``
        or ``spec.dump`` is not the JSON object a checkpoint holds."""
        try:
            return self._resolve()
        except (AttributeError, TypeError, ValueError) as exc:  # a field of another shape
            raise RootfsError(
                f"{self.archive.path}: config.dump / spec.dump malformed: {exc}"
            ) from exc

    def _resolve(self) -> ContainerInfo:
        config = self.archive.json("config.dump") or {}
        spec = self.archive.json("spec.dump") or {}
        if not isinstance(config, dict) or not isinstance(spec, dict):
            raise TypeError("not a JSON object")
        return ContainerInfo(
            runtime="offline",
            id=str(config.get("id", "")),
            name=str(config.get("name", self.archive.path.name)),
            image_id=str(config.get("rootfsImageRef", "")),
            image_ref=config.get("rootfsImageName") or config.get("rootfsImage"),
            diff_ids=(),
            status="checkpointed",
            pid=None,
            storage_driver="checkpoint",
            upper_dir=None,
            mounts=tuple(spec_mounts(spec)),
            posture=spec_posture(spec),
            engine={"format": self.name, "archive": str(self.archive.path), "offline": True},
            raw={"config": config, "spec": spec, "processes": self.archive.processes()},
        )

    def snapshot(self) -> Snapshot:
        """The archive's changes as an upper view, and its dumped processes in the notes."""
        from drifttools.clock import now_rfc3339

        info = self.resolve()
        changes = FilesystemState(
            "/",
            "upper",
            f"{self.archive.path}:rootfs-diff.tar",
            "checkpoint",  # content stays inside the archive: not read again
            self.archive.changes_tree(),
        )
        states = [changes]
        deleted = self.archive.deleted()
        if deleted:
            states.append(
                FilesystemState(
                    "/",
                    "upper",
                    f"{self.archive.path}:deleted.files",
                    "checkpoint",
                    _whiteouts(deleted),
                )
            )
        processes = self.archive.processes()
        notes = [f"checkpoint archive {self.archive.path}: rootfs-diff.tar and deleted.files"]
        if processes:
            notes.append(
                "processes at checkpoint (CRIU pstree): "
                + ", ".join(f"pid {p['pid']} (parent {p['ppid']})" for p in processes)
            )
        target = Target(
            runtime="offline",
            id=info.id,
            name=info.name,
            details={"status": info.status, "posture": info.posture.to_dict()},
        )
        return Snapshot(
            target=target,
            acquired_at=now_rfc3339(),
            filesystems=tuple(states),
            notes=tuple(notes),
            container=info,
        )

    def list_running(self, *, stopped: bool = False) -> list[ContainerInfo]:
        return [self.resolve()]

    def engine_pids(self, info: ContainerInfo) -> list[int]:
        """None: the dumped processes are in the archive, not running."""
        return []

    def image_config(self, info: ContainerInfo) -> bytes | None:
        return None

    def stored_layers(self, info: ContainerInfo) -> None:
        return None

    def save_stream(self, image_id: str) -> BinaryIO:
        if self.image is None or not self.image.is_file():
            raise ImageNotFound(
                f"a checkpoint holds no image: give the image archive of {image_id or 'it'}"
            )
        return self.image.open("rb")

    def export_stream(self, container_id: str) -> BinaryIO:
        raise RuntimeUnavailable("a checkpoint holds only the changes: use its snapshot()")

    def pause(self, container_id: str) -> None:
        raise RuntimeUnavailable("a checkpoint cannot be paused")

    unpause = pause

    def terminate(self, container_id: str, remove: bool) -> None:
        raise RuntimeUnavailable("a checkpoint cannot be terminated")
