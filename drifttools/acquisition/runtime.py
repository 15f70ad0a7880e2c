"""The Runtime protocol every engine adapter follows, and the registry that picks one.

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
``disk:///evidence/node1.qcow2#<container>``              a dead host's disk image (raw,
                                                           QCOW2, VMDK, E01) read by
                                                           dissect.target; its Docker root
``checkpoint:///path/checkpoint.tar``                      a KEP-2008 checkpoint archive
=========================================================  ==================================

``endpoint`` is the engine's address (a Docker URL, a containerd socket path);
``namespace`` is containerd's (``ctr --namespace``): a reference that names none is looked
up there, a listing lists only it, and a bare reference given one is containerd's.

:data:`RUNTIMES` is the one list of runtimes: a new one is a module in ``runtimes/``
and a line here. Each is imported only when a reference asks for it (the engines'
client libraries are slow to import), and no runtime module imports this one.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO, Protocol

from drifttools.acquisition.runtimes.disk import offline_location
from drifttools.baseline.sources import LayerSource
from drifttools.models import ContainerInfo


class Runtime(Protocol):
    """What the snapshot and baseline code need from a container engine."""

    name: str
    endpoint: str

    def resolve(self, reference: str) -> ContainerInfo: ...
    def list_running(self, *, stopped: bool = False) -> list[ContainerInfo]:
        """The running containers (every namespace); with ``stopped``, every container."""
        ...

    def engine_pids(self, info: ContainerInfo) -> list[int]:
        """Host pids of the container's processes as the engine itself lists them
        (containerd's ``Tasks.ListPids``); empty when it keeps no such list."""
        ...

    def image_config(self, info: ContainerInfo) -> bytes | None:
        """The raw config blob of the container's image, when the engine's store is readable."""
        ...

    def stored_layers(self, info: ContainerInfo) -> Sequence[LayerSource] | None:
        """Each layer of the container's image in the engine's store (bottom first), or None
        when the store cannot be read here."""
        ...

    def save_stream(self, image_id: str) -> BinaryIO: ...
    def export_stream(self, container_id: str) -> BinaryIO: ...
    def pause(self, container_id: str) -> None: ...
    def unpause(self, container_id: str) -> None: ...
    def terminate(self, container_id: str, remove: bool) -> None:
        """Kill the container's processes (SIGKILL) and wait until the engine says they
        exited; with ``remove`` its record goes too, else the record (and its writable
        layer) stays for analysis."""
        ...


class Opening(Enum):
    """What a runtime is opened on."""

    ENDPOINT = "endpoint"  # an engine's address (None: the engine's own default)
    PATH = "path"  # the directory or archive the reference names (``scheme:///path#...``)


@dataclass(frozen=True)
class RuntimeKind:
    """One entry of the registry: the schemes a runtime serves and where its class is."""

    schemes: tuple[str, ...]  # reference schemes (``k8s`` in ``k8s://...``); () for bare names
    module: str
    class_name: str
    opening: Opening
    namespaced: bool = False  # its containers live in namespaces (containerd's)

    def open(self, argument: str | Path | None, namespace: str | None = None) -> Runtime:
        """An instance, on an endpoint or a path (see :attr:`opening`); ``namespace`` is
        passed on when the runtime has namespaces, and means nothing to one without."""
        runtime_class = getattr(importlib.import_module(self.module), self.class_name)
        if self.namespaced:
            namespaced: Runtime = runtime_class(argument, namespace=namespace)
            return namespaced
        runtime: Runtime = runtime_class(argument)
        return runtime


_RUNTIMES = "drifttools.acquisition.runtimes"

#: Every runtime, by the name it goes by (``Runtime.name``); the first serves bare names.
RUNTIMES: Mapping[str, RuntimeKind] = {
    "docker": RuntimeKind((), f"{_RUNTIMES}.docker", "DockerRuntime", Opening.ENDPOINT),
    "containerd": RuntimeKind(
        ("containerd", "k8s"),
        f"{_RUNTIMES}.containerd.runtime",
        "ContainerdRuntime",
        Opening.ENDPOINT,
        namespaced=True,
    ),
    "docker-root": RuntimeKind(
        ("docker-root",), f"{_RUNTIMES}.docker_root", "DockerRootRuntime", Opening.PATH
    ),
    "containerd-root": RuntimeKind(
        ("containerd-root",), f"{_RUNTIMES}.containerd_root", "ContainerdRootRuntime", Opening.PATH
    ),
    "disk": RuntimeKind(("disk",), f"{_RUNTIMES}.disk_image", "DiskImageRuntime", Opening.PATH),
    "checkpoint": RuntimeKind(
        ("checkpoint",), f"{_RUNTIMES}.checkpoint", "CheckpointRuntime", Opening.PATH
    ),
}
DEFAULT_RUNTIME = next(iter(RUNTIMES))
#: The schemes a reference can start with, and which runtime serves each.
_BY_SCHEME = {scheme: name for name, kind in RUNTIMES.items() for scheme in kind.schemes}
SCHEMES = tuple(_BY_SCHEME)
#: The runtimes reached at an endpoint: what ``runtime=`` (``ls --runtime``) can name.
ENGINES = tuple(name for name, kind in RUNTIMES.items() if kind.opening is Opening.ENDPOINT)
#: The engine a bare reference given a namespace is on.
NAMESPACED_RUNTIME = next(n for n in ENGINES if RUNTIMES[n].namespaced)


def split_reference(reference: str) -> tuple[str | None, str]:
    """``(scheme, rest)`` of a reference; ``(None, reference)`` for a bare Docker name."""
    scheme, sep, rest = reference.partition("://")
    if sep and scheme in _BY_SCHEME:
        return scheme, rest
    return None, reference


def checkpoint_path(reference: str) -> Path | None:
    """The archive of a ``checkpoint:///path/checkpoint.tar`` reference; None for another."""
    if split_reference(reference)[0] != "checkpoint":
        return None
    return offline_location(reference)[0]


def runtime_name(
    reference: str | None = None, *, runtime: str | None = None, namespace: str | None = None
) -> str:
    """The name in :data:`RUNTIMES` of the runtime that serves ``reference``: its scheme's,
    else ``runtime``'s (an engine name or a scheme), else containerd's when a ``namespace``
    is given, else the default (Docker)."""
    fallback = NAMESPACED_RUNTIME if namespace else DEFAULT_RUNTIME
    wanted = (split_reference(reference)[0] if reference else None) or runtime or fallback
    name = _BY_SCHEME.get(wanted, wanted)
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {wanted!r} (known: {', '.join(ENGINES)})")
    return name


def runtime_for(
    reference: str | None = None,
    *,
    endpoint: str | None = None,
    runtime: str | None = None,
    namespace: str | None = None,
) -> Runtime:
    """The runtime that serves ``reference`` (see the module's table of schemes).

    ``runtime`` (one of :data:`ENGINES`, or a scheme) picks the engine for a bare
    reference or a listing; ``endpoint`` is its address; ``namespace`` containerd's
    (see :func:`runtime_name`).
    """
    kind = RUNTIMES[runtime_name(reference, runtime=runtime, namespace=namespace)]
    if kind.opening is Opening.PATH:
        return kind.open(offline_location(reference or "")[0])
    return kind.open(endpoint, namespace)
