"""The Runtime protocol every engine adapter follows, and how a reference picks one.

A runtime turns a reference ("web-1", an id prefix) into a :class:`ContainerInfo`
and hands out byte streams and host paths; it never lets an engine client out.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from drifttools.images.layer_store import StoredLayer
from drifttools.models import ContainerInfo


class Runtime(Protocol):
    """What the snapshot and baseline code need from a container engine."""

    name: str
    endpoint: str
    host_access: bool  # the engine's files and the containers' /proc are readable here

    def resolve(self, reference: str) -> ContainerInfo: ...
    def list_running(self) -> list[ContainerInfo]: ...
    def image_config(self, image_id: str) -> bytes | None: ...
    def stored_layers(self, info: ContainerInfo) -> list[StoredLayer] | None: ...
    def save_stream(self, image_id: str) -> BinaryIO: ...
    def export_stream(self, container_id: str) -> BinaryIO: ...
    def pause(self, container_id: str) -> None: ...
    def unpause(self, container_id: str) -> None: ...


def runtime_for(reference: str | None = None, *, endpoint: str | None = None) -> Runtime:
    """The runtime that serves ``reference``: Docker unless the reference names another."""
    from drifttools.runtimes.docker import DockerRuntime

    return DockerRuntime(endpoint)
