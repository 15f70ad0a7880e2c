"""A dead host's Docker data root (``/var/lib/docker`` of a mounted disk image), no daemon.

Containers come from ``containers/<id>/config.v2.json`` (with ``hostconfig.json``),
images from ``image/<driver>/imagedb``, layers from ``image/<driver>/layerdb`` and the
driver's layer directories (tar-split rebuild, verified against the diff_ids exactly
as on a live engine), the container's changes from its overlay upper dir
``<driver>/<mount-id>/diff``. Everything is opened read-only; nothing is written under
the root. No process can be read: the host is down.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, BinaryIO

from drifttools.acquisition.logs import docker_logs
from drifttools.acquisition.runtimes.disk import fragment_of, read_small
from drifttools.acquisition.runtimes.posture import docker_posture
from drifttools.baseline.images.layer_store import StoredLayer, engine_layers
from drifttools.errors import ContainerNotFound, ImageNotFound, RuntimeUnavailable
from drifttools.models import ContainerInfo, MountPoint

_DRIVER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


class DockerRootRuntime:
    """Reads a Docker data root from disk; ``resolve`` takes a container name, id or prefix."""

    name = "docker-root"

    def __init__(self, data_root: str | Path) -> None:
        self.data_root = Path(data_root)
        self.endpoint = f"docker-root://{self.data_root}"
        self.unreadable: list[str] = []  # container records the last listing could not parse
        if not (self.data_root / "containers").is_dir() or not (self.data_root / "image").is_dir():
            raise RuntimeUnavailable(
                f"{self.data_root} is not a Docker data root (no containers/ and image/)"
            )

    def _records(self) -> list[dict[str, Any]]:
        """Every container record; one that cannot be parsed is skipped and remembered."""
        found = []
        self.unreadable.clear()
        for directory in sorted((self.data_root / "containers").iterdir()):
            config = directory / "config.v2.json"
            if not config.is_file():
                continue
            try:
                raw = json.loads(read_small(config))
                host = directory / "hostconfig.json"
                raw["HostConfig"] = json.loads(read_small(host)) if host.is_file() else {}
            except (ValueError, OSError) as exc:  # a damaged disk: the other records stand
                self.unreadable.append(f"{directory.name}: {exc}")
                continue
            found.append(raw)
        return found

    def resolve(self, reference: str) -> ContainerInfo:
        """The container ``reference`` names (a ``docker-root://...#<ref>`` or a bare ref)."""
        wanted = fragment_of(reference, self.name).lstrip("/")
        if not wanted:
            raise ContainerNotFound(f"{reference!r}: name the container after '#'")
        records = self._records()
        matches = [r for r in records if r.get("Name", "").lstrip("/") == wanted]
        matches = matches or [r for r in records if str(r.get("ID", "")).startswith(wanted)]
        if len(matches) != 1:
            what = "no container" if not matches else "several containers match"
            damaged = f" ({len(self.unreadable)} unreadable records)" if self.unreadable else ""
            raise ContainerNotFound(f"{what} {wanted!r} in {self.data_root}{damaged}")
        return self._info(matches[0])

    def _info(self, raw: dict[str, Any]) -> ContainerInfo:
        driver = str(raw.get("Driver", ""))
        container_id = str(raw.get("ID", ""))
        # Names from the evidence become paths under the data root: accept only their forms.
        if not _DRIVER.fullmatch(driver) or not _CONTAINER_ID.fullmatch(container_id):
            raise RuntimeUnavailable(
                f"{self.data_root}: malformed container record (driver {driver!r}, id"
                f" {container_id!r})"
            )
        image_id = str(raw.get("Image", ""))
        config = self._image_config(image_id)
        diff_ids = tuple(json.loads(config).get("rootfs", {}).get("diff_ids", [])) if config else ()
        mount_id_file = self.data_root / "image" / driver / "layerdb" / "mounts" / container_id
        upper = None
        if (mount_id_file / "mount-id").is_file():
            mount_id = read_small(mount_id_file / "mount-id").decode().strip()
            candidate = self.data_root / driver / mount_id / "diff"
            if "/" not in mount_id and candidate.is_dir():
                upper = str(candidate)
        state = raw.get("State") or {}
        status = "running at shutdown" if state.get("Running") else "exited"
        return ContainerInfo(
            runtime="offline",
            id=container_id,
            name=str(raw.get("Name", "")).lstrip("/"),
            image_id=image_id,
            image_ref=(raw.get("Config") or {}).get("Image"),
            diff_ids=diff_ids,
            status=status,
            pid=None,
            storage_driver=driver,
            upper_dir=upper,
            mounts=tuple(self._mounts(raw)),
            posture=docker_posture(raw),
            engine={
                "format": self.name,
                "data_root": str(self.data_root),
                "storage_driver": driver,
                "offline": True,
            },
            raw=raw,
            logs=docker_logs(self.data_root / "containers" / container_id),
        )

    def _mounts(self, raw: dict[str, Any]) -> list[MountPoint]:
        """Volumes, rebased under this data root (read as mounts with no baseline, like a
        live container's); a bind's host path is not on this disk."""
        found = []
        named = volume_names(raw)
        for destination, mount in (raw.get("MountPoints") or {}).items():
            kind = "volume" if mount.get("Type") == "volume" else "bind"
            source = ""
            if destination in named:
                rebased = self.data_root / "volumes" / named[destination] / "_data"
                source = str(rebased) if rebased.is_dir() else ""
            options = "rw" if mount.get("RW") else "ro"
            found.append(MountPoint(destination, kind, source, "", options, kind))
        return found

    def list_running(self, *, stopped: bool = False) -> list[ContainerInfo]:
        """The containers that were running when the host went down (``stopped``: all)."""
        return [
            self._info(raw)
            for raw in self._records()
            if stopped or (raw.get("State") or {}).get("Running")
        ]

    def engine_pids(self, info: ContainerInfo) -> list[int]:
        """None: no process runs on a dead host."""
        return []

    def image_config(self, info: ContainerInfo) -> bytes | None:
        """The image's config blob, from the image database on the disk."""
        return self._image_config(info.image_id)

    def _image_config(self, image_id: str) -> bytes | None:
        hexdigest = image_id.removeprefix("sha256:")
        if len(hexdigest) != 64 or not hexdigest.isalnum():
            return None
        for driver_dir in sorted((self.data_root / "image").iterdir()):
            path = driver_dir / "imagedb" / "content" / "sha256" / hexdigest
            if path.is_file():
                return read_small(path)
        return None

    def stored_layers(self, info: ContainerInfo) -> list[StoredLayer] | None:
        return engine_layers(info.diff_ids, data_root=self.data_root, driver=info.storage_driver)

    def save_stream(self, image_id: str) -> BinaryIO:
        raise ImageNotFound(f"image {image_id} is not in the data root {self.data_root}")

    def export_stream(self, container_id: str) -> BinaryIO:
        raise RuntimeUnavailable(
            f"{container_id}: no overlay upper dir in {self.data_root} for this storage driver"
        )

    def pause(self, container_id: str) -> None:
        raise RuntimeUnavailable("a dead host's container cannot be paused")

    unpause = pause

    def terminate(self, container_id: str, remove: bool) -> None:
        raise RuntimeUnavailable("a dead host's container cannot be terminated")


def volume_names(raw: dict[str, Any]) -> dict[str, str]:
    """The named volumes a container record (``config.v2.json``) mounts: destination ->
    name, for names Docker could have made (nothing else is looked up under the root)."""
    return {
        destination: str(mount["Name"])
        for destination, mount in (raw.get("MountPoints") or {}).items()
        if mount.get("Type") == "volume" and _VOLUME_NAME.fullmatch(str(mount.get("Name", "")))
    }
