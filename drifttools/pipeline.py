"""The one place the stages of a run are ordered.

::

    source ──► acquisition: processes (then ``after_processes``), mounts, filesystems
       │          (RFC 3227: the most volatile first; nothing is written to the container)
       └─────► baseline: the image's layers, verified, merged; made on a thread while a live
       │          container's filesystem is walked (native code, GIL released)
       ▼
    analysis: the pure diff, then classification
       ▼
    :class:`Run` (report, snapshot, baseline) for the sinks: the report renderers, bundles,
    exports

Every entry point (``diff``, ``diff_offline``, ``snapshot``, ``bundle``, checkpoints) is a
thin driver over :func:`run`. For inputs that no longer change (an acquired filesystem, a
checkpoint) the baseline comes first, so a bad image stops the run before anything is read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from drifttools.acquisition.snapshot import ProcessHook
from drifttools.analysis.classify import classify
from drifttools.analysis.diff import DEFAULT_EXCLUSIONS, diff_snapshot
from drifttools.baseline.image import require_verified
from drifttools.baseline.verification import BY_CACHE
from drifttools.models import (
    ContainerInfo,
    DriftReport,
    Exclusion,
    ImageIndex,
    ProcessRecord,
    Snapshot,
)
from drifttools.options import (
    DEFAULT_ACQUISITION,
    DEFAULT_BASELINE,
    DEFAULT_CLASSIFICATION,
    AcquisitionOptions,
    BaselineOptions,
    ClassifyOptions,
)
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress
from drifttools.sources import Source, with_note


@dataclass(frozen=True)
class RunOptions:
    """The options of every stage of one run."""

    acquisition: AcquisitionOptions = DEFAULT_ACQUISITION
    baseline: BaselineOptions = DEFAULT_BASELINE
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION  # None: not classified


@dataclass(frozen=True)
class Hooks:
    """Where a sink takes part in a run, at the moment the evidence is freshest."""

    #: Right after the processes were read, before any file (bundles keep the executables).
    after_processes: ProcessHook | None = None
    #: Once the snapshot is complete, before the baseline is awaited.
    after_snapshot: Callable[[Snapshot], None] | None = None


NO_HOOKS = Hooks()


class Run(NamedTuple):
    """A finished run: the report and what it was made from."""

    report: DriftReport
    snapshot: Snapshot  # completed with what the baseline asked to read
    baseline: ImageIndex


def run(
    source: Source,
    options: RunOptions,
    *,
    progress: Progress = no_progress,
    hooks: Hooks = NO_HOOKS,
) -> Run:
    """Acquire ``source``, make its baseline, diff and classify: the stages in order."""
    baseline_ready: Callable[[], ImageIndex] | None = None
    if not source.volatile:
        baseline = _baseline(source, options, progress)
        baseline_ready = lambda: baseline  # noqa: E731

    def after_processes(info: ContainerInfo, processes: tuple[ProcessRecord, ...]) -> None:
        nonlocal baseline_ready
        if hooks.after_processes is not None:
            hooks.after_processes(info, processes)
        if baseline_ready is None:
            baseline_ready = in_background(
                lambda: _baseline(source, options, progress), name="drift-baseline"
            )

    snapshot = source.snapshot(options.acquisition, progress, after_processes)
    if hooks.after_snapshot is not None:
        hooks.after_snapshot(snapshot)
    baseline = baseline_ready() if baseline_ready else _baseline(source, options, progress)
    if options.baseline.trust_host_layers:
        unverified = sum(1 for layer in baseline.layers if not layer.verified)
        note = f"--trust-host-layers: {unverified} layer(s) read unverified from the host"
        snapshot = with_note(snapshot, note)
    if options.baseline.trust_cache:
        trusted = sum(1 for layer in baseline.layers if layer.source == BY_CACHE)
        note = f"--trust-cache: {trusted} layer(s) taken from the cache, not re-checked"
        snapshot = with_note(snapshot, note)
    snapshot = source.complete(snapshot, baseline, options.acquisition)
    progress(ProgressEvent(Stage.DIFF))
    report = diff_snapshot(snapshot, baseline, exclusions=options.exclusions)
    if options.classification is not None:
        image_files = source.image_files(baseline)
        report = classify(
            report,
            snapshot,
            baseline,
            options.classification,
            image_files=image_files,
            progress=progress,
        )
    return Run(report, snapshot, baseline)


def _baseline(source: Source, options: RunOptions, progress: Progress) -> ImageIndex:
    """The source's baseline; a digest mismatch stops the run unless told to go on (or the
    layers were trusted, unverified, on purpose)."""
    baseline = source.baseline(options.baseline, progress)
    if options.baseline.verify and not options.baseline.trust_host_layers:
        require_verified(baseline)
    return baseline


T = TypeVar("T")


def in_background(work: Callable[[], T], *, name: str) -> Callable[[], T]:
    """Start ``work`` on a daemon thread (a Ctrl-C does not wait for it); the callable
    returned waits for its result, or raises what it raised."""
    outcome: dict[str, Any] = {}

    def work_and_keep() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=work_and_keep, name=name, daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result
