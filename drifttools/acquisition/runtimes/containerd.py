"""containerd, through its gRPC API (our own client over ``grpcio``). The only module that
speaks containerd's API; :mod:`drifttools.acquisition.runtimes.containerd_root` reads the same
records
from a dead host's disk and shares the record logic below.

Every call carries the ``containerd-namespace`` metadata. Nothing is created on the
daemon: no snapshot, no lease, no exec; the calls are Get / List / Mounts / Read /
ListPids (and Pause / Resume when a frozen snapshot is asked for).

Filesystem: ``Snapshots.Mounts`` of the container's active snapshot gives the overlay
``upperdir`` (the fast path) and the ``lowerdir`` stack (the image's unpacked layers).
Baseline: ``Images.Get`` -> manifest (an index is resolved to the host's platform) ->
config -> each layer blob, read straight from the content store directory when this
host can read it, else streamed by ``Content.Read``; when the blobs were
garbage-collected (``discard_unpacked_layers``) the snapshot's lower dirs are used
instead, recorded as unverified layers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import grpc
from google.protobuf import message_factory

from drifttools.acquisition.runtime import BlobLayer, LayerSource, UnpackedLayer, split_reference
from drifttools.acquisition.runtimes._containerd import (
    containers_pb2,
    content_pb2,
    images_pb2,
    introspection_pb2,
    namespace_pb2,
    snapshots_pb2,
    tasks_pb2,
    version_pb2,
)
from drifttools.baseline.image import INDEX_TYPES, host_platform_name
from drifttools.errors import (
    ContainerNotFound,
    ImageError,
    ImageNotFound,
    PermissionDenied,
    RuntimeUnavailable,
)
from drifttools.models import ContainerInfo, MountPoint

#: Where containerd listens, tried in order when no address is given.
DEFAULT_SOCKETS = (
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/run/docker/containerd/containerd.sock",
)
#: The namespace the CRI plugin (Kubernetes) keeps its containers in.
K8S_NAMESPACE = "k8s.io"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
CRI_KIND = "io.cri-containerd.kind"
#: Snapshotters whose active snapshot is an overlay (upper dir) or a plain directory.
OVERLAY_SNAPSHOTTERS = ("overlayfs", "fuse-overlayfs", "stargz")
DIRECTORY_SNAPSHOTTERS = ("native", "btrfs", "zfs")
MAX_MESSAGE = 64 << 20
_JSON_LIMIT = 64 << 20
_TIMEOUT = 30.0
_TASK_STATUS = {0: "unknown", 1: "created", 2: "running", 3: "exited", 4: "paused", 5: "pausing"}
_SERVICES = {
    "containers": (containers_pb2, "Containers"),
    "tasks": (tasks_pb2, "Tasks"),
    "images": (images_pb2, "Images"),
    "content": (content_pb2, "Content"),
    "snapshots": (snapshots_pb2, "Snapshots"),
    "namespaces": (namespace_pb2, "Namespaces"),
    "version": (version_pb2, "Version"),
    "introspection": (introspection_pb2, "Introspection"),
}


# --- records shared with the dead-host reader ---------------------------------------------


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
class Target:
    """What a reference asks for, parsed."""

    namespace: str | None  # None: every namespace
    id: str | None = None
    pod_namespace: str | None = None
    pod: str | None = None
    container: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.pod is not None


def parse_target(reference: str) -> Target:
    """Parse ``containerd://<ns>/<id>``, ``k8s://<pod-ns>/<pod>[/<container>]``, ``<ns>/<id>``."""
    scheme, rest = split_reference(reference)
    if scheme == "k8s" or reference.startswith("k8s://"):
        parts = reference.removeprefix("k8s://").strip("/").split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ContainerNotFound(
                f"{reference!r}: a Kubernetes target is k8s://<pod-namespace>/<pod>[/<container>]"
            )
        return Target(
            K8S_NAMESPACE, None, parts[0], parts[1], parts[2] if len(parts) == 3 else None
        )
    namespace, _, container_id = rest.strip("/").rpartition("/")
    if not container_id:
        raise ContainerNotFound(f"{reference!r}: no container id")
    return Target(namespace or None, container_id)


def select_record(
    records: Sequence[ContainerRecord],
    target: Target,
    reference: str,
    running: Callable[[ContainerRecord], bool],
    where: str,
) -> tuple[ContainerRecord, list[ContainerRecord]]:
    """The record ``target`` names, and (for a pod container) every attempt of it, newest first.

    A restarted Kubernetes container leaves one record per attempt; the one with a
    running task is preferred, else the newest.
    """
    if target.is_pod:
        found = [
            r
            for r in records
            if r.labels.get(POD_NAME) == target.pod
            and r.labels.get(POD_NAMESPACE) == target.pod_namespace
            and r.cri_kind in (None, "container")
        ]
        if not found:
            raise ContainerNotFound(
                f"no pod {target.pod_namespace}/{target.pod} in namespace {K8S_NAMESPACE} {where}"
            )
        names = sorted({r.labels.get(CONTAINER_NAME, "") for r in found})
        wanted = target.container
        if wanted is None:
            if len(names) != 1:
                raise ContainerNotFound(
                    f"pod {target.pod_namespace}/{target.pod} has several containers, name one: "
                    + ", ".join(f"k8s://{target.pod_namespace}/{target.pod}/{n}" for n in names)
                )
            wanted = names[0]
        attempts = [r for r in found if r.labels.get(CONTAINER_NAME) == wanted]
        if not attempts:
            raise ContainerNotFound(
                f"pod {target.pod_namespace}/{target.pod} has no container {wanted!r}"
                f" (has {', '.join(names)})"
            )
        attempts.sort(key=lambda r: r.created_at or "", reverse=True)
        chosen = next((r for r in attempts if running(r)), attempts[0])
        return chosen, attempts
    assert target.id is not None
    exact = [r for r in records if r.id == target.id]
    matches = exact or [r for r in records if r.id.startswith(target.id)]
    if not matches:
        raise ContainerNotFound(f"no container {reference!r} {where}")
    if len(matches) > 1:
        names = ", ".join(sorted(f"{r.namespace}/{r.id}" for r in matches))
        raise ContainerNotFound(f"{reference!r} is ambiguous {where}: {names}")
    return matches[0], [matches[0]]


def restart_history(attempts: Sequence[ContainerRecord], status: Callable[[str], str]) -> list:
    return [{"id": r.id, "created_at": r.created_at, "status": status(r.id)} for r in attempts]


@dataclass(frozen=True)
class ResolvedImage:
    """An image's manifest chain, each JSON blob checked against the digest that named it."""

    name: str
    target: str  # the digest the image record points at (index or manifest)
    manifest_digest: str
    config_digest: str
    config: bytes
    layers: tuple[Mapping[str, Any], ...]  # the manifest's layer descriptors
    diff_ids: tuple[str, ...]
    platform: str
    problems: tuple[str, ...] = ()


def resolve_image(
    name: str, target: Mapping[str, Any], read_blob: Callable[[str], bytes], where: str
) -> ResolvedImage:
    """Follow ``target`` (index -> this platform's manifest -> config) through ``read_blob``."""
    problems: list[str] = []
    wanted = host_platform_name()

    def checked(digest: str, what: str) -> bytes:
        data = read_blob(digest)
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            problems.append(f"{what} {digest} hashes to {actual}")
        return data

    digest = str(target.get("digest", ""))
    media_type = str(target.get("media_type") or target.get("mediaType") or "")
    document = _json(checked(digest, "manifest"), where)
    while media_type in INDEX_TYPES or "manifests" in document:
        chosen = None
        for descriptor in document.get("manifests", []):
            spec = descriptor.get("platform") or {}
            names = {f"{spec.get('os')}/{spec.get('architecture')}"}
            if spec.get("variant"):
                names.add(f"{spec.get('os')}/{spec.get('architecture')}/{spec['variant']}")
            if wanted in names:
                chosen = descriptor
                break
        if chosen is None:
            raise ImageError(f"{where}: image {name} has no manifest for {wanted}")
        digest, media_type = chosen["digest"], chosen.get("mediaType", "")
        document = _json(checked(digest, "manifest"), where)
    config_digest = str((document.get("config") or {}).get("digest", ""))
    config = checked(config_digest, "config")
    diff_ids = tuple(_json(config, where).get("rootfs", {}).get("diff_ids", []))
    layers = tuple(document.get("layers", []))
    if len(diff_ids) != len(layers):
        raise ImageError(f"{where}: {name}: {len(diff_ids)} diff_ids for {len(layers)} layers")
    return ResolvedImage(
        name,
        str(target.get("digest", "")),
        digest,
        config_digest,
        config,
        layers,
        diff_ids,
        wanted,
        tuple(problems),
    )


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
    upper, lowers, directory = None, (), None
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


def layer_sources(
    image: ResolvedImage,
    blob: Callable[[str], Callable[[], str | BinaryIO] | None],
    dirs: SnapshotDirs | None,
    location: str,
) -> list[LayerSource]:
    """Each layer as its blob (verified when read), or the snapshot's lower dir when
    the blob is gone (garbage-collected after unpacking)."""
    openers = [blob(str(layer.get("digest", ""))) for layer in image.layers]
    if all(opener is not None for opener in openers):
        problems = tuple(f"image manifest chain: {p}" for p in image.problems)
        return [
            BlobLayer(
                diff_id=diff_id,
                digest=str(layer.get("digest")),
                media_type=str(layer.get("mediaType", "")),
                size=layer.get("size"),
                open=opener,
                location=location,
                problems=problems,
            )
            for diff_id, layer, opener in zip(image.diff_ids, image.layers, openers, strict=True)
            if opener is not None
        ]
    lowers = list(reversed(dirs.lowers)) if dirs else []
    if len(lowers) != len(image.diff_ids):
        missing = sum(opener is None for opener in openers)
        raise ImageNotFound(
            f"{location}: {missing} layer blob(s) of {image.name} are not in the content store"
            f" and the snapshot has {len(lowers)} lower dirs for {len(image.diff_ids)} layers"
        )
    reason = (
        "layer blob not in the content store (garbage-collected after unpacking:"
        " discard_unpacked_layers?); read from the snapshot's lower dir, not verifiable"
    )
    return [
        UnpackedLayer(diff_id, Path(lower), reason)
        for diff_id, lower in zip(image.diff_ids, lowers, strict=True)
    ]


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


def spec_posture(spec: Mapping[str, Any]) -> dict[str, Any]:
    """How exposed the host is to this container, from its OCI runtime spec."""
    process = spec.get("process") or {}
    linux = spec.get("linux") or {}
    caps = set((process.get("capabilities") or {}).get("effective") or [])
    namespaces = {n.get("type"): n.get("path") for n in linux.get("namespaces") or []}
    sources = [str(m.get("source", "")) for m in spec.get("mounts") or []]
    binds = [
        str(m.get("source", ""))
        for m in spec.get("mounts") or []
        if m.get("type") == "bind" or "rbind" in (m.get("options") or [])
    ]
    user = process.get("user") or {}
    from drifttools.acquisition.runtimes.docker import _SENSITIVE_SOURCES

    return {
        "privileged": "CAP_SYS_ADMIN" in caps and not linux.get("maskedPaths"),
        "capabilities": sorted(caps),
        "user": f"{user.get('uid', 0)}:{user.get('gid', 0)}",
        "read_only_rootfs": bool((spec.get("root") or {}).get("readonly")),
        "host_pid": "pid" not in namespaces,
        "host_network": "network" not in namespaces,
        "host_ipc": "ipc" not in namespaces,
        "host_uts": "uts" not in namespaces,
        "userns": "user" in namespaces,
        "seccomp": "profile" if linux.get("seccomp") else "unconfined",
        "apparmor": process.get("apparmorProfile") or None,
        "no_new_privileges": bool(process.get("noNewPrivileges")),
        "devices": [d.get("path") for d in linux.get("devices") or []],
        "sensitive_mounts": sorted({s for s in sources if s in _SENSITIVE_SOURCES}),
        "host_paths": sorted(set(binds)),
    }


def container_info(
    record: ContainerRecord,
    image: ResolvedImage | None,
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
    return ContainerInfo(
        runtime=runtime,
        id=record.id,
        name=record.display_name,
        image_id=image.config_digest if image else "",
        image_ref=record.image or None,
        diff_ids=image.diff_ids if image else (),
        status=status,
        pid=pid,
        storage_driver=record.snapshotter,
        upper_dir=upper,
        mounts=tuple(spec_mounts(record.spec)),
        posture=spec_posture(record.spec),
        engine=dict(engine),
        raw={
            "namespace": record.namespace,
            "container": dict(record.raw),
            "image": {
                "name": image.name,
                "target": image.target,
                "manifest": image.manifest_digest,
                "config": image.config_digest,
                "platform": image.platform,
                "problems": list(image.problems),
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
    )


def blob_path(content_root: Path | None, digest: str) -> Path | None:
    """The content store file of ``digest``, when it is a readable regular file here."""
    algorithm, _, hexdigest = digest.partition(":")
    if content_root is None or algorithm != "sha256" or len(hexdigest) != 64:
        return None
    if not all(c in "0123456789abcdef" for c in hexdigest):
        return None
    path = content_root / "blobs" / "sha256" / hexdigest
    try:
        info = path.lstat()
    except OSError:
        return None
    return path if stat.S_ISREG(info.st_mode) and os.access(path, os.R_OK) else None


def read_small(path: Path, limit: int = _JSON_LIMIT) -> bytes:
    """A JSON-sized regular file, never following a final symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"{path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImageError(f"{path} is over {limit} bytes")
    return data


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImageError(f"{where}: not valid JSON: {exc}") from exc


# --- the gRPC client ----------------------------------------------------------------------


def discover_socket(address: str | None = None) -> str:
    """The containerd socket: ``address``, ``$CONTAINERD_ADDRESS``, or the first well-known
    socket that exists."""
    explicit = address or os.environ.get("CONTAINERD_ADDRESS")
    if explicit:
        path = explicit.removeprefix("unix://")
        if not os.path.exists(path):
            raise RuntimeUnavailable(f"no containerd socket at {path}")
        return path
    for candidate in DEFAULT_SOCKETS:
        try:
            if stat.S_ISSOCK(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    raise RuntimeUnavailable(
        "no containerd socket found (tried " + ", ".join(DEFAULT_SOCKETS) + "); pass its address"
    )


class _Client:
    """Raw unary and server-streaming calls on containerd's services, namespaced."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self._channel = grpc.insecure_channel(
            f"unix://{socket}",
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.default_authority", "localhost"),
            ],
        )
        self._callables: dict[tuple[str, str], tuple[Any, Any]] = {}

    def close(self) -> None:
        self._channel.close()

    def _method(self, service: str, method: str) -> tuple[Any, Any]:
        key = (service, method)
        if key not in self._callables:
            module, name = _SERVICES[service]
            descriptor = module.DESCRIPTOR.services_by_name[name].methods_by_name[method]
            request = message_factory.GetMessageClass(descriptor.input_type)
            response = message_factory.GetMessageClass(descriptor.output_type)
            path = f"/{descriptor.containing_service.full_name}/{method}"
            factory = (
                self._channel.unary_stream
                if descriptor.server_streaming
                else self._channel.unary_unary
            )
            call = factory(
                path,
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            self._callables[key] = (call, request)
        return self._callables[key]

    def call(self, service: str, method: str, namespace: str | None = None, **fields: Any) -> Any:
        """One unary call (or, for a streaming method, an iterator of its messages)."""
        call, request = self._method(service, method)
        metadata = (("containerd-namespace", namespace),) if namespace else ()
        streaming = isinstance(call, grpc.UnaryStreamMultiCallable)
        return call(request(**fields), metadata=metadata, timeout=None if streaming else _TIMEOUT)


class _ContentReader(io.RawIOBase):
    """A content store blob as a file object, over ``Content.Read``'s stream."""

    def __init__(self, chunks: Iterator[Any], on_error: Callable[[grpc.RpcError], Exception]):
        self._chunks = chunks
        self._pending = b""
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            try:
                self._pending = next(self._chunks).data
            except StopIteration:
                return 0
            except grpc.RpcError as exc:
                raise self._on_error(exc) from exc
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


class ContainerdRuntime:
    """A containerd daemon reached over its gRPC socket."""

    name = "containerd"

    def __init__(self, address: str | None = None, *, namespace: str | None = None) -> None:
        self.endpoint = discover_socket(address)
        self.namespace = namespace
        self._client = _Client(self.endpoint)
        try:
            version = self._client.call("version", "Version")
            plugins = self._client.call("introspection", "Plugins", filters=[]).plugins
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        self.version = {"version": version.version, "revision": version.revision}
        self._plugin_roots = {
            f"{p.type}/{p.id}": p.exports.get("root") for p in plugins if p.exports.get("root")
        }
        content_root = next(
            (
                root
                for key, root in self._plugin_roots.items()
                if key.startswith("io.containerd.content")
            ),
            None,
        )
        self.content_root = Path(content_root) if content_root else None
        self.host_access = self.content_root is not None and os.access(self.content_root, os.R_OK)
        self._images: dict[str, ResolvedImage] = {}
        self._namespace_of: dict[str, str] = {}

    # errors

    def _error(self, exc: grpc.RpcError, what: str = "") -> Exception:
        code = exc.code() if hasattr(exc, "code") else None
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        where = f"containerd at {self.endpoint}"
        if code == grpc.StatusCode.NOT_FOUND:
            return ContainerNotFound(f"{what or 'not found'} on {where}: {detail}")
        if code == grpc.StatusCode.PERMISSION_DENIED or "ermission denied" in str(detail):
            return PermissionDenied(f"permission denied talking to {where}")
        if code == grpc.StatusCode.UNAVAILABLE:
            return RuntimeUnavailable(f"cannot reach {where}: is containerd running? ({detail})")
        return RuntimeUnavailable(f"{where}: {code.name if code else 'error'}: {detail}")

    def _call(self, service: str, method: str, namespace: str | None, what: str = "", **kw: Any):
        try:
            return self._client.call(service, method, namespace, **kw)
        except grpc.RpcError as exc:
            raise self._error(exc, what) from exc

    # namespaces and records

    def namespaces(self) -> list[str]:
        reply = self._call("namespaces", "List", None)
        return sorted(n.name for n in reply.namespaces)

    def _check_namespace(self, namespace: str) -> None:
        if namespace not in self.namespaces():
            raise ContainerNotFound(f"no namespace {namespace!r} in containerd at {self.endpoint}")

    def _records(self, namespace: str, filters: Sequence[str] = ()) -> list[ContainerRecord]:
        try:
            stream = self._client.call("containers", "ListStream", namespace, filters=list(filters))
            return [_record(namespace, m.container) for m in stream]
        except grpc.RpcError as exc:
            raise self._error(exc) from exc

    def _task(self, namespace: str, container_id: str) -> tuple[str, int | None]:
        try:
            process = self._client.call(
                "tasks", "Get", namespace, container_id=container_id
            ).process
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "stopped", None
            raise self._error(exc) from exc
        status = _TASK_STATUS.get(process.status, "unknown")
        running = status in ("running", "paused", "pausing") and process.pid > 0
        return status, process.pid if running else None

    def resolve(self, reference: str) -> ContainerInfo:
        """The container ``reference`` names (see :func:`parse_target`)."""
        target = parse_target(reference)
        namespace = target.namespace or self.namespace
        if namespace is not None:
            self._check_namespace(namespace)
            spaces = [namespace]
        else:
            spaces = self.namespaces()
        filters = []
        if target.is_pod:
            filters = [
                f'labels."{POD_NAME}"=={target.pod},labels."{POD_NAMESPACE}"=={target.pod_namespace}'
            ]
        records = [r for space in spaces for r in self._records(space, filters)]
        tasks: dict[str, tuple[str, int | None]] = {}

        def task(record: ContainerRecord) -> tuple[str, int | None]:
            key = f"{record.namespace}/{record.id}"
            if key not in tasks:
                tasks[key] = self._task(record.namespace, record.id)
            return tasks[key]

        where = f"in containerd at {self.endpoint}"
        chosen, attempts = select_record(
            records, target, reference, lambda r: task(r)[1] is not None, where
        )
        return self._info(chosen, attempts, task)

    def _info(
        self,
        record: ContainerRecord,
        attempts: Sequence[ContainerRecord],
        task: Callable[[ContainerRecord], tuple[str, int | None]],
    ) -> ContainerInfo:
        status, pid = task(record)
        image = self._image(record.namespace, record.image) if record.image else None
        if image is not None:
            self._images[image.config_digest] = image
            self._namespace_of[image.config_digest] = record.namespace
        dirs = self._snapshot(record)
        pids = self.pids(record.id, record.namespace) if pid is not None else []
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
        )

    def pids(self, container_id: str, namespace: str | None = None) -> list[int]:
        """Host pids of the container's processes, as its task reports them (``ListPids``)."""
        space = namespace or self._namespace_for(container_id)
        try:
            reply = self._client.call("tasks", "ListPids", space, container_id=container_id)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise self._error(exc) from exc
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
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self._error(exc) from exc
        mounts = [
            {"type": m.type, "source": m.source, "options": list(m.options)} for m in reply.mounts
        ]
        return snapshot_dirs(record.snapshotter, mounts)

    def _image(self, namespace: str, name: str) -> ResolvedImage | None:
        try:
            reply = self._client.call("images", "Get", namespace, name=name)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None  # the image was removed since the container was made
            raise self._error(exc) from exc
        target = {"digest": reply.image.target.digest, "media_type": reply.image.target.media_type}
        return resolve_image(
            name, target, lambda d: self._read_blob(namespace, d), f"containerd {namespace}"
        )

    def _read_blob(self, namespace: str, digest: str) -> bytes:
        path = blob_path(self.content_root, digest)
        if path is not None:
            return read_small(path)
        with self._stream(namespace, digest) as stream:
            data = stream.read(_JSON_LIMIT + 1)
        if len(data) > _JSON_LIMIT:
            raise ImageError(f"content {digest} is over {_JSON_LIMIT} bytes")
        return data

    def _stream(self, namespace: str, digest: str) -> BinaryIO:
        try:
            chunks = self._client.call("content", "Read", namespace, digest=digest)
        except grpc.RpcError as exc:
            raise self._error(exc, f"content {digest}") from exc
        return io.BufferedReader(
            _ContentReader(chunks, lambda e: self._error(e, f"content {digest}")), 1 << 20
        )

    def _has_blob(self, namespace: str, digest: str) -> bool:
        try:
            self._client.call("content", "Info", namespace, digest=digest)
            return True
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise self._error(exc) from exc

    # the Runtime protocol

    def list_running(self) -> list[ContainerInfo]:
        """Every container with a running task, across all namespaces."""
        found = []
        for space in self.namespaces():
            running = {}
            for task in self._call("tasks", "List", space).tasks:
                if _TASK_STATUS.get(task.status) in ("running", "paused") and task.pid:
                    running[task.id] = (_TASK_STATUS[task.status], task.pid)
            for record in self._records(space):
                if record.id in running:
                    state = running[record.id]
                    found.append(self._info(record, [record], lambda _r, s=state: s))
        return found

    def image_config(self, image_id: str) -> bytes | None:
        image = self._images.get(image_id)
        return image.config if image else None

    def stored_layers(self, info: ContainerInfo) -> list[LayerSource] | None:
        image = self._images.get(info.image_id)
        if image is None:
            return None
        namespace = self._namespace_of[info.image_id]

        def opener(digest: str) -> Callable[[], str | BinaryIO] | None:
            path = blob_path(self.content_root, digest)
            if path is not None:
                return lambda: str(path)
            if not self._has_blob(namespace, digest):
                return None
            return lambda: self._stream(namespace, digest)

        snapshot = (info.raw or {}).get("snapshot") or {}
        dirs = SnapshotDirs(
            snapshot.get("snapshotter", ""),
            snapshot.get("upper"),
            tuple(snapshot.get("lowers", [])),
        )
        return layer_sources(image, opener, dirs, f"containerd content store ({namespace})")

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
        self._call("tasks", "Pause", self._namespace_for(container_id), container_id=container_id)

    def unpause(self, container_id: str) -> None:
        self._call("tasks", "Resume", self._namespace_for(container_id), container_id=container_id)

    def close(self) -> None:
        self._client.close()


def _by_id(records: Sequence[ContainerRecord], container_id: str) -> ContainerRecord:
    return next(r for r in records if r.id == container_id)


def _record(namespace: str, container: Any) -> ContainerRecord:
    spec: Mapping[str, Any] = {}
    if container.spec.value:
        try:
            spec = json.loads(container.spec.value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            spec = {}
    created = container.created_at.ToJsonString() if container.HasField("created_at") else None
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
        "updated_at": container.updated_at.ToJsonString()
        if container.HasField("updated_at")
        else None,
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
