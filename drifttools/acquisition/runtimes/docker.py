"""The Docker Engine, through its API (the ``docker`` SDK). The only module that knows Docker.

Returns data (:class:`ContainerInfo`, byte streams), never SDK objects. The API
version is negotiated, never pinned; ``DOCKER_HOST`` and the other standard
variables are honoured.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import docker
import docker.errors

from drifttools.acquisition.logs import docker_logs
from drifttools.acquisition.runtimes.chunks import buffered
from drifttools.acquisition.runtimes.posture import docker_posture
from drifttools.baseline.images.layer_store import StoredLayer, engine_layers
from drifttools.errors import (
    ContainerNotFound,
    LayerStoreMismatch,
    PermissionDenied,
    RuntimeUnavailable,
)
from drifttools.models import ContainerInfo, MountPoint

#: Seconds a killed container is given to be reaped by the engine.
_STOP_TIMEOUT = 30


class DockerRuntime:
    """A Docker Engine, local (with host access to its data root) or remote."""

    name = "docker"

    def __init__(self, base_url: str | None = None) -> None:
        try:
            if base_url:
                self._client = docker.DockerClient(base_url=base_url, version="auto")
            else:
                self._client = docker.from_env(version="auto")
            self._info = self._client.info()
            self._version = self._client.version()
        except docker.errors.DockerException as exc:
            raise _unavailable(exc, base_url or os.environ.get("DOCKER_HOST")) from exc
        self.endpoint = self._client.api.base_url
        self.data_root = Path(self._info.get("DockerRootDir", "/var/lib/docker"))
        self.driver = str(self._info.get("Driver", ""))
        local_socket = self.endpoint.startswith(("http+docker://localhost", "http+unix://"))
        # the engine's files and the containers' /proc are readable here
        self._host_access = local_socket and os.access(self.data_root, os.R_OK)

    def resolve(self, reference: str) -> ContainerInfo:
        """The container named ``reference`` (a name, an id, or an id prefix)."""
        api = self._client.api
        try:
            raw = api.inspect_container(reference)
            image = api.inspect_image(raw["Image"])
        except docker.errors.NotFound as exc:
            raise ContainerNotFound(f"no container {reference!r} on {self.endpoint}") from exc
        except docker.errors.DockerException as exc:
            raise _unavailable(exc, self.endpoint) from exc
        state = raw.get("State", {})
        running = bool(state.get("Running")) and state.get("Pid", 0) > 0
        status = "paused" if state.get("Paused") else str(state.get("Status", "unknown"))
        upper = (raw.get("GraphDriver", {}).get("Data") or {}).get("UpperDir")
        return ContainerInfo(
            runtime=self.name,
            id=raw["Id"],
            name=raw.get("Name", "").lstrip("/"),
            image_id=raw["Image"],
            image_ref=(raw.get("Config") or {}).get("Image"),
            diff_ids=tuple(image.get("RootFS", {}).get("Layers", [])),
            status=status,
            pid=state["Pid"] if running else None,
            storage_driver=raw.get("Driver", self.driver),
            upper_dir=upper if self._host_access else None,
            mounts=tuple(_engine_mounts(raw)),
            posture=docker_posture(raw),
            labels=dict((raw.get("Config") or {}).get("Labels") or {}),
            engine={
                "endpoint": self.endpoint,
                "version": self._version.get("Version"),
                "api_version": self._client.api.api_version,
                "storage_driver": self.driver,
                "data_root": str(self.data_root),
            },
            raw=raw,
            logs=docker_logs(self.data_root / "containers" / raw["Id"])
            if self._host_access
            else (),
        )

    def list_running(self, *, stopped: bool = False) -> list[ContainerInfo]:
        """Every running container of the engine (``stopped``: every container)."""
        try:
            ids = [c["Id"] for c in self._client.api.containers(all=stopped)]
        except docker.errors.DockerException as exc:
            raise _unavailable(exc, self.endpoint) from exc
        found = []
        for container_id in ids:
            try:
                found.append(self.resolve(container_id))
            except ContainerNotFound:
                continue  # gone since the listing
        return found

    def engine_pids(self, info: ContainerInfo) -> list[int]:
        """None listed: the engine keeps no list of a container's processes of its own."""
        return []

    def image_config(self, info: ContainerInfo) -> bytes | None:
        """The raw config blob from the engine's store (its digest is the image id), if readable."""
        if not self._host_access:
            return None
        hexdigest = info.image_id.removeprefix("sha256:")
        path = self.data_root / "image" / self.driver / "imagedb" / "content" / "sha256" / hexdigest
        try:
            return path.read_bytes()
        except OSError:
            return None

    def stored_layers(self, info: ContainerInfo) -> list[StoredLayer] | None:
        """Where the engine keeps each image layer and its tar-split record, if readable."""
        if not self._host_access or not info.diff_ids:
            return None
        try:
            return engine_layers(info.diff_ids, data_root=self.data_root, driver=self.driver)
        except LayerStoreMismatch:
            raise  # the layer database names another layer: evidence, not a fallback
        except (OSError, ValueError):
            return None

    def save_stream(self, image_id: str) -> BinaryIO:
        """``docker save`` of the image, as a stream (never written to disk)."""
        return buffered(iter(self._client.api.get_image(image_id)))

    def export_stream(self, container_id: str) -> BinaryIO:
        """``docker export`` of the container's filesystem, as a stream."""
        return buffered(iter(self._client.api.export(container_id)))

    def pause(self, container_id: str) -> None:
        try:
            self._client.api.pause(container_id)
        except docker.errors.DockerException as exc:
            raise _unavailable(exc, self.endpoint) from exc

    def unpause(self, container_id: str) -> None:
        try:
            self._client.api.unpause(container_id)
        except docker.errors.DockerException as exc:
            raise _unavailable(exc, self.endpoint) from exc

    def terminate(self, container_id: str, remove: bool) -> None:
        """``docker kill`` (a paused container too), waited for; ``docker rm`` with ``remove``."""
        api = self._client.api
        try:
            if api.inspect_container(container_id)["State"].get("Running"):
                api.kill(container_id)
                api.wait(container_id, timeout=_STOP_TIMEOUT)
            if remove:
                api.remove_container(container_id, force=True)
        except docker.errors.NotFound as exc:
            raise ContainerNotFound(f"no container {container_id!r} on {self.endpoint}") from exc
        except (docker.errors.DockerException, OSError) as exc:
            raise _unavailable(exc, self.endpoint) from exc


def _unavailable(exc: Exception, endpoint: str | None) -> Exception:
    text = str(exc)
    where = endpoint or "the default socket"
    if "Permission denied" in text or "PermissionError" in text:
        return PermissionDenied(f"permission denied talking to the Docker Engine at {where}")
    if isinstance(exc, docker.errors.APIError):
        return RuntimeUnavailable(f"Docker Engine error at {where}: {exc.explanation or text}")
    return RuntimeUnavailable(f"cannot reach the Docker Engine at {where}: is dockerd running?")


def _engine_mounts(raw: Mapping[str, Any]) -> Iterator[MountPoint]:
    for mount in raw.get("Mounts") or []:
        kind = "volume" if mount.get("Type") == "volume" else str(mount.get("Type", "bind"))
        yield MountPoint(
            mountpoint=mount.get("Destination", ""),
            fstype=kind,
            source=mount.get("Source", ""),
            root="",
            options="rw" if mount.get("RW") else "ro",
            kind=kind,
        )
    for destination, options in ((raw.get("HostConfig") or {}).get("Tmpfs") or {}).items():
        yield MountPoint(destination, "tmpfs", "tmpfs", "", options or "", "tmpfs")
