"""Progress the library reports as typed events; drawing them is the caller's business.

A callback receives one :class:`ProgressEvent` at a time: the :class:`Stage` the run is in,
the units done so far and the total when known. Stages come in the pipeline's order
(:mod:`drifttools.pipeline`); the filesystem walks report their counters about every 100 ms
while they run in native code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """A step of the pipeline, in the order a run takes them."""

    PROCESSES = "processes"  # /proc, before anything else (RFC 3227)
    EXECUTABLES = "executables"  # process executables kept (bundles)
    MOUNTS = "mounts"  # tmpfs, volumes and binds the container writes to
    LOGS = "logs"  # the container's log files on the host
    FILESYSTEM = "filesystem"  # the root filesystem: upper dir, merged view, export or rootfs
    BASELINE = "baseline"  # the image's layers: cache, engine store or stream, verified
    MERGE = "merge"  # the layers applied into one view
    DIFF = "diff"
    COMPILE_RULES = "compile rules"  # YARA rule files compiled (done/total files)
    CLASSIFY_FILES = "classify files"
    CLASSIFY_PROCESSES = "classify processes"
    CONTENT = "content"  # bytes of drifted files kept (bundles)
    SEAL = "seal"  # the bundle's manifest and signature
    SCAN = "scan"  # many containers (``scan``): containers done of the total, and where one is


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Where a run is: ``stage``, ``done`` units of ``total`` (None: not known yet).

    ``detail`` names the unit of work in words ("layer 2/5", "docker image export"); a walk
    also counts the ``bytes`` it hashed.
    """

    stage: Stage
    done: int = 0
    total: int | None = None
    detail: str = ""
    bytes: int | None = None

    @property
    def description(self) -> str:
        """The stage and its detail in a few words, for a progress line."""
        return f"{self.stage.value}: {self.detail}" if self.detail else self.stage.value


Progress = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The default callback: report nothing."""


def walk_progress(progress: Progress, stage: Stage) -> Callable[[int, int], None] | None:
    """The native walk's ``(files, bytes)`` callback, as events of ``stage``; None when
    nobody listens (the walk then does not wake up for it)."""
    if progress is no_progress:
        return None

    def report(files: int, hashed: int) -> None:
        progress(ProgressEvent(stage, files, bytes=hashed))

    return report
