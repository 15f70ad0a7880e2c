"""A dead host's disk image (raw, QCOW2, VMDK, E01) as the source, opened by dissect.target.

``disk:///evidence/node1.qcow2#web-1``: dissect.target (``pip install 'drifttools[disk]'``)
opens the image with its loaders and containers (QCOW2, VMDK, EWF) and its filesystem
drivers (ext4, XFS, Btrfs ...) without mounting anything; a Docker data root and a
containerd root are looked for on each of its filesystems (``/var/lib/docker``,
``/var/lib/containerd``, or a filesystem that *is* the root). The fragment names the
container as the root's own reader takes it: a Docker name or id, or for containerd
``<namespace>/<id>``, ``k8s://<ns>/<pod>[/<container>]``, ``containerd://[<ns>/]<id>`` (a
bare id is Docker's when the image has a Docker root, else containerd's).

The image is never written. What one container needs of a root is copied out of the
image into a private staging directory, preserving modes, owners, times, symlinks (never
followed), whiteouts and xattrs, and the staged root is then read exactly like
``docker-root://`` or ``containerd-root://``:

- Docker: every container's records, the image and layer databases, then the chosen
  container's directory with its logs, its overlay upper dir, its image's layer dirs and
  the named volumes it mounts (``volumes/<name>``: read as mounts with no baseline).
- containerd: the metadata database and the snapshotters' databases, every image's
  index, manifest and config blobs; then the chosen container's layer blobs (verified
  against their digests as on any host), its snapshot and its parents' (upper and lower
  dirs), and its CRI logs (``/var/log/pods``) and volumes (the kubelet's pod volumes)
  when they are on the same filesystem.

What a copy cannot keep (ctime and inode numbers are the copy's, a device's numbers are
0:0) is said in the container's engine record.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from drifttools.acquisition.runtimes.bbolt import BoltDB
from drifttools.acquisition.runtimes.containerd.records import (
    CONTAINER_NAME,
    POD_NAME,
    POD_NAMESPACE,
    spec_mounts,
)
from drifttools.acquisition.runtimes.containerd_root import CONTENT, META_DB, ContainerdRootRuntime
from drifttools.acquisition.runtimes.disk import fragment_of
from drifttools.acquisition.runtimes.docker_root import DockerRootRuntime, volume_names
from drifttools.baseline.images.layer_store import chain_ids
from drifttools.baseline.sources import LayerSource
from drifttools.errors import ContainerNotFound, ImageNotFound, RuntimeUnavailable
from drifttools.models import ContainerInfo

#: Where a data root may sit on a filesystem of the image.
_DOCKER_PLACES = ("/var/lib/docker", "/docker", "/")
_CONTAINERD_PLACES = ("/var/lib/containerd", "/containerd", "/")
_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")
#: Blobs read as documents (an index or manifest names more blobs); larger ones are layers.
_DOCUMENT_LIMIT = 4 << 20
#: What a copy out of the image cannot keep, recorded with the container.
COPY_NOTE = (
    "read from a disk image by dissect.target, copied out read-only: ctime and inode numbers"
    " are the copy's, device numbers (overlay whiteouts) 0:0"
)


class _Staged:
    """One root inside the image (at ``place`` on ``fs``), copied out piece by piece."""

    def __init__(self, fs: Any, place: str, staged_root: Path) -> None:
        self.fs, self.place, self.staged_root = fs, place, staged_root

    def small(self, relative: str) -> str | None:
        path = self.staged_root / relative
        return path.read_text().strip() if path.is_file() and not path.is_symlink() else None

    def copy(self, relative: str, *, records_only: bool = False) -> None:
        """Copy ``relative`` (below the root in the image) to the staged root, once.
        ``records_only``: directories and the container records only (no logs, no files)."""
        copy_out(self.fs, _join(self.place, relative), self.staged_root / relative, records_only)


def copy_out(fs: Any, source: str, target: Path, records_only: bool = False) -> None:
    """``source`` on the image's filesystem ``fs`` at ``target``, replacing what a
    previous copy put there; nothing when the image has no such entry."""
    if target.exists() and not records_only:
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    try:
        entry = fs.get(source)
    except Exception:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_tree(entry, target, records_only)


class _DockerStaged(_Staged):
    """A Docker data root: records and image databases up front, a container on resolve."""

    def __init__(self, fs: Any, place: str, staged_root: Path) -> None:
        super().__init__(fs, place, staged_root)
        self.copy("containers", records_only=True)
        self.copy("image")  # image configs, layer chains, tar-split (for verification)
        self.reader = DockerRootRuntime(staged_root)

    def resolve(self, wanted: str) -> ContainerInfo:
        first = self.reader.resolve(wanted)
        driver = first.storage_driver
        layers = f"image/{driver}/layerdb"
        self.copy(f"containers/{first.id}")  # its logs too
        dirs = [self.small(f"{layers}/mounts/{first.id}/mount-id")]
        for chain in chain_ids(list(first.diff_ids)):
            dirs.append(self.small(f"{layers}/sha256/{chain[7:]}/cache-id"))
        for name in filter(None, dirs):
            if "/" in name or name.startswith("."):
                raise ContainerNotFound(f"malformed layer record {name!r}")
            self.copy(f"{driver}/{name}")
        for volume in volume_names(dict(first.raw)).values():
            self.copy(f"volumes/{volume}")
        return self.reader.resolve(wanted)


class _ContainerdStaged(_Staged):
    """A containerd root: its databases and image documents up front, a container on
    resolve. Staged at ``<host>/var/lib/containerd`` so that its CRI logs are looked for
    under the staged ``<host>/var/log/pods``, never on this machine."""

    def __init__(self, fs: Any, place: str, staged_host: Path) -> None:
        super().__init__(fs, place, staged_host / "var/lib/containerd")
        self.host = staged_host
        standard = "/var/lib/containerd"
        self.host_place = (place[: -len(standard)] or "/") if place.endswith(standard) else None
        self.copy(META_DB)
        for child in _names(fs, place):
            if child.startswith("io.containerd.snapshotter.v1."):
                self.copy(f"{child}/metadata.db")
        self.reader = ContainerdRootRuntime(self.staged_root)
        with BoltDB(self.staged_root / META_DB) as db:
            v1 = db.root.bucket("v1")
            for _, space in v1.buckets() if v1 else ():
                images = space.bucket("images")
                for _, image in images.buckets() if images else ():
                    target = image.bucket("target")
                    digest = target.text("digest") if target else None
                    if digest:
                        self._documents(digest)

    def _blob(self, digest: str) -> Path | None:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or set(hexdigest) - _HEX:
            return None
        relative = f"{CONTENT}/blobs/sha256/{hexdigest}"
        if not (self.staged_root / relative).exists():
            self.copy(relative)
        path = self.staged_root / relative
        return path if path.is_file() else None

    def _documents(self, digest: str, depth: int = 0) -> None:
        """The blob ``digest`` and, when it is an index or a manifest, the documents it
        names (manifests, configs; not layers), as far as the content store has them."""
        path = self._blob(digest)
        if path is None or depth > 8 or path.stat().st_size > _DOCUMENT_LIMIT:
            return
        try:
            document = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(document, dict):
            return
        named = [*document.get("manifests", []), document.get("config")]
        for descriptor in named:
            if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str):
                self._documents(descriptor["digest"], depth + 1)

    def resolve(self, wanted: str) -> ContainerInfo:
        first = self.reader.resolve(wanted)
        for layer in first.image_manifest.layers if first.image_manifest else ():
            self._blob(layer.digest)
        for directory in filter(None, (first.upper_dir, *first.lower_dirs)):
            snapshot = Path(directory).parent.relative_to(self.staged_root)
            self.copy(str(snapshot))
        self._logs(first)
        self._volumes(first)
        return self.reader.resolve(wanted)

    def _volumes(self, info: ContainerInfo) -> None:
        """The volumes the container mounts, from the host's filesystem in the image."""
        if self.host_place is None:
            return
        spec = info.raw.get("container", {}).get("spec") or {}
        for mount in spec_mounts(spec):
            parts = PurePosixPath(mount.source).parts[1:]
            if mount.kind == "volume" and parts and ".." not in parts:
                relative = "/".join(parts)
                copy_out(self.fs, _join(self.host_place, relative), self.host / relative)

    def _logs(self, info: ContainerInfo) -> None:
        labels = info.labels
        namespace, pod = labels.get(POD_NAMESPACE), labels.get(POD_NAME)
        name = labels.get(CONTAINER_NAME)
        if self.host_place is None or not (namespace and pod and name) or "/" in name:
            return
        pods = _join(self.host_place, "var/log/pods")
        staged_pods = self.host / "var/log/pods"
        for pod_dir in _names(self.fs, pods):
            if pod_dir.startswith(f"{namespace}_{pod}_"):
                copy_out(self.fs, f"{pods}/{pod_dir}/{name}", staged_pods / pod_dir / name)


class DiskImageRuntime:
    """The Docker or containerd root inside a disk image; ``resolve`` takes a reference
    as the root's own reader does (see the module docstring)."""

    name = "disk"

    def __init__(self, image: str | Path) -> None:
        self.image = Path(image)
        self.endpoint = f"disk://{self.image}"
        try:
            from dissect.target import Target  # type: ignore[import-untyped]
        except ImportError:
            raise RuntimeUnavailable(
                "disk images need dissect.target: pip install 'drifttools[disk]'"
            ) from None
        if not self.image.is_file():
            raise RuntimeUnavailable(f"{self.image}: no such disk image")
        try:
            target = Target.open(self.image)
        except Exception as exc:  # dissect raises its own errors, and builtins, for bad input
            raise RuntimeUnavailable(
                f"{self.image}: not a disk image dissect opens: {exc}"
            ) from exc
        docker, containerd = _find_roots(target)
        if docker is None and containerd is None:
            raise RuntimeUnavailable(
                f"{self.image}: no Docker data root and no containerd root on any of its"
                " filesystems"
            )
        self._staging = Path(tempfile.mkdtemp(prefix="drifttools-disk-"))
        weakref.finalize(self, shutil.rmtree, self._staging, True)
        self._docker = _DockerStaged(*docker, self._staging / "docker") if docker else None
        self._containerd = (
            _ContainerdStaged(*containerd, self._staging / "containerd") if containerd else None
        )
        self._roots = {
            "docker": docker[1] if docker else None,
            "containerd": containerd[1] if containerd else None,
        }
        self._owners: dict[str, DockerRootRuntime | ContainerdRootRuntime] = {}

    def resolve(self, reference: str) -> ContainerInfo:
        """The container ``reference`` names, its files copied out of the image."""
        wanted = fragment_of(reference, self.name)
        containerd_form = wanted.startswith(("k8s://", "containerd://")) or "/" in wanted
        staged: _DockerStaged | _ContainerdStaged | None = (
            self._containerd if containerd_form or self._docker is None else self._docker
        )
        if staged is None:
            raise ContainerNotFound(f"{self.image}: no containerd root for {wanted!r}")
        kind = "docker" if staged is self._docker else "containerd"
        try:
            info = staged.resolve(wanted.removeprefix("containerd://"))
        except ContainerNotFound as exc:
            raise ContainerNotFound(f"{self.image}: {exc}") from exc
        self._owners[info.id] = staged.reader
        engine = {
            **info.engine,
            "format": self.name,
            "disk_image": str(self.image),
            "root_format": staged.reader.name,
            f"{kind}_root_in_image": self._roots[kind],
            "copy": COPY_NOTE,
        }
        return replace(info, engine=engine)

    def _reader(self, info: ContainerInfo) -> DockerRootRuntime | ContainerdRootRuntime:
        reader = self._owners.get(info.id)
        if reader is None:
            raise ContainerNotFound(f"{info.id}: not resolved in {self.image}")
        return reader

    def list_running(self, *, stopped: bool = False) -> list[ContainerInfo]:
        """The records of each root, as its reader lists them (their files are copied out
        only when one is resolved)."""
        found: list[ContainerInfo] = []
        for staged in (self._docker, self._containerd):
            if staged is not None:
                found += staged.reader.list_running(stopped=stopped)
        return found

    def engine_pids(self, info: ContainerInfo) -> list[int]:
        return []

    def image_config(self, info: ContainerInfo) -> bytes | None:
        return self._reader(info).image_config(info)

    def stored_layers(self, info: ContainerInfo) -> list[LayerSource] | None:
        return list(self._reader(info).stored_layers(info) or ()) or None

    def save_stream(self, image_id: str) -> BinaryIO:
        raise ImageNotFound(f"image {image_id}: not exported from a disk image")

    def export_stream(self, container_id: str) -> BinaryIO:
        raise RuntimeUnavailable(f"{container_id}: no export from a disk image")

    def pause(self, container_id: str) -> None:
        raise RuntimeUnavailable("a dead host's container cannot be paused")

    unpause = pause

    def terminate(self, container_id: str, remove: bool) -> None:
        raise RuntimeUnavailable("a dead host's container cannot be terminated")


def _join(root: str, relative: str) -> str:
    return "/" + "/".join(part for part in (*root.split("/"), *relative.split("/")) if part)


def _find_roots(target: Any) -> tuple[tuple[Any, str] | None, tuple[Any, str] | None]:
    """``(filesystem, place)`` of the first Docker data root and of the first containerd
    root on the filesystems of ``target``; None for one not found."""
    docker = containerd = None
    for fs in target.filesystems:
        for place in _DOCKER_PLACES:
            roots = (_join(place, "containers"), _join(place, "image"))
            if docker is None and all(_is_dir(fs, path) for path in roots):
                docker = (fs, place)
        for place in _CONTAINERD_PLACES:
            if containerd is None and _is_file(fs, _join(place, META_DB)):
                containerd = (fs, place)
    return docker, containerd


def _names(fs: Any, path: str) -> list[str]:
    try:
        return sorted(child.name for child in fs.get(path).scandir())
    except Exception:
        return []


def _is_file(fs: Any, path: str) -> bool:
    try:
        return bool(fs.get(path).is_file(follow_symlinks=False))
    except Exception:
        return False


def _is_dir(fs: Any, path: str) -> bool:
    try:
        return bool(fs.get(path).is_dir(follow_symlinks=False))
    except Exception:
        return False


#: The files a ``records_only`` copy of ``containers/`` keeps.
_RECORD_NAMES = ("config.v2.json", "hostconfig.json")


def _copy_tree(entry: Any, target: Path, records_only: bool) -> None:
    """``entry`` and what is below it, at ``target``: attributes kept, nothing followed."""
    info = entry.lstat()
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        target.mkdir(mode=0o700, exist_ok=True)
        for child in _children(entry):
            name = child.name
            if records_only and not _wanted_record(child, name):
                continue
            if "/" in name or name in (".", ".."):
                continue
            _copy_tree(child, target / name, records_only)
    elif stat.S_ISREG(mode):
        with entry.open() as source, open(target, "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
    elif stat.S_ISLNK(mode):
        os.symlink(entry.readlink(), target)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        os.mknod(target, mode, os.makedev(0, 0))
    elif stat.S_ISFIFO(mode):
        os.mkfifo(target, stat.S_IMODE(mode))
    else:
        return  # a socket: nothing to read
    _attributes(entry, target, info)


def _wanted_record(child: Any, name: str) -> bool:
    """In a records-only copy: directories (walked) and the container records."""
    return name in _RECORD_NAMES or bool(child.is_dir(follow_symlinks=False))


def _children(entry: Any) -> Iterator[Any]:
    """The filesystem entries below a directory, by name (dissect's dir entries resolved)."""
    for child in sorted(entry.scandir(), key=lambda child: child.name):
        yield child.get()


def _attributes(entry: Any, target: Path, info: Any) -> None:
    for attribute in _xattrs(entry):
        try:
            os.setxattr(target, attribute[0], attribute[1], follow_symlinks=False)
        except OSError:
            continue
    os.chown(target, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _xattrs(entry: Any) -> list[tuple[str, bytes]]:
    try:
        found = entry.lattr()
    except Exception:
        return []
    items = found.items() if isinstance(found, dict) else ((a.name, a.value) for a in found)
    return [(str(name), bytes(value)) for name, value in items]
