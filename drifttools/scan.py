"""``scan``: every container of a node through the one pipeline, replicas compared.

::

    engines (Docker, containerd: every namespace)  ── fleet/select.py: filters, each once
       │
       ▼  a bounded pool of workers (``jobs``), one pipeline.run per container
    LiveContainer ──► pipeline.run ──► ContainerResult (report, or why there is none)
       │                 └─ the image's baseline: made once per image, shared (ImageBaselines)
       ▼  yielded as each finishes
    Summary (fleet/records.py): replicas compared (fleet/replicas.py), most severe first

A container that vanished, or whose engine or image failed, is a result with its reason;
the others go on. A Ctrl-C stops the scheduling: the containers being read finish (a frozen
one is unpaused), the rest are not started, and the summary says the scan was interrupted.
Nothing is written into or executed in any container.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from drifttools.baseline.cache import resolve_cache
from drifttools.baseline.container import container_baseline
from drifttools.clock import now_rfc3339
from drifttools.errors import DriftError
from drifttools.evidence.bundle import BundleWriter
from drifttools.fleet.records import (
    ContainerResult,
    EngineState,
    NodeRun,
    ScannedContainer,
    Summary,
    summarize_results,
)
from drifttools.fleet.select import (
    RUNNING,
    Candidate,
    Engine,
    ScanFilter,
    open_engines,
    pod_of,
    take_inventory,
)
from drifttools.models import ImageIndex, Severity
from drifttools.options import DEFAULT_BUNDLE, BaselineOptions, BundleOptions
from drifttools.pipeline import Hooks, RunOptions, run
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress
from drifttools.sources import LiveContainer

#: One more container of an image already read costs its own changes only.
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class BundlePolicy:
    """Which containers get a sealed bundle, and where: every one whose report's severity
    reaches ``threshold``, as ``<directory>/<container key>.tar``.

    ``deliver`` (optional) takes each sealed bundle's path and the container, moves it where
    it belongs and returns that location (the CLI sends them through fsspec this way)."""

    directory: Path
    threshold: Severity = Severity.HIGH
    options: BundleOptions = DEFAULT_BUNDLE
    deliver: Callable[[Path, ScannedContainer], str] | None = None


class ImageBaselines:
    """Each image's baseline made once and shared by all its containers, even those read
    at the same time (the others wait for the first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[tuple[str, ...], Future[ImageIndex]] = {}

    def get(self, key: tuple[str, ...], make: Callable[[], ImageIndex]) -> ImageIndex:
        with self._lock:
            future = self._made.get(key)
            first = future is None
            if future is None:
                future = self._made[key] = Future()
        if first:
            try:
                future.set_result(make())
            except BaseException as exc:  # every container of the image learns why
                future.set_exception(exc)
        return future.result()


@dataclass(frozen=True)
class ScanContainer(LiveContainer):
    """A live container whose baseline comes from the scan's shared :class:`ImageBaselines`."""

    baselines: ImageBaselines | None = None

    def baseline(self, options: BaselineOptions, progress: Progress) -> ImageIndex:
        assert self.baselines is not None
        info = self.info
        key = (self.runtime.name, self.runtime.endpoint, info.image_id, *info.diff_ids)
        if info.namespace:
            key = (*key, info.namespace)  # containerd's content stores are per namespace

        def make() -> ImageIndex:
            return container_baseline(
                info,
                self.runtime,
                cache=resolve_cache(options.cache),
                trust_host_layers=options.trust_host_layers,
                trust_cache=options.trust_cache,
                progress=progress,
            )

        return self.baselines.get(key, make)


def node_name() -> str:
    """This node's name: ``$NODE_NAME`` (the Kubernetes manifests set it), else the host's."""
    return os.environ.get("NODE_NAME") or socket.gethostname()


def scan(
    *,
    endpoints: Mapping[str, str | None] | None = None,
    select: ScanFilter = RUNNING,
    options: RunOptions | None = None,
    jobs: int | None = None,
    bundles: BundlePolicy | None = None,
    node: str | None = None,
    progress: Progress = no_progress,
    stop: threading.Event | None = None,
) -> Iterator[ContainerResult | Summary]:
    """Scan every container of this node: yields each :class:`ContainerResult` as it
    finishes, then the node's :class:`Summary` (replicas compared, most severe first).

    ``endpoints`` maps an engine name (``docker``, ``containerd``) to its address (None or
    absent: ``$DOCKER_HOST`` / ``$CONTAINERD_ADDRESS`` / the default socket); ``select``
    picks the engines and containers; ``jobs`` containers are read at once (default:
    :data:`DEFAULT_JOBS`). An unreachable engine is recorded in the summary.

    Setting ``stop`` (a signal handler can), or a KeyboardInterrupt while the scan waits,
    stops it cleanly: the containers being read finish, no other starts, and the summary
    says it was interrupted.
    """
    options = options or RunOptions()
    node = node or node_name()
    started = now_rfc3339()
    engines = open_engines(endpoints or {}, select.runtimes)
    inventory = take_inventory(engines, select)
    candidates = inventory.containers
    total = len(candidates)
    baselines = ImageBaselines()
    context = _node_context(node, started, inventory.engines, candidates)
    results: list[ContainerResult] = []
    interrupted = False
    tracker = _Tracker(progress, total)
    workers = jobs or DEFAULT_JOBS
    waiting = iter(candidates)  # started only as a worker frees up: a stop starts no more
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:

        def start(count: int) -> set[Future[ContainerResult]]:
            return {
                pool.submit(_scan_one, c, node, options, baselines, bundles, context, tracker.stage)
                for c in itertools.islice(waiting, count)
            }

        pending = start(workers)
        while pending:
            try:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                done, interrupted = set(), True
            interrupted = interrupted or (stop is not None and stop.is_set())
            if not interrupted:
                pending |= start(len(done))
            for future in done:
                result = future.result()
                results.append(result)
                tracker.finished(result.container.label)
                yield result
    nodes = [NodeRun(node, started, now_rfc3339(), _states(inventory.engines), total, interrupted)]
    yield summarize_results(results, nodes)


class _Tracker:
    """The scan's progress: containers done of the total, and the stage one is in."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        progress(ProgressEvent(Stage.SCAN, 0, total, "listed"))

    def stage(self, label: str) -> Progress:
        """A container's own events, as the scan's (its name and current stage)."""
        if self.progress is no_progress:
            return no_progress

        def report(event: ProgressEvent) -> None:
            detail = f"{label}: {event.description}"
            self.progress(ProgressEvent(Stage.SCAN, self.done, self.total, detail))

        return report

    def finished(self, label: str) -> None:
        self.done += 1
        self.progress(ProgressEvent(Stage.SCAN, self.done, self.total, f"{label}: done"))


def _scan_one(
    candidate: Candidate,
    node: str,
    options: RunOptions,
    baselines: ImageBaselines,
    bundles: BundlePolicy | None,
    context: Mapping[str, Any],
    progress_of: Callable[[str], Progress],
) -> ContainerResult:
    info = candidate.info
    container = ScannedContainer(
        node=node,
        runtime=info.runtime,
        id=info.id,
        name=info.name,
        image=info.image_ref,
        image_id=info.image_id,
        group=candidate.group,
        namespace=info.namespace,
        pod=pod_of(info),
    )
    progress = progress_of(container.label)
    source = ScanContainer(info, candidate.runtime, baselines)
    began = time.monotonic()
    try:
        if bundles is None:
            report = run(source, options, progress=progress).report
            return ContainerResult(container, report, seconds=time.monotonic() - began)
        return _scan_with_bundle(source, container, options, bundles, context, progress, began)
    except (DriftError, OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return ContainerResult(container, None, reason, seconds=time.monotonic() - began)


def _scan_with_bundle(
    source: ScanContainer,
    container: ScannedContainer,
    options: RunOptions,
    bundles: BundlePolicy,
    context: Mapping[str, Any],
    progress: Progress,
    began: float,
) -> ContainerResult:
    """The run with a bundle's steps in it; the bundle sealed only when the container's
    own severity reaches the threshold (its staging is removed otherwise)."""
    bundles.directory.mkdir(parents=True, exist_ok=True)  # the bundle directory named is made
    output = bundles.directory / f"{container.key}.tar"
    evidence = replace(bundles.options, directory=False)
    reference = f"{container.runtime}://{container.namespace or ''}/{container.id}"
    with BundleWriter(output, evidence, reference) as writer:
        hooks = Hooks(after_processes=writer.after_processes, after_snapshot=writer.after_snapshot)
        done = run(source, options, progress=writer.observe(progress), hooks=hooks)
        report = done.report
        if report.highest_severity.rank < bundles.threshold.rank:
            return ContainerResult(container, report, seconds=time.monotonic() - began)
        sealed = writer.finish(
            *done, options.acquisition, options.baseline.verify, context={"scan": context}
        )
    where = str(sealed.path)
    if bundles.deliver is not None:
        where = bundles.deliver(sealed.path, container)
    return ContainerResult(container, report, bundle=where, seconds=time.monotonic() - began)


def _states(engines: Sequence[Engine]) -> tuple[EngineState, ...]:
    return tuple(EngineState(e.name, e.endpoint, e.error, e.listed, e.duplicates) for e in engines)


def _node_context(
    node: str, started: str, engines: Sequence[Engine], candidates: Sequence[Candidate]
) -> dict[str, Any]:
    """What a bundle of the scan records of its node: the engines and every container."""
    return {
        "node": node,
        "started_at": started,
        "engines": [
            {"name": e.name, "endpoint": e.endpoint, "error": e.error, "listed": e.listed}
            for e in engines
        ],
        "containers": [
            {"runtime": c.info.runtime, "id": c.info.id, "name": c.info.name, "group": c.group}
            for c in candidates
        ],
    }
