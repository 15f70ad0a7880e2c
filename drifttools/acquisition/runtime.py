"""The Runtime protocol every engine adapter follows, and how a reference picks one.

A runtime turns a reference ("web-1", an id prefix) into a :class:`ContainerInfo`
and hands out byte streams and host paths; it never lets an engine client out.

References (:func:`runtime_for` reads the scheme; the rest goes to ``resolve``):

=========================================================  ==================================
``web-1``, ``3f2a…``                                      the Docker Engine (``DOCKER_HOST``)
``containerd://<namespace>/<id>``                          containerd over gRPC (id or unique
                                                           prefix; ``containerd://<id>``
                                                           searches every namespace)
``k8s://<pod-namespace>/<pod>[/<container>]``              a Kubernetes container, found by
                                                           its CRI labels in containerd's
                                                           ``k8s.io`` namespace
``docker-root:///mnt/disk/var/lib/docker#<container>``     a dead host's Docker data root
                                                           (read-only, no daemon)
``containerd-root:///mnt/disk/var/lib/containerd#<ref>``   a dead host's containerd root;
                                                           ``<ref>`` is ``<namespace>/<id>``
                                                           or ``k8s://<ns>/<pod>[/<c>]``
``checkpoint:///path/checkpoint.tar``                      a KEP-2008 checkpoint archive
=========================================================  ==================================

``endpoint`` is the engine's address (a Docker URL, a containerd socket path).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from drifttools.baseline.images.layer_store import StoredLayer
from drifttools.errors import ContainerNotFound
from drifttools.models import ContainerInfo

SCHEMES = ("containerd", "k8s", "docker-root", "containerd-root", "checkpoint")


@dataclass(frozen=True)
class BlobLayer:
    """A layer blob as its image manifest names it, to be read and hashed now.

    ``open`` returns a host path or a byte stream of the blob (compressed as stored);
    the reader checks it against ``digest`` and ``size`` and its uncompressed stream
    against ``diff_id``. ``problems`` are known before reading (e.g. the manifest
    that names the blob did not hash to its own digest).
    """

    diff_id: str
    digest: str
    media_type: str
    size: int | None
    open: Callable[[], str | BinaryIO]
    location: str  # where it was read from, for the record: "content store", a path ...
    source: str = "engine-store"  # the engine's own store (containerd's content store)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnpackedLayer:
    """A layer available only unpacked (a snapshot's lower dir): walked, not verifiable."""

    diff_id: str
    directory: Path
    reason: str  # why the blob itself could not be used


#: What :meth:`Runtime.stored_layers` returns per layer, bottom first.
LayerSource = StoredLayer | BlobLayer | UnpackedLayer


class Runtime(Protocol):
    """What the snapshot and baseline code need from a container engine."""

    name: str
    endpoint: str
    host_access: bool  # the engine's files and the containers' /proc are readable here

    def resolve(self, reference: str) -> ContainerInfo: ...
    def list_running(self) -> list[ContainerInfo]: ...
    def image_config(self, image_id: str) -> bytes | None: ...
    def stored_layers(self, info: ContainerInfo) -> Sequence[LayerSource] | None: ...
    def save_stream(self, image_id: str) -> BinaryIO: ...
    def export_stream(self, container_id: str) -> BinaryIO: ...
    def pause(self, container_id: str) -> None: ...
    def unpause(self, container_id: str) -> None: ...


def split_reference(reference: str) -> tuple[str | None, str]:
    """``(scheme, rest)`` of a reference; ``(None, reference)`` for a bare Docker name."""
    scheme, sep, rest = reference.partition("://")
    if sep and scheme in SCHEMES:
        return scheme, rest
    return None, reference


def offline_location(reference: str) -> tuple[Path, str]:
    """``(root path, fragment)`` of ``docker-root:///path#ref`` style references."""
    parts = urlsplit(reference)
    if parts.netloc:
        raise ContainerNotFound(
            f"{reference!r}: write the path after three slashes, e.g. {parts.scheme}:///mnt/..."
        )
    return Path(unquote(parts.path)), unquote(parts.fragment)


def runtime_for(
    reference: str | None = None,
    *,
    endpoint: str | None = None,
    runtime: str | None = None,
) -> Runtime:
    """The runtime that serves ``reference`` (see the module's table of schemes).

    ``runtime`` (``docker`` or ``containerd``) picks the engine for a bare reference
    or a listing; ``endpoint`` is its address.
    """
    scheme = split_reference(reference)[0] if reference else None
    scheme = scheme or runtime or "docker"
    if scheme in ("containerd", "k8s"):
        from drifttools.acquisition.runtimes.containerd import ContainerdRuntime

        return ContainerdRuntime(endpoint)
    if scheme == "docker-root":
        from drifttools.acquisition.runtimes.docker_root import DockerRootRuntime

        return DockerRootRuntime(offline_location(reference or "")[0])
    if scheme == "containerd-root":
        from drifttools.acquisition.runtimes.containerd_root import ContainerdRootRuntime

        return ContainerdRootRuntime(offline_location(reference or "")[0])
    if scheme == "checkpoint":
        from drifttools.acquisition.runtimes.checkpoint import CheckpointRuntime

        return CheckpointRuntime(offline_location(reference or "")[0])
    if scheme != "docker":
        raise ValueError(f"unknown runtime {scheme!r} (known: docker, containerd)")
    from drifttools.acquisition.runtimes.docker import DockerRuntime

    return DockerRuntime(endpoint)
