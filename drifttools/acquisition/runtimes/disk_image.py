"""A dead host's disk image (raw, QCOW2, VMDK, E01) as the source, opened by dissect.target.

``disk:///evidence/node1.qcow2#web-1``: dissect.target (``pip install 'drifttools[disk]'``)
opens the image with its loaders and containers (QCOW2, VMDK, EWF) and its filesystem
drivers (ext4, XFS, Btrfs ...) without mounting anything; the Docker data root is found on
one of its filesystems (``/var/lib/docker``, or a filesystem that *is* the data root).

The image is never written. What one container needs of the data root (every container's
records, the image and layer databases, then the chosen container's directory with its
logs, its overlay upper dir and its image's layer dirs) is copied out of the image into a
private staging directory, preserving modes, owners, times, symlinks (never followed),
whiteouts and xattrs; the staged root is then read exactly like ``docker-root://``. What a
copy cannot keep (ctime and inode numbers are the copy's, a device's numbers are 0:0) is
said in the container's engine record. containerd roots inside images are found and named,
not yet read.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from drifttools.acquisition.runtimes.disk import fragment_of
from drifttools.acquisition.runtimes.docker_root import DockerRootRuntime
from drifttools.baseline.images.layer_store import StoredLayer, chain_ids
from drifttools.errors import ContainerNotFound, RuntimeUnavailable
from drifttools.models import ContainerInfo

#: Where a data root may sit on a filesystem of the image.
_DOCKER_PLACES = ("/var/lib/docker", "/docker", "/")
_CONTAINERD_PLACES = ("/var/lib/containerd", "/containerd", "/")
_CHUNK = 1 << 20
#: What a copy out of the image cannot keep, recorded with the container.
COPY_NOTE = (
    "read from a disk image by dissect.target, copied out read-only: ctime and inode numbers"
    " are the copy's, device numbers (overlay whiteouts) 0:0"
)


class DiskImageRuntime:
    """The Docker data root inside a disk image; ``resolve`` takes a container name or id."""

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
        self._fs, self.docker_root = _find_root(target, self.image)
        self._staging = Path(tempfile.mkdtemp(prefix="drifttools-disk-"))
        weakref.finalize(self, shutil.rmtree, self._staging, True)
        self.staged_root = self._staging / "docker"
        self._copy("containers", records_only=True)
        self._copy("image")  # image configs, layer chains, tar-split (for verification)
        self._inner = DockerRootRuntime(self.staged_root)

    def resolve(self, reference: str) -> ContainerInfo:
        """The container ``reference`` names, its files copied out of the image."""
        wanted = fragment_of(reference, self.name)
        first = self._inner.resolve(wanted)
        driver = first.storage_driver
        layers = f"image/{driver}/layerdb"
        self._copy(f"containers/{first.id}")  # its logs too
        dirs = [self._small(f"{layers}/mounts/{first.id}/mount-id")]
        for chain in chain_ids(list(first.diff_ids)):
            dirs.append(self._small(f"{layers}/sha256/{chain[7:]}/cache-id"))
        for name in filter(None, dirs):
            if "/" in name or name.startswith("."):
                raise ContainerNotFound(f"{self.image}: malformed layer record {name!r}")
            self._copy(f"{driver}/{name}")
        info = self._inner.resolve(wanted)
        engine = {
            **info.engine,
            "format": self.name,
            "disk_image": str(self.image),
            "data_root_in_image": self.docker_root,
            "copy": COPY_NOTE,
        }
        return replace(info, engine=engine)

    def list_running(self) -> list[ContainerInfo]:
        return self._inner.list_running()

    def engine_pids(self, info: ContainerInfo) -> list[int]:
        return []

    def image_config(self, info: ContainerInfo) -> bytes | None:
        return self._inner.image_config(info)

    def stored_layers(self, info: ContainerInfo) -> list[StoredLayer] | None:
        return self._inner.stored_layers(info)

    def save_stream(self, image_id: str) -> BinaryIO:
        return self._inner.save_stream(image_id)

    def export_stream(self, container_id: str) -> BinaryIO:
        return self._inner.export_stream(container_id)

    def pause(self, container_id: str) -> None:
        self._inner.pause(container_id)

    def unpause(self, container_id: str) -> None:
        self._inner.unpause(container_id)

    def _small(self, relative: str) -> str | None:
        path = self.staged_root / relative
        return path.read_text().strip() if path.is_file() and not path.is_symlink() else None

    def _copy(self, relative: str, *, records_only: bool = False) -> None:
        """Copy ``relative`` (below the data root in the image) to the staged root, once.
        ``records_only``: directories and the container records only (no logs, no files)."""
        source = _join(self.docker_root, relative)
        target = self.staged_root / relative
        if target.exists() and not records_only:
            shutil.rmtree(target)
        try:
            entry = self._fs.get(source)
        except Exception:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_tree(entry, target, records_only)


def _join(root: str, relative: str) -> str:
    return "/" + "/".join(part for part in (*root.split("/"), *relative.split("/")) if part)


def _find_root(target: Any, image: Path) -> tuple[Any, str]:
    """The filesystem of ``target`` holding a Docker data root, and where on it."""
    containerd = None
    for fs in target.filesystems:
        for place in _DOCKER_PLACES:
            if _is_dir(fs, _join(place, "containers")) and _is_dir(fs, _join(place, "image")):
                return fs, place
        for place in _CONTAINERD_PLACES:
            if _is_dir(fs, _join(place, "io.containerd.metadata.v1.bolt")):
                containerd = place
    if containerd is not None:
        raise RuntimeUnavailable(
            f"{image}: a containerd root at {containerd} (not yet read from disk images: mount"
            " the image read-only and use containerd-root://)"
        )
    raise RuntimeUnavailable(f"{image}: no Docker data root on any of its filesystems")


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
