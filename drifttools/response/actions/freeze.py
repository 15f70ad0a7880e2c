"""Freeze: the cgroup freezer, through the runtime (Docker pause, containerd Tasks.Pause)."""

from __future__ import annotations

from typing import Any

from drifttools.errors import ResponseRefused
from drifttools.options import ResponseOptions
from drifttools.response.model import Step, Subject


def plan(subject: Subject, request: ResponseOptions) -> Step:
    if not subject.info.running:
        raise ResponseRefused(f"{subject.label} is not running: nothing to freeze")
    how = {"docker": "docker pause", "containerd": "containerd Tasks.Pause"}
    notes = ("already paused",) if subject.info.status == "paused" else ()
    return Step(
        "freeze",
        subject.label,
        f"{how.get(subject.info.runtime, 'pause')} (cgroup freezer: every process stopped)",
        f"drifttools respond {subject.info.id[:12]} --release (unpauses)",
        notes,
    )


def apply(subject: Subject, request: ResponseOptions) -> dict[str, Any]:
    before = subject.runtime.resolve(subject.info.id).status
    if before != "paused":
        subject.runtime.pause(subject.info.id)
    after = subject.runtime.resolve(subject.info.id).status
    return {"status_before": before, "status_after": after}
