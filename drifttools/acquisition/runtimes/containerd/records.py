"""containerd's container records and what they say, read from the API or from ``meta.db``.

Pure: parsing a reference into the records it selects, choosing among a Kubernetes
container's restarts, reading the OCI runtime spec's mounts and the snapshot's dirs,
and making the runtime-neutral :class:`~drifttools.models.ContainerInfo` of a record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drifttools.acquisition.runtimes.posture import spec_posture
from drifttools.baseline.oci import ImageConfig
from drifttools.errors import ContainerNotFound
from drifttools.models import ContainerInfo, ImageManifest, MountPoint

#: The namespace the CRI plugin (Kubernetes) keeps its containers in.
K8S_NAMESPACE = "k8s.io"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
CRI_KIND = "io.cri-containerd.kind"
#: Snapshotters whose active snapshot is an overlay (upper dir) or a plain directory.
OVERLAY_SNAPSHOTTERS = ("overlayfs", "fuse-overlayfs", "stargz")
DIRECTORY_SNAPSHOTTERS = ("native", "btrfs", "zfs")


@dataclass(frozen=True)
class ContainerRecord:
    """A containerd container record, from the API or from ``meta.db``."""

    namespace: str
    id: str
    labels: Mapping[str, str]
    image: str
    snapshotter: str
    snapshot_key: str
    spec: Mapping[str, Any]
    runtime: str
    created_at: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cri_kind(self) -> str | None:
        return self.labels.get(CRI_KIND)

    @property
    def display_name(self) -> str:
        pod, name = self.labels.get(POD_NAME), self.labels.get(CONTAINER_NAME)
        if pod and name:
            return f"{self.labels.get(POD_NAMESPACE, '?')}/{pod}/{name}"
        return f"{self.namespace}/{self.id}"


@dataclass(frozen=True)
class ContainerSelector:
    """Which container records a reference selects, parsed."""

    namespace: str | None  # None: every namespace
    id: str | None = None
    pod_namespace: str | None = None
    pod: str | None = None
    container: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.pod is not None


def parse_selector(reference: str) -> ContainerSelector:
    """Parse ``containerd://<ns>/<id>``, ``k8s://<pod-ns>/<pod>[/<container>]``, ``<ns>/<id>``."""
    if reference.startswith("k8s://"):
        parts = reference.removeprefix("k8s://").strip("/").split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ContainerNotFound(
                f"{reference!r}: a Kubernetes target is k8s://<pod-namespace>/<pod>[/<container>]"
            )
        return ContainerSelector(
            K8S_NAMESPACE, None, parts[0], parts[1], parts[2] if len(parts) == 3 else None
        )
    rest = reference.removeprefix("containerd://")
    namespace, _, container_id = rest.strip("/").rpartition("/")
    if not container_id:
        raise ContainerNotFound(f"{reference!r}: no container id")
    return ContainerSelector(namespace or None, container_id)


def select_record(
    records: Sequence[ContainerRecord],
    selector: ContainerSelector,
    reference: str,
    running: Callable[[ContainerRecord], bool],
    where: str,
) -> tuple[ContainerRecord, list[ContainerRecord]]:
    """The record ``selector`` names, and (for a pod container) every attempt of it, newest
    first.

    A restarted Kubernetes container leaves one record per attempt; the one with a
    running task is preferred, else the newest.
    """
    if selector.is_pod:
        found = [
            r
            for r in records
            if r.labels.get(POD_NAME) == selector.pod
            and r.labels.get(POD_NAMESPACE) == selector.pod_namespace
            and r.cri_kind in (None, "container")
        ]
        pod = f"{selector.pod_namespace}/{selector.pod}"
        if not found:
            raise ContainerNotFound(f"no pod {pod} in namespace {K8S_NAMESPACE} {where}")
        names = sorted({r.labels.get(CONTAINER_NAME, "") for r in found})
        wanted = selector.container
        if wanted is None:
            if len(names) != 1:
                raise ContainerNotFound(
                    f"pod {pod} has several containers, name one: "
                    + ", ".join(f"k8s://{pod}/{n}" for n in names)
                )
            wanted = names[0]
        attempts = [r for r in found if r.labels.get(CONTAINER_NAME) == wanted]
        if not attempts:
            raise ContainerNotFound(
                f"pod {pod} has no container {wanted!r} (has {', '.join(names)})"
            )
        attempts.sort(key=lambda r: r.created_at or "", reverse=True)
        chosen = next((r for r in attempts if running(r)), attempts[0])
        return chosen, attempts
    assert selector.id is not None
    exact = [r for r in records if r.id == selector.id]
    matches = exact or [r for r in records if r.id.startswith(selector.id)]
    if not matches:
        raise ContainerNotFound(f"no container {reference!r} {where}")
    if len(matches) > 1:
        ambiguous = ", ".join(sorted(f"{r.namespace}/{r.id}" for r in matches))
        raise ContainerNotFound(f"{reference!r} is ambiguous {where}: {ambiguous}")
    return matches[0], [matches[0]]


def restart_history(
    attempts: Sequence[ContainerRecord], status: Callable[[str], str]
) -> list[dict[str, Any]]:
    """Each attempt of a container (newest first) with the status of its task."""
    return [{"id": r.id, "created_at": r.created_at, "status": status(r.id)} for r in attempts]


@dataclass(frozen=True)
class SnapshotDirs:
    """Where a container's active snapshot lives on the host."""

    snapshotter: str
    upper: str | None  # overlay upper dir
    lowers: tuple[str, ...]  # overlay lower dirs, top first
    directory: str | None = None  # a directory snapshotter's full rootfs
    mounts: tuple[Mapping[str, Any], ...] = ()


def snapshot_dirs(snapshotter: str, mounts: Sequence[Mapping[str, Any]]) -> SnapshotDirs:
    """Read the upper and lower dirs from the mounts containerd would make."""
    upper: str | None = None
    lowers: tuple[str, ...] = ()
    directory: str | None = None
    for mount in mounts:
        options = list(mount.get("options", []))
        if mount.get("type") in ("overlay", "fuse3.fuse-overlayfs"):
            for option in options:
                key, _, value = option.partition("=")
                if key == "upperdir":
                    upper = value
                elif key == "lowerdir":
                    lowers = tuple(value.split(":"))
        elif mount.get("type") == "bind" or "bind" in options or "rbind" in options:
            if snapshotter in OVERLAY_SNAPSHOTTERS:
                lowers = (str(mount.get("source")),)  # a committed view: one lower only
            else:
                directory = str(mount.get("source"))
    return SnapshotDirs(snapshotter, upper, lowers, directory, tuple(mounts))


def spec_mounts(spec: Mapping[str, Any]) -> list[MountPoint]:
    """The OCI spec's mounts as the engine's record (volumes, binds, tmpfs)."""
    found = []
    for mount in spec.get("mounts") or []:
        destination = str(mount.get("destination", ""))
        fstype = str(mount.get("type") or "bind")
        options = list(mount.get("options") or [])
        source = str(mount.get("source", ""))
        if fstype == "bind" or "bind" in options or "rbind" in options:
            kind = "volume" if "/volumes/" in source else "bind"
        elif fstype == "tmpfs":
            kind = "tmpfs"
        else:
            kind = "pseudo"
        found.append(MountPoint(destination, fstype, source, "", ",".join(options), kind))
    return found


@dataclass(frozen=True)
class RecordImage:
    """The image a container record names, resolved in the content store."""

    manifest: ImageManifest
    config: ImageConfig


def container_info(
    record: ContainerRecord,
    image: RecordImage | None,
    *,
    status: str,
    pid: int | None,
    dirs: SnapshotDirs | None,
    engine: Mapping[str, Any],
    extra: Mapping[str, Any],
    runtime: str = "containerd",
    readable: bool = True,
) -> ContainerInfo:
    """The runtime-neutral record of a containerd container."""
    upper = dirs.upper if dirs and readable else None
    manifest = image.manifest if image else None
    return ContainerInfo(
        runtime=runtime,
        id=record.id,
        name=record.display_name,
        image_id=manifest.config.digest if manifest else "",
        image_ref=record.image or None,
        diff_ids=tuple(image.config.diff_ids) if image else (),
        status=status,
        pid=pid,
        storage_driver=record.snapshotter,
        upper_dir=upper,
        mounts=tuple(spec_mounts(record.spec)),
        posture=spec_posture(record.spec),
        labels=dict(record.labels),
        engine=dict(engine),
        raw={
            "namespace": record.namespace,
            "container": dict(record.raw),
            "image": {
                "name": record.image,
                "target": image.manifest.target.digest,
                "manifest": image.manifest.digest,
                "config": image.manifest.config.digest,
                "platform": image.manifest.platform,
                "problems": [*image.manifest.problems, *image.config.problems],
            }
            if image
            else None,
            "snapshot": {
                "snapshotter": dirs.snapshotter,
                "upper": dirs.upper,
                "lowers": list(dirs.lowers),
                "directory": dirs.directory,
                "mounts": [dict(m) for m in dirs.mounts],
            }
            if dirs
            else None,
            **extra,
        },
        namespace=record.namespace,
        lower_dirs=dirs.lowers if dirs else (),
        image_manifest=manifest,
    )
