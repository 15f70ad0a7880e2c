"""The entry points most users call: take a snapshot, diff it against its image."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from drifttools import _native
from drifttools.acquisition.processes import read_processes, tag_processes
from drifttools.acquisition.rootfs import DEFAULT_HASH_CAP, read_rootfs
from drifttools.acquisition.runtime import Runtime, runtime_for
from drifttools.acquisition.snapshot import add_hardlink_siblings, container_pids_of, take_snapshot
from drifttools.analysis.classify import (
    DEFAULT_CLASSIFICATION,
    ClassifyOptions,
    classify,
    image_files_from_layers,
)
from drifttools.analysis.diff import DEFAULT_EXCLUSIONS, diff_snapshot
from drifttools.baseline.cache import DEFAULT_CACHE, LayerCache, resolve_cache
from drifttools.baseline.container import container_baseline
from drifttools.baseline.image import load_image, require_verified
from drifttools.evidence.report import now_rfc3339
from drifttools.models import (
    ContainerInfo,
    ContainerListing,
    DriftReport,
    Exclusion,
    ImageIndex,
    ProcessRecord,
    Snapshot,
    Target,
)
from drifttools.progress import Progress, no_progress


def offline_snapshot(
    rootfs: str | Path,
    *,
    image: ImageIndex | None = None,
    upper: bool = False,
    hash_max_size: int | None = DEFAULT_HASH_CAP,
    progress: Progress = no_progress,
) -> Snapshot:
    """Snapshot an acquired container filesystem: a directory or a ``docker export`` tar.

    With ``upper=True`` the directory is an overlay upper dir (only the changes).
    """
    acquired_at = now_rfc3339()
    progress("rootfs", 0, None)
    state = read_rootfs(rootfs, view="upper" if upper else "merged", hash_max_size=hash_max_size)
    progress("rootfs", len(state.tree), len(state.tree))
    target = Target(
        runtime="offline",
        id=str(Path(rootfs).resolve()),
        name=Path(rootfs).name,
        image=image.image if image else None,
        details={"source": state.source, "method": state.method, "view": state.view},
    )
    return Snapshot(target=target, acquired_at=acquired_at, filesystems=(state,))


def diff_offline(
    *,
    image: str | Path,
    rootfs: str | Path,
    upper: bool = False,
    ref: str | None = None,
    platform: str | None = None,
    cache: LayerCache | None = None,
    verify: bool = True,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    hash_max_size: int | None = DEFAULT_HASH_CAP,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    progress: Progress = no_progress,
) -> DriftReport:
    """Diff an acquired container filesystem against its image archive or layout.

    ``image`` is a ``docker save`` tar or an OCI layout directory; ``rootfs`` a
    directory (a mounted rootfs, or with ``upper=True`` an overlay upper dir) or
    a ``docker export`` tar. Layers are verified and cached (``cache``; pass
    ``LayerCache()`` for the default location). With ``verify`` (the default)
    a digest mismatch raises :class:`DigestMismatch`; without, it is recorded
    in the report's baseline and the diff goes on.

    ``classification`` says how changes are classified (YARA rules, allowlists; see
    :class:`ClassifyOptions`); None leaves every change at its base severity.
    """
    baseline = load_image(image, ref=ref, platform=platform, cache=cache, progress=progress)
    if verify:
        require_verified(baseline)
    snapshot = offline_snapshot(
        rootfs, image=baseline, upper=upper, hash_max_size=hash_max_size, progress=progress
    )
    report = diff_snapshot(snapshot, baseline, exclusions=exclusions)
    if classification is None:
        return report
    return classify(report, snapshot, baseline, classification, progress=progress)


def snapshot(
    reference: str,
    *,
    runtime: Runtime | None = None,
    method: str = "auto",
    freeze: bool = False,
    env_values: bool = False,
    hash_max_size: int | None = DEFAULT_HASH_CAP,
    progress: Progress = no_progress,
) -> Snapshot:
    """Snapshot a live container (name, id or id prefix) from the host: processes, mounts, files.

    Never execs into the container and never writes into it. ``method`` is
    ``auto`` (overlay upper dir when readable, else the merged view of a running
    container, else export), ``upper``,
    ``merged`` (walk and hash the whole filesystem) or ``export``.
    """
    return take_snapshot(
        reference,
        runtime=runtime,
        method=method,
        freeze=freeze,
        env_values=env_values,
        hash_max_size=hash_max_size,
        progress=progress,
    )


def diff(
    reference: str,
    *,
    runtime: Runtime | None = None,
    method: str = "auto",
    freeze: bool = False,
    env_values: bool = False,
    cache: LayerCache | Literal["default"] | None = DEFAULT_CACHE,
    verify: bool = True,
    trust_host_layers: bool = False,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    hash_max_size: int | None = DEFAULT_HASH_CAP,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    progress: Progress = no_progress,
) -> DriftReport:
    """Everything that drifted in a live container, against its verified image.

    The snapshot is taken first (processes, then files), the baseline after.
    ``cache`` defaults to :class:`LayerCache` in the user's cache directory; None
    reads and verifies every layer again.
    ``trust_host_layers`` reads uncached layers from the engine's own layer
    directories without verifying them (faster; recorded in the report as
    unverified). ``classification`` says how changes and processes are classified (see
    :class:`ClassifyOptions`); None leaves every change at its base severity.
    """
    runtime = runtime or runtime_for(reference)
    started: list[Callable[[], ImageIndex]] = []

    def start_baseline(info: ContainerInfo, _: tuple[ProcessRecord, ...]) -> None:
        # Once the processes are read, the image's baseline (cache reads, merging:
        # Python work) is made while the filesystem is walked (native, GIL released).
        started.append(
            in_background(
                lambda: container_baseline(
                    info,
                    runtime,
                    cache=resolve_cache(cache),
                    trust_host_layers=trust_host_layers,
                    progress=progress,
                ),
                name="drift-baseline",
            )
        )

    taken = take_snapshot(
        reference,
        runtime=runtime,
        method=method,
        freeze=freeze,
        env_values=env_values,
        hash_max_size=hash_max_size,
        progress=progress,
        after_processes=start_baseline,
    )
    return diff_taken(
        taken,
        runtime,
        baseline=started[0]() if started else None,
        cache=cache,
        verify=verify,
        trust_host_layers=trust_host_layers,
        exclusions=exclusions,
        hash_max_size=hash_max_size,
        classification=classification,
        progress=progress,
    ).report


class Diffed(NamedTuple):
    """A diff with what it was made from."""

    report: DriftReport
    snapshot: Snapshot  # completed with what the baseline asked to read
    baseline: ImageIndex


def diff_taken(
    taken: Snapshot,
    runtime: Runtime,
    *,
    cache: LayerCache | Literal["default"] | None = DEFAULT_CACHE,
    verify: bool = True,
    trust_host_layers: bool = False,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    hash_max_size: int | None = DEFAULT_HASH_CAP,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    progress: Progress = no_progress,
    baseline: ImageIndex | None = None,
) -> Diffed:
    """The baseline, diff and classification of a snapshot already taken (volatile data first).

    ``baseline`` is the image's, when already made (with the same ``cache`` and
    ``trust_host_layers``). The snapshot is completed with what the baseline asks to
    read: the merged view of image hardlinks whose inode the upper dir changed.
    """
    info = taken.container
    assert info is not None, "a live snapshot carries its container"
    if baseline is None:
        baseline = container_baseline(
            info,
            runtime,
            cache=resolve_cache(cache),
            trust_host_layers=trust_host_layers,
            progress=progress,
        )
    if trust_host_layers:
        unverified = sum(1 for layer in baseline.layers if not layer.verified)
        note = f"--trust-host-layers: {unverified} layer(s) read unverified from the host"
        taken = replace(taken, notes=(*taken.notes, note))
    elif verify:
        require_verified(baseline)
    taken = add_hardlink_siblings(taken, baseline.links, hash_max_size)
    report = diff_snapshot(taken, baseline, exclusions=exclusions)
    if classification is None:
        return Diffed(report, taken, baseline)
    layers = runtime.stored_layers(info)
    image_files = None
    if layers is not None and len(layers) == len(baseline.layers):
        image_files = image_files_from_layers(baseline, layers)
    report = classify(
        report, taken, baseline, classification, image_files=image_files, progress=progress
    )
    return Diffed(report, taken, baseline)


T = TypeVar("T")


def in_background(work: Callable[[], T], *, name: str) -> Callable[[], T]:
    """Start ``work`` on a daemon thread (a Ctrl-C does not wait for it); the callable
    returned waits for its result, or raises what it raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


def processes(
    reference: str,
    *,
    runtime: Runtime | None = None,
    env_values: bool = False,
    cache: LayerCache | Literal["default"] | None = DEFAULT_CACHE,
) -> tuple[ProcessRecord, ...]:
    """The processes of a running container, read from the host, tagged against its image."""
    runtime = runtime or runtime_for(reference)
    info = runtime.resolve(reference)
    if not info.running:
        return ()
    records, _ = read_processes(container_pids_of(runtime, info), env_values=env_values)
    baseline = container_baseline(info, runtime, cache=resolve_cache(cache))
    return tag_processes(records, baseline.entries)


def running_containers(runtime: Runtime | None = None) -> list[ContainerListing]:
    """Running containers, each with the number of paths its overlay upper dir holds.

    A quick triage count (no hashing, no baseline): 0 means nothing was written.
    """
    runtime = runtime or runtime_for()
    rows = []
    for info in runtime.list_running():
        changed = None
        if info.upper_dir:
            tree = _native.walk(info.upper_dir, hash_max_size=0)
            changed = sum(1 for entry in tree if entry.kind != "dir")
        rows.append(
            ContainerListing(
                id=info.id[:12],
                name=info.name,
                image=info.image_ref,
                status=info.status,
                pid=info.pid,
                upper_paths=changed,
                privileged=info.posture.privileged,
            )
        )
    return rows
