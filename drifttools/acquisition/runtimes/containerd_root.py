"""A dead host's containerd root (``/var/lib/containerd`` of a mounted disk image), no daemon.

Records come from the metadata database ``io.containerd.metadata.v1.bolt/meta.db``
(bucket ``v1/<namespace>/containers|images|snapshots``), read with our read-only bbolt
reader; blobs from the content store ``io.containerd.content.v1.content/blobs``; the
container's snapshot from its snapshotter's own ``metadata.db`` (``v1/snapshots/<name>``:
a numeric id naming ``snapshots/<id>/``, and its parent chain). Overlayfs gives the upper
dir ``snapshots/<id>/fs`` and the lower dirs of the parents. Nothing is written under the
root: the databases are read with ``pread`` on read-only descriptors, without locks.

Host paths in the records (a mount's source, the CRI logs under ``/var/log/pods``) are the
dead host's: they are looked up under its root (``/mnt/disk`` for
``/mnt/disk/var/lib/containerd``), never on this machine, and not at all when the root is
not at its standard place. Volumes (a source with ``/volumes/`` in it: the kubelet's pod
volumes) are read as mounts with no baseline; binds, like ``docker-root://``'s, are not.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from google.protobuf import any_pb2

from drifttools.acquisition.logs import cri_logs, host_root_of
from drifttools.acquisition.runtimes.bbolt import BoltDB, BoltError, Bucket
from drifttools.acquisition.runtimes.containerd.content import blob_path, layer_sources
from drifttools.acquisition.runtimes.containerd.records import (
    DIRECTORY_SNAPSHOTTERS,
    OVERLAY_SNAPSHOTTERS,
    ContainerRecord,
    RecordImage,
    SnapshotDirs,
    container_info,
    parse_selector,
    restart_history,
    select_record,
)
from drifttools.acquisition.runtimes.disk import fragment_of, read_small
from drifttools.baseline.oci import host_platform_name, resolve_image
from drifttools.baseline.sources import LayerSource
from drifttools.errors import ContainerNotFound, ImageNotFound, RuntimeUnavailable
from drifttools.models import ContainerInfo, Descriptor, MountPoint

META_DB = "io.containerd.metadata.v1.bolt/meta.db"
CONTENT = "io.containerd.content.v1.content"
_GO_EPOCH_OFFSET = 62135596800  # seconds from 0001-01-01 to 1970-01-01


def go_time(raw: bytes | None) -> str | None:
    """A Go ``time.Time.MarshalBinary`` value as RFC 3339 UTC."""
    if not raw or raw[0] not in (1, 2) or len(raw) < 15:
        return None
    seconds = int.from_bytes(raw[1:9], "big", signed=True) - _GO_EPOCH_OFFSET
    nanos = int.from_bytes(raw[9:13], "big")
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _uvarint(raw: bytes) -> int:
    value, shift = 0, 0
    for byte in raw:
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
    raise BoltError("truncated varint")


def _texts(bucket: Bucket | None) -> dict[str, str]:
    if bucket is None:
        return {}
    return {
        key.decode("utf-8", "replace"): value.decode("utf-8", "replace")
        for key, value in bucket.items()
        if isinstance(value, bytes)
    }


class ContainerdRootRuntime:
    """Reads a containerd root from disk; ``resolve`` takes ``<namespace>/<id>`` or ``k8s://``."""

    name = "containerd-root"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.endpoint = f"containerd-root://{self.root}"
        if not (self.root / META_DB).is_file():
            raise RuntimeUnavailable(f"{self.root} is not a containerd root (no {META_DB})")
        self.content_root = self.root / CONTENT
        standard = Path("var/lib/containerd").parts
        #: the dead host's root, where its host paths are; None: not known
        self.host_root = (
            host_root_of(self.root, "var/lib/containerd")
            if self.root.parts[-len(standard) :] == standard
            else None
        )

    def _meta(self) -> BoltDB:
        try:
            return BoltDB(self.root / META_DB)
        except BoltError as exc:
            raise RuntimeUnavailable(f"{self.root}: metadata database unreadable: {exc}") from exc

    def namespaces(self) -> list[str]:
        with self._meta() as db:
            v1 = db.root.bucket("v1")
            return [name for name, _ in v1.buckets()] if v1 else []

    def _records(self, db: BoltDB, namespace: str) -> list[ContainerRecord]:
        containers = db.root.bucket("v1", namespace, "containers")
        if containers is None:
            return []
        return [_record(namespace, cid, bucket) for cid, bucket in containers.buckets()]

    def resolve(self, reference: str) -> ContainerInfo:
        wanted = fragment_of(reference, self.name)
        selector = parse_selector(wanted)
        spaces = self.namespaces()
        if selector.namespace is not None and selector.namespace not in spaces:
            raise ContainerNotFound(f"no namespace {selector.namespace!r} in {self.root}")
        with self._meta() as db:
            chosen_spaces = [selector.namespace] if selector.namespace else spaces
            records = [r for space in chosen_spaces for r in self._records(db, space)]
            chosen, attempts = select_record(
                records, selector, wanted, lambda _r: False, f"in {self.root}"
            )
            image = self._image(db, chosen.namespace, chosen.image) if chosen.image else None
        dirs = self._snapshot(chosen)
        logs = cri_logs(self.host_root, chosen.labels, chosen.id) if self.host_root else ()
        info = container_info(
            chosen,
            image,
            status="stopped (offline)",
            pid=None,
            dirs=dirs,
            engine={
                "format": self.name,
                "root": str(self.root),
                "namespace": chosen.namespace,
                "offline": True,
            },
            extra={"attempts": restart_history(attempts, lambda _id: "offline")},
            runtime="offline",
            logs=logs,
        )
        return replace(info, mounts=tuple(self._rebased(m) for m in info.mounts))

    def _rebased(self, mount: MountPoint) -> MountPoint:
        """A volume's source as a directory under the dead host's root (no source when it
        is not there, or a path component is a symlink); a bind's, none (not read)."""
        if mount.kind not in ("volume", "bind") or not mount.source:
            return mount
        parts = PurePosixPath(mount.source).parts[1:]
        source = ""
        if mount.kind == "volume" and self.host_root is not None and ".." not in parts:
            found = _unlinked_dir(self.host_root, parts)
            source = str(found) if found is not None else ""
        return replace(mount, source=source)

    def _image(self, db: BoltDB, namespace: str, name: str) -> RecordImage | None:
        record = db.root.bucket("v1", namespace, "images", name)
        if record is None:
            return None
        target = _texts(record.bucket("target"))
        manifest, config = resolve_image(
            Descriptor(target.get("digest", ""), target.get("mediatype", "")),
            self._read_blob,
            host_platform_name(),
            str(self.root),
        )
        return RecordImage(manifest, config)

    def _read_blob(self, digest: str) -> bytes:
        path = blob_path(self.content_root, digest)
        if path is None:
            raise ImageNotFound(f"{self.root}: blob {digest} is not in the content store")
        return read_small(path)

    def _snapshot(self, record: ContainerRecord) -> SnapshotDirs | None:
        """The snapshot's dirs, from the namespace's record and the snapshotter's own db."""
        snapshotter = record.snapshotter
        if snapshotter not in (*OVERLAY_SNAPSHOTTERS, *DIRECTORY_SNAPSHOTTERS):
            raise RuntimeUnavailable(
                f"{record.display_name}: snapshotter {snapshotter!r} is not supported offline"
                " (overlayfs, native)"
            )
        with self._meta() as db:
            entry = db.root.bucket(
                "v1", record.namespace, "snapshots", snapshotter, record.snapshot_key
            )
            backend_name = entry.text("name") if entry is not None else None
        if backend_name is None:
            return None
        base = self.root / f"io.containerd.snapshotter.v1.{snapshotter}"
        try:
            db = BoltDB(base / "metadata.db")
        except BoltError as exc:
            raise RuntimeUnavailable(f"{base}: snapshotter database unreadable: {exc}") from exc
        chain: list[str] = []
        with db:
            snapshots = db.root.bucket("v1", "snapshots")
            name: str | None = backend_name
            while name and snapshots is not None and len(chain) < 512:
                info = snapshots.bucket(name)
                if info is None:
                    break
                number = _uvarint(info.value("id") or b"\x00")
                chain.append(str(base / "snapshots" / str(number)))
                name = info.text("parent")
        if not chain:
            return None
        if snapshotter in DIRECTORY_SNAPSHOTTERS:
            return SnapshotDirs(snapshotter, None, (), chain[0])
        upper = f"{chain[0]}/fs"
        lowers = tuple(f"{path}/fs" for path in chain[1:])
        options = [f"upperdir={upper}", f"lowerdir={':'.join(lowers)}"]
        return SnapshotDirs(
            snapshotter, upper, lowers, None, ({"type": "overlay", "options": options},)
        )

    def list_running(self, *, stopped: bool = False) -> list[ContainerInfo]:
        """Every container of every namespace (none runs: the host is down)."""
        with self._meta() as db:
            records = [r for space in self.namespaces() for r in self._records(db, space)]
        return [self.resolve(f"{r.namespace}/{r.id}") for r in records]

    def engine_pids(self, info: ContainerInfo) -> list[int]:
        """None: no process runs on a dead host."""
        return []

    def image_config(self, info: ContainerInfo) -> bytes | None:
        """The image's config blob, from the content store on the disk."""
        if info.image_manifest is None:
            return None
        return self._read_blob(info.image_manifest.config.digest)

    def stored_layers(self, info: ContainerInfo) -> list[LayerSource] | None:
        if info.image_manifest is None:
            return None

        def opener(digest: str) -> Callable[[], str | BinaryIO] | None:
            path = blob_path(self.content_root, digest)
            return (lambda: str(path)) if path is not None else None

        return layer_sources(
            info.image_ref,
            info.image_manifest,
            info.diff_ids,
            opener,
            info.lower_dirs,
            f"content store {self.content_root}",
        )

    def save_stream(self, image_id: str) -> BinaryIO:
        raise ImageNotFound(f"image {image_id} is not in {self.root}")

    def export_stream(self, container_id: str) -> BinaryIO:
        raise RuntimeUnavailable(f"{container_id}: no overlay upper dir in {self.root}")

    def pause(self, container_id: str) -> None:
        raise RuntimeUnavailable("a dead host's container cannot be paused")

    unpause = pause

    def terminate(self, container_id: str, remove: bool) -> None:
        raise RuntimeUnavailable("a dead host's container cannot be terminated")


def _unlinked_dir(root: Path, parts: tuple[str, ...]) -> Path | None:
    """``root/parts...`` when it is a directory reached through no symlink, else None."""
    path = root
    for part in parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return None
        if not stat.S_ISDIR(mode):
            return None
    return path if parts else None


def _record(namespace: str, container_id: str, bucket: Bucket) -> ContainerRecord:
    spec: Mapping[str, Any] = {}
    raw_spec = bucket.value("spec")
    if raw_spec:
        try:
            spec = json.loads(any_pb2.Any.FromString(raw_spec).value)
        except (ValueError, UnicodeDecodeError):
            spec = {}
    runtime = bucket.bucket("runtime")
    runtime_name = runtime.text("name") if runtime else None
    labels = _texts(bucket.bucket("labels"))
    image = bucket.text("image") or ""
    snapshotter = bucket.text("snapshotter") or ""
    snapshot_key = bucket.text("snapshotKey") or ""
    created = go_time(bucket.value("createdat"))
    raw = {
        "id": container_id,
        "labels": labels,
        "image": image,
        "runtime": {"name": runtime_name},
        "snapshotter": snapshotter,
        "snapshot_key": snapshot_key,
        "created_at": created,
        "updated_at": go_time(bucket.value("updatedat")),
        "spec": spec,
    }
    return ContainerRecord(
        namespace=namespace,
        id=container_id,
        labels=labels,
        image=image,
        snapshotter=snapshotter,
        snapshot_key=snapshot_key,
        spec=spec,
        runtime=runtime_name or "",
        created_at=created,
        raw=raw,
    )
