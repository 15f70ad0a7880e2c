"""A live containerd daemon, through its gRPC API, as a Runtime.

Nothing is created on the daemon: no snapshot, no lease, no exec; the calls are Get /
List / Mounts / Read / ListPids (and Pause / Resume when a frozen snapshot is asked for).

Filesystem: ``Snapshots.Mounts`` of the container's active snapshot gives the overlay
``upperdir`` (the fast path) and the ``lowerdir`` stack (the image's unpacked layers).
Baseline: ``Images.Get`` -> manifest (an index is resolved to the host's platform) ->
config -> each layer blob, read straight from the content store directory when this
host can read it, else streamed by ``Content.Read``; when the blobs were
garbage-collected (``discard_unpacked_layers``) the snapshot's lower dirs are used
instead, recorded as unverified layers.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from drifttools.acquisition.logs import cri_logs
from drifttools.acquisition.runtimes.containerd.client import ContainerdClient, discover_socket
from drifttools.acquisition.runtimes.containerd.content import blob_path, layer_sources
from drifttools.acquisition.runtimes.containerd.records import (
    POD_NAME,
    POD_NAMESPACE,
    ContainerRecord,
    RecordImage,
    SnapshotDirs,
    container_info,
    parse_selector,
    restart_history,
    select_record,
    snapshot_dirs,
)
from drifttools.acquisition.runtimes.disk import read_small
from drifttools.baseline.oci import host_platform_name, resolve_image
from drifttools.baseline.sources import LayerSource
from drifttools.errors import (
    ContainerNotFound,
    ContainerRuntimeError,
    ImageError,
    ImageNotFound,
    RuntimeUnavailable,
)
from drifttools.models import ContainerInfo, Descriptor

_JSON_LIMIT = 64 << 20
#: Seconds a killed task is given to exit.
_STOP_TIMEOUT = 30
_TASK_STATUS = {0: "unknown", 1: "created", 2: "running", 3: "exited", 4: "paused", 5: "pausing"}

#: A container's task: its status and, while it runs, its init's host pid.
_Task = tuple[str, int | None]


class ContainerdRuntime:
    """A containerd daemon reached over its gRPC socket."""

    name = "containerd"

    def __init__(self, address: str | None = None, *, namespace: str | None = None) -> None:
        self.endpoint = discover_socket(address)
        self.namespace = namespace
        self._client = ContainerdClient(self.endpoint)
        version = self._client.call("version", "Version")
        plugins = self._client.call("introspection", "Plugins", filters=[]).plugins
        self.version = {"version": version.version, "revision": version.revision}
        content_root = next(
            (
                p.exports["root"]
                for p in plugins
                if p.exports.get("root") and p.type.startswith("io.containerd.content")
            ),
            None,
        )
        self.content_root = Path(content_root) if content_root else None

    # namespaces and records

    def namespaces(self) -> list[str]:
        reply = self._client.call("namespaces", "List")
        return sorted(n.name for n in reply.namespaces)

    def _check_namespace(self, namespace: str) -> None:
        if namespace not in self.namespaces():
            raise ContainerNotFound(f"no namespace {namespace!r} in containerd at {self.endpoint}")

    def _records(self, namespace: str, filters: Sequence[str] = ()) -> list[ContainerRecord]:
        stream = self._client.stream("containers", "ListStream", namespace, filters=list(filters))
        return [_record(namespace, m.container) for m in stream]

    def _task(self, namespace: str, container_id: str) -> _Task:
        try:
            process = self._client.call(
                "tasks", "Get", namespace, container_id=container_id
            ).process
        except ContainerNotFound:
            return "stopped", None
        status = _TASK_STATUS.get(process.status, "unknown")
        running = status in ("running", "paused", "pausing") and process.pid > 0
        return status, process.pid if running else None

    def resolve(self, reference: str) -> ContainerInfo:
        """The container ``reference`` names (see :func:`parse_selector`)."""
        selector = parse_selector(reference)
        namespace = selector.namespace or self.namespace
        if namespace is not None:
            self._check_namespace(namespace)
            spaces = [namespace]
        else:
            spaces = self.namespaces()
        filters = []
        if selector.is_pod:
            filters = [
                f'labels."{POD_NAME}"=={selector.pod},'
                f'labels."{POD_NAMESPACE}"=={selector.pod_namespace}'
            ]
        records = [r for space in spaces for r in self._records(space, filters)]
        tasks: dict[str, _Task] = {}

        def task(record: ContainerRecord) -> _Task:
            key = f"{record.namespace}/{record.id}"
            if key not in tasks:
                tasks[key] = self._task(record.namespace, record.id)
            return tasks[key]

        where = f"in containerd at {self.endpoint}"
        chosen, attempts = select_record(
            records, selector, reference, lambda r: task(r)[1] is not None, where
        )
        return self._info(chosen, attempts, task)

    def _info(
        self,
        record: ContainerRecord,
        attempts: Sequence[ContainerRecord],
        task: Callable[[ContainerRecord], _Task],
    ) -> ContainerInfo:
        status, pid = task(record)
        image = self._image(record.namespace, record.image) if record.image else None
        dirs = self._snapshot(record)
        pids = self._task_pids(record.namespace, record.id) if pid is not None else []
        readable = bool(dirs and dirs.upper and os.access(dirs.upper, os.R_OK))
        history = restart_history(attempts, lambda cid: task(_by_id(attempts, cid))[0])
        return container_info(
            record,
            image,
            status=status,
            pid=pid,
            dirs=dirs,
            engine={
                "endpoint": self.endpoint,
                "version": self.version["version"],
                "revision": self.version["revision"],
                "namespace": record.namespace,
                "snapshotter": record.snapshotter,
                "content_root": str(self.content_root) if self.content_root else None,
            },
            extra={"task": {"status": status, "pid": pid, "pids": pids}, "attempts": history},
            readable=readable,
            logs=cri_logs(Path("/"), record.labels, record.id),
        )

    def _task_pids(self, namespace: str, container_id: str) -> list[int]:
        try:
            reply = self._client.call("tasks", "ListPids", namespace, container_id=container_id)
        except ContainerNotFound:
            return []
        return sorted(p.pid for p in reply.processes)

    def _namespace_for(self, container_id: str) -> str:
        for space in self.namespaces():
            if any(r.id == container_id for r in self._records(space, [f"id=={container_id}"])):
                return space
        raise ContainerNotFound(f"no container {container_id!r} in containerd at {self.endpoint}")

    def _snapshot(self, record: ContainerRecord) -> SnapshotDirs | None:
        if not record.snapshot_key:
            return None
        try:
            reply = self._client.call(
                "snapshots",
                "Mounts",
                record.namespace,
                snapshotter=record.snapshotter,
                key=record.snapshot_key,
            )
        except ContainerNotFound:
            return None
        mounts = [
            {"type": m.type, "source": m.source, "options": list(m.options)} for m in reply.mounts
        ]
        return snapshot_dirs(record.snapshotter, mounts)

    def _image(self, namespace: str, name: str) -> RecordImage | None:
        try:
            target = self._client.call("images", "Get", namespace, name=name).image.target
        except ContainerNotFound:
            return None  # the image was removed since the container was made
        manifest, config = resolve_image(
            Descriptor(target.digest, target.media_type),
            lambda digest: self._read_blob(namespace, digest),
            host_platform_name(),
            f"containerd {namespace}",
        )
        return RecordImage(manifest, config)

    def _read_blob(self, namespace: str, digest: str) -> bytes:
        path = blob_path(self.content_root, digest)
        if path is not None:
            return read_small(path)
        with self._client.read_content(namespace, digest) as stream:
            data = stream.read(_JSON_LIMIT + 1)
        if len(data) > _JSON_LIMIT:
            raise ImageError(f"content {digest} is over {_JSON_LIMIT} bytes")
        return data

    def _has_blob(self, namespace: str, digest: str) -> bool:
        try:
            self._client.call("content", "Info", namespace, digest=digest)
            return True
        except ContainerNotFound:
            return False

    # the Runtime protocol

    def list_running(self, *, stopped: bool = False) -> list[ContainerInfo]:
        """Every container with a running task, across all namespaces (only the runtime's
        ``namespace`` when it was given); with ``stopped``, every container record."""
        tasks: dict[tuple[str, str], _Task] = {}
        records = []
        spaces = [self.namespace] if self.namespace else self.namespaces()
        for space in spaces:
            for task in self._client.call("tasks", "List", space).tasks:
                status = _TASK_STATUS.get(task.status, "unknown")
                running = status in ("running", "paused") and task.pid > 0
                tasks[space, task.id] = (status, task.pid if running else None)
            records += [
                r
                for r in self._records(space)
                if stopped or tasks.get((space, r.id), ("", None))[1] is not None
            ]
        return [
            self._info(r, [r], lambda r: tasks.get((r.namespace, r.id), ("stopped", None)))
            for r in records
        ]

    def engine_pids(self, info: ContainerInfo) -> list[int]:
        """Host pids of the container's processes, as its task reports them (``ListPids``)."""
        return self._task_pids(info.namespace or self._namespace_for(info.id), info.id)

    def image_config(self, info: ContainerInfo) -> bytes | None:
        """The image's config blob, from the content store of the container's namespace."""
        if info.image_manifest is None or info.namespace is None:
            return None
        return self._read_blob(info.namespace, info.image_manifest.config.digest)

    def stored_layers(self, info: ContainerInfo) -> list[LayerSource] | None:
        manifest, namespace = info.image_manifest, info.namespace
        if manifest is None or namespace is None:
            return None

        def opener(digest: str) -> Callable[[], str | BinaryIO] | None:
            path = blob_path(self.content_root, digest)
            if path is not None:
                return lambda: str(path)
            if not self._has_blob(namespace, digest):
                return None
            return lambda: self._client.read_content(namespace, digest)

        return layer_sources(
            info.image_ref,
            manifest,
            info.diff_ids,
            opener,
            info.lower_dirs,
            f"containerd content store ({namespace})",
        )

    def save_stream(self, image_id: str) -> BinaryIO:
        raise ImageNotFound(
            f"image {image_id} is not in containerd's content store at {self.endpoint}"
        )

    def export_stream(self, container_id: str) -> BinaryIO:
        raise RuntimeUnavailable(
            f"containerd container {container_id}: its snapshotter has no readable overlay upper"
            " dir here; snapshot it with method='merged' (reads /proc/<pid>/root)"
        )

    def pause(self, container_id: str) -> None:
        namespace = self._namespace_for(container_id)
        self._client.call("tasks", "Pause", namespace, container_id=container_id)

    def unpause(self, container_id: str) -> None:
        namespace = self._namespace_for(container_id)
        self._client.call("tasks", "Resume", namespace, container_id=container_id)

    def terminate(self, container_id: str, remove: bool) -> None:
        """``Tasks.Kill`` (SIGKILL, every process; a paused task is resumed so it dies),
        waited for, then ``Tasks.Delete``; with ``remove`` the container record and its
        snapshot go too."""
        namespace = self._namespace_for(container_id)
        status, _ = self._task(namespace, container_id)
        if status != "stopped":
            if status != "exited":
                self._client.call(
                    "tasks", "Kill", namespace, container_id=container_id, signal=9, all=True
                )
            deadline = time.monotonic() + _STOP_TIMEOUT
            while (now := self._task(namespace, container_id)[0]) not in ("exited", "stopped"):
                if now in ("paused", "pausing"):  # cgroup v1: a frozen task dies once thawed
                    # it may have exited meanwhile (cgroup v2 kills frozen tasks)
                    with contextlib.suppress(ContainerRuntimeError):
                        self._client.call("tasks", "Resume", namespace, container_id=container_id)
                if time.monotonic() > deadline:
                    raise RuntimeUnavailable(
                        f"containerd task {container_id} still runs {_STOP_TIMEOUT} s after SIGKILL"
                    )
                time.sleep(0.05)
            self._client.call("tasks", "Delete", namespace, container_id=container_id)
        if remove:
            record = _by_id(self._records(namespace, [f"id=={container_id}"]), container_id)
            self._client.call("containers", "Delete", namespace, id=container_id)
            if record.snapshot_key:
                self._client.call(
                    "snapshots",
                    "Remove",
                    namespace,
                    snapshotter=record.snapshotter,
                    key=record.snapshot_key,
                )

    def close(self) -> None:
        self._client.close()


def _by_id(records: Sequence[ContainerRecord], container_id: str) -> ContainerRecord:
    return next(r for r in records if r.id == container_id)


def _record(namespace: str, container: Any) -> ContainerRecord:
    spec: dict[str, Any] = {}
    if container.spec.value:
        try:
            spec = json.loads(container.spec.value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            spec = {}
    created = container.created_at.ToJsonString() if container.HasField("created_at") else None
    updated = container.updated_at.ToJsonString() if container.HasField("updated_at") else None
    raw = {
        "id": container.id,
        "labels": dict(container.labels),
        "image": container.image,
        "runtime": {
            "name": container.runtime.name,
            "options_type": container.runtime.options.type_url,
        },
        "snapshotter": container.snapshotter,
        "snapshot_key": container.snapshot_key,
        "created_at": created,
        "updated_at": updated,
        "extensions": sorted(container.extensions.keys()),
        "spec": spec,
    }
    return ContainerRecord(
        namespace=namespace,
        id=container.id,
        labels=dict(container.labels),
        image=container.image,
        snapshotter=container.snapshotter,
        snapshot_key=container.snapshot_key,
        spec=spec,
        runtime=container.runtime.name,
        created_at=created,
        raw=raw,
    )
