"""The entry points most users call: snapshot a container, diff it against its image, keep
the evidence. Each is a thin driver over :func:`drifttools.pipeline.run`.

Options come as one frozen object per stage (:mod:`drifttools.options`), the same ones the
CLI builds: ``acquisition`` (how the container is read), ``baseline`` (where its image's
layers come from), ``classification`` (YARA, allowlists; None leaves every change at its
base severity) and ``exclusions`` (paths the diff leaves out, listed in the report).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from drifttools import _native
from drifttools.acquisition.processes import read_processes
from drifttools.acquisition.runtime import Runtime, checkpoint_path, runtime_for
from drifttools.acquisition.snapshot import container_pids_of
from drifttools.analysis.diff import DEFAULT_EXCLUSIONS
from drifttools.analysis.process_tags import tag_processes
from drifttools.models import (
    ContainerListing,
    DriftReport,
    Exclusion,
    ImageIndex,
    ProcessRecord,
    Snapshot,
)
from drifttools.options import (
    DEFAULT_ACQUISITION,
    DEFAULT_BASELINE,
    DEFAULT_BUNDLE,
    DEFAULT_CLASSIFICATION,
    AcquisitionOptions,
    BaselineOptions,
    BundleOptions,
    ClassifyOptions,
)
from drifttools.pipeline import Hooks, RunOptions, run
from drifttools.progress import Progress, no_progress
from drifttools.sources import AcquiredFilesystem, Checkpoint, LiveContainer, read_acquired

if TYPE_CHECKING:
    from drifttools.evidence.bundle import BundleResult

#: An acquired filesystem is diffed without a layer cache unless one is given.
NO_CACHE = BaselineOptions(cache=None)


def diff(
    reference: str,
    *,
    runtime: Runtime | None = None,
    acquisition: AcquisitionOptions = DEFAULT_ACQUISITION,
    baseline: BaselineOptions = DEFAULT_BASELINE,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    progress: Progress = no_progress,
) -> DriftReport:
    """Everything that drifted in a live container, against its verified image.

    ``reference`` is a name, id or id prefix (Docker), or a scheme reference
    (``containerd://``, ``k8s://``, ``docker-root://`` ...: see
    :mod:`drifttools.acquisition.runtime`). The processes are read first, then the
    files; the baseline is made meanwhile. Never execs into the container and never
    writes into it.
    """
    source = LiveContainer.resolve(reference, runtime)
    options = RunOptions(acquisition, baseline, exclusions, classification)
    return run(source, options, progress=progress).report


def diff_offline(
    *,
    image: str | Path,
    rootfs: str | Path,
    upper: bool = False,
    ref: str | None = None,
    platform: str | None = None,
    acquisition: AcquisitionOptions = DEFAULT_ACQUISITION,
    baseline: BaselineOptions = NO_CACHE,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    progress: Progress = no_progress,
) -> DriftReport:
    """Diff an acquired container filesystem against its image archive or layout.

    ``image`` is a ``docker save`` tar or an OCI layout directory (``ref`` picks one image
    of several, ``platform`` one of a multi-platform image); ``rootfs`` a directory (a
    mounted rootfs, or with ``upper=True`` an overlay upper dir) or a ``docker export``
    tar. The image's layers are verified first: with ``baseline.verify`` (the default) a
    digest mismatch raises :class:`~drifttools.errors.DigestMismatch`; without, it is
    recorded in the report's baseline and the diff goes on.
    """
    source = AcquiredFilesystem(Path(image), Path(rootfs), upper, ref, platform)
    options = RunOptions(acquisition, baseline, exclusions, classification)
    return run(source, options, progress=progress).report


def diff_checkpoint(
    archive: str | Path,
    *,
    image: str | Path,
    baseline: BaselineOptions = NO_CACHE,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    progress: Progress = no_progress,
) -> DriftReport:
    """Diff a Kubernetes checkpoint archive's changes against its image (a ``docker save``
    tar or an OCI layout); ``checkpoint:///path.tar`` references are taken too."""
    source = Checkpoint(checkpoint_path(str(archive)) or Path(archive), Path(image))
    options = RunOptions(DEFAULT_ACQUISITION, baseline, exclusions, classification)
    return run(source, options, progress=progress).report


def offline_snapshot(
    rootfs: str | Path,
    *,
    upper: bool = False,
    acquisition: AcquisitionOptions = DEFAULT_ACQUISITION,
    progress: Progress = no_progress,
) -> Snapshot:
    """Snapshot an acquired container filesystem: a directory or a ``docker export`` tar.

    With ``upper=True`` the directory is an overlay upper dir (only the changes).
    """
    return read_acquired(Path(rootfs), upper, acquisition, progress)


def snapshot(
    reference: str,
    *,
    runtime: Runtime | None = None,
    acquisition: AcquisitionOptions = DEFAULT_ACQUISITION,
    progress: Progress = no_progress,
) -> Snapshot:
    """Snapshot a live container from the host: processes, mounts, files (no baseline).

    Never execs into the container and never writes into it; see
    :class:`~drifttools.options.AcquisitionOptions` for how it is read.
    """
    return LiveContainer.resolve(reference, runtime).snapshot(acquisition, progress, None)


def bundle(
    reference: str,
    output: str | Path,
    *,
    runtime: Runtime | None = None,
    acquisition: AcquisitionOptions = DEFAULT_ACQUISITION,
    baseline: BaselineOptions = DEFAULT_BASELINE,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    evidence: BundleOptions = DEFAULT_BUNDLE,
    progress: Progress = no_progress,
) -> BundleResult:
    """Collect the evidence of a live container into one sealed bundle at ``output``.

    ``output`` must not exist; ``evidence`` says what is stored and how it is sealed.
    The run is that of :func:`diff`, with the bundle's own steps in it: the executables
    right after the processes, the drifted files' bytes after the diff. Returns the
    bundle's path and its SHA-256, also written to ``<output>.sha256``.
    """
    from drifttools.evidence.bundle import BundleWriter  # a diff loads none of the bundle

    with BundleWriter(Path(output), evidence, reference) as writer:
        source = LiveContainer.resolve(reference, runtime)
        options = RunOptions(acquisition, baseline, exclusions, classification)
        hooks = Hooks(after_processes=writer.after_processes, after_snapshot=writer.after_snapshot)
        done = run(source, options, progress=writer.observe(progress), hooks=hooks)
        return writer.finish(*done, acquisition, baseline.verify)


def processes(
    reference: str,
    *,
    runtime: Runtime | None = None,
    acquisition: AcquisitionOptions = DEFAULT_ACQUISITION,
    baseline: BaselineOptions = DEFAULT_BASELINE,
) -> tuple[ProcessRecord, ...]:
    """The processes of a running container, read from the host, tagged against its image."""
    source = LiveContainer.resolve(reference, runtime)
    info = source.info
    if not info.running:
        return ()
    pids = container_pids_of(source.runtime, info)
    records, _ = read_processes(pids, env_values=acquisition.env_values)
    image: ImageIndex = source.baseline(baseline, no_progress)
    return tag_processes(records, image.entries)


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
