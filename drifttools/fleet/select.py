"""Which containers a node has: every engine asked, filters applied, each container once.

The engines are those of the runtime registry reached at an endpoint
(:data:`~drifttools.acquisition.runtime.ENGINES`: the Docker Engine, containerd). An engine
that cannot be reached is recorded with its reason and the others are still listed. The
Docker Engine keeps its containers in containerd's ``moby`` namespace as well: those are
listed once, as Docker's (its record knows their names, mounts and layers): whenever the
Docker Engine is asked, even when it does not answer, since containerd cannot read them (their
images and root filesystems are the Docker Engine's). Sandboxes of
Kubernetes pods (``io.cri-containerd.kind=sandbox``, the pause containers) are not
workloads and are left out; their labels still name the pod's template
(:func:`pod_template`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from drifttools.acquisition.runtime import ENGINES, Runtime, runtime_for
from drifttools.acquisition.runtimes.containerd.records import (
    CONTAINER_NAME,
    CRI_KIND,
    POD_NAME,
    POD_NAMESPACE,
)
from drifttools.errors import DriftError
from drifttools.models import ContainerInfo

#: The namespace where the Docker Engine keeps its containers in its containerd.
MOBY_NAMESPACE = "moby"
#: Pod labels that name the template a pod was made from (Deployment, StatefulSet/DaemonSet).
TEMPLATE_LABELS = ("pod-template-hash", "controller-revision-hash")
POD_UID = "io.kubernetes.pod.uid"


@dataclass(frozen=True)
class ScanFilter:
    """Which containers a scan takes; an empty tuple lets everything through.

    ``labels`` are ``KEY`` (present) or ``KEY=VALUE``; ``images`` and ``names`` are globs
    on the image reference (or id) and the container's name (``<pod-ns>/<pod>/<name>`` for
    a Kubernetes container). ``stopped`` takes stopped containers too (running only by
    default).
    """

    runtimes: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    stopped: bool = False

    def __post_init__(self) -> None:
        unknown = [r for r in self.runtimes if r not in ENGINES]
        if unknown:
            raise ValueError(f"unknown runtime {unknown[0]!r} (known: {', '.join(ENGINES)})")

    def takes(self, info: ContainerInfo) -> bool:
        """Whether ``info`` passes every filter."""
        if self.namespaces and info.namespace not in self.namespaces:
            return False
        if not all(_has_label(info.labels, wanted) for wanted in self.labels):
            return False
        image = (info.image_ref or "", info.image_id)
        if self.images and not any(fnmatch.fnmatchcase(i, g) for i in image for g in self.images):
            return False
        return not self.names or any(fnmatch.fnmatchcase(info.name, g) for g in self.names)


RUNNING = ScanFilter()


def _has_label(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


@dataclass(frozen=True)
class Engine:
    """One engine asked for its containers: the runtime, or why it could not be reached."""

    name: str
    endpoint: str | None
    runtime: Runtime | None
    error: str | None = None
    listed: int = 0  # containers it listed, before the filters
    duplicates: int = 0  # left out as another engine's (Docker's, in ``moby``)


@dataclass(frozen=True)
class Candidate:
    """A container to scan, its engine, and the replica group it belongs to."""

    info: ContainerInfo
    runtime: Runtime
    group: str  # see :func:`replica_group`


@dataclass(frozen=True)
class Inventory:
    """What a node has: the engines asked and the containers to scan."""

    engines: tuple[Engine, ...]
    containers: tuple[Candidate, ...] = field(default=())


def open_engines(endpoints: Mapping[str, str | None], runtimes: Sequence[str] = ()) -> list[Engine]:
    """Each engine of ``runtimes`` (all of :data:`ENGINES` when empty), opened on its
    endpoint (None: the engine's own default, ``$DOCKER_HOST``, ``$CONTAINERD_ADDRESS``)."""
    engines = []
    for name in runtimes or ENGINES:
        endpoint = endpoints.get(name)
        try:
            runtime = runtime_for(None, endpoint=endpoint, runtime=name)
        except (DriftError, OSError) as exc:
            engines.append(Engine(name, endpoint, None, str(exc)))
            continue
        engines.append(Engine(name, runtime.endpoint, runtime))
    return engines


def take_inventory(engines: Sequence[Engine], wanted: ScanFilter = RUNNING) -> Inventory:
    """The containers of ``engines`` that ``wanted`` takes, each once."""
    asked: list[Engine] = []
    found: list[tuple[ContainerInfo, Runtime]] = []
    sandboxes: dict[tuple[str, str], Mapping[str, str]] = {}
    docker_asked = any(engine.name == "docker" for engine in engines)
    for engine in engines:
        if engine.runtime is None:
            asked.append(engine)
            continue
        try:
            listed = engine.runtime.list_running(stopped=wanted.stopped)
        except (DriftError, OSError) as exc:
            asked.append(Engine(engine.name, engine.endpoint, None, str(exc)))
            continue
        duplicates = 0
        for info in listed:
            if docker_asked and info.runtime != "docker" and info.namespace == MOBY_NAMESPACE:
                duplicates += 1
                continue
            if info.labels.get(CRI_KIND) == "sandbox":
                sandboxes[info.labels.get(POD_NAMESPACE, ""), info.labels.get(POD_NAME, "")] = (
                    info.labels
                )
                continue
            if not wanted.takes(info):
                continue
            found.append((info, engine.runtime))
        asked.append(
            Engine(engine.name, engine.endpoint, engine.runtime, None, len(listed), duplicates)
        )
    candidates = []
    for info, runtime in found:
        pod = pod_of(info)
        labels = sandboxes.get((pod.namespace, pod.pod)) if pod else None
        candidates.append(Candidate(info, runtime, replica_group(info, labels)))
    return Inventory(tuple(asked), tuple(candidates))


@dataclass(frozen=True)
class PodRef:
    """The Kubernetes names of a container, from its CRI labels."""

    namespace: str
    pod: str
    container: str


def pod_of(info: ContainerInfo) -> PodRef | None:
    """The pod a container belongs to, when its CRI labels say so."""
    labels = info.labels
    if POD_NAME not in labels:
        return None
    return PodRef(labels.get(POD_NAMESPACE, ""), labels[POD_NAME], labels.get(CONTAINER_NAME, ""))


def pod_template(pod: PodRef, sandbox_labels: Mapping[str, str] | None = None) -> str:
    """The template a pod was made from: its sandbox's template label when known, else
    its name without the suffix the controller added (``web-7d4b9c-x2x9q`` → ``web-7d4b9c``)."""
    for key in TEMPLATE_LABELS:
        if sandbox_labels and sandbox_labels.get(key):
            return f"{pod.pod.rsplit('-', 2)[0]}@{sandbox_labels[key]}"
    stem, sep, _ = pod.pod.rpartition("-")
    return stem if sep and stem else pod.pod


def replica_group(info: ContainerInfo, sandbox_labels: Mapping[str, str] | None = None) -> str:
    """The key replicas share: the image, and for a Kubernetes container also its pod
    namespace, the pod's template and the container's name in it."""
    image = info.image_id or info.image_ref or "?"
    pod = pod_of(info)
    if pod is None:
        return f"image {image}"
    template = pod_template(pod, sandbox_labels)
    return f"pod {pod.namespace}/{template}/{pod.container} {image}"
