"""What a response is made of: the container acted on, the steps planned, how each ran."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drifttools.acquisition.runtime import Runtime
from drifttools.models import ContainerInfo

#: The CRI labels that make a container a Kubernetes pod's (restarted by its kubelet).
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_NAME = "io.kubernetes.pod.name"
POD_CONTAINER = "io.kubernetes.container.name"


@dataclass(frozen=True)
class Subject:
    """The container a response acts on, and the runtime that serves it."""

    info: ContainerInfo
    runtime: Runtime

    @property
    def label(self) -> str:
        """``runtime name (short id)``, as plans and logs name it."""
        return f"{self.info.runtime} {self.info.name} ({self.info.id[:12]})"

    def current_pid(self) -> int | None:
        """The container's init pid as the runtime says it now (None: no longer running)."""
        return self.runtime.resolve(self.info.id).pid

    @property
    def pod(self) -> tuple[str, str, str] | None:
        """``(namespace, pod, container)`` when a kubelet owns the container."""
        labels = self.info.labels
        if POD_NAME in labels and POD_NAMESPACE in labels:
            return labels[POD_NAMESPACE], labels[POD_NAME], labels.get(POD_CONTAINER, "")
        return None


@dataclass(frozen=True)
class Step:
    """One planned step: what is done, on what, and how it is undone."""

    action: str  # preserve | isolate | freeze | terminate | fix | release
    target: str
    how: str
    undo: str
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "how": self.how,
            "undo": self.undo,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Outcome:
    """A step as it ran: when, whether it held, and what was read back afterwards."""

    step: Step
    started_at: str
    ended_at: str
    ok: bool
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.step.to_dict(),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "ok": self.ok,
            "result": dict(self.result),
            "error": self.error,
        }
