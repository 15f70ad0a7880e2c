"""What a run reads: a live container, an acquired filesystem, or a checkpoint archive.

A source knows how to take its :class:`~drifttools.models.Snapshot` and where its image's
baseline comes from; :func:`drifttools.pipeline.run` alone decides when each happens. A new
kind of input is one new class here with these four members.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from drifttools.acquisition.rootfs import atime_notes, read_rootfs
from drifttools.acquisition.runtime import Runtime, runtime_for
from drifttools.acquisition.snapshot import ProcessHook, add_hardlink_siblings, take_snapshot
from drifttools.analysis.classify import ImageFiles, image_files_from_layers
from drifttools.baseline.cache import resolve_cache
from drifttools.baseline.container import container_baseline
from drifttools.baseline.image import load_image
from drifttools.clock import now_rfc3339
from drifttools.errors import RootfsError
from drifttools.models import ContainerInfo, ImageIndex, Snapshot, Target
from drifttools.options import AcquisitionOptions, BaselineOptions
from drifttools.progress import Progress, ProgressEvent, Stage


class Source(Protocol):
    """One input of the pipeline."""

    #: True when the evidence changes while it is read (a live container): the pipeline then
    #: takes the snapshot first (RFC 3227) and makes the baseline meanwhile.
    volatile: bool

    def snapshot(
        self,
        options: AcquisitionOptions,
        progress: Progress,
        after_processes: ProcessHook | None,
    ) -> Snapshot:
        """Read the container's state (``after_processes`` right after its processes)."""
        ...

    def baseline(self, options: BaselineOptions, progress: Progress) -> ImageIndex:
        """The image as it should look, verified as ``options`` asks."""
        ...

    def complete(
        self, snapshot: Snapshot, baseline: ImageIndex, options: AcquisitionOptions
    ) -> Snapshot:
        """``snapshot`` with what only the baseline tells to read."""
        ...

    def image_files(self, baseline: ImageIndex) -> ImageFiles | None:
        """A reader of the image's own file bytes, for classification, when there is one."""
        ...


@dataclass(frozen=True)
class LiveContainer:
    """A container of a running engine, read from the host."""

    info: ContainerInfo
    runtime: Runtime
    volatile = True

    @classmethod
    def resolve(cls, reference: str, runtime: Runtime | None = None) -> LiveContainer:
        """The container ``reference`` names (name, id or id prefix, or a scheme reference)."""
        runtime = runtime or runtime_for(reference)
        return cls(runtime.resolve(reference), runtime)

    def snapshot(
        self,
        options: AcquisitionOptions,
        progress: Progress,
        after_processes: ProcessHook | None,
    ) -> Snapshot:
        return take_snapshot(
            self.info, self.runtime, options, progress=progress, after_processes=after_processes
        )

    def baseline(self, options: BaselineOptions, progress: Progress) -> ImageIndex:
        return container_baseline(
            self.info,
            self.runtime,
            cache=resolve_cache(options.cache),
            trust_host_layers=options.trust_host_layers,
            trust_cache=options.trust_cache,
            progress=progress,
        )

    def complete(
        self, snapshot: Snapshot, baseline: ImageIndex, options: AcquisitionOptions
    ) -> Snapshot:
        """The merged view of image hardlinks whose inode the upper dir changed."""
        return add_hardlink_siblings(snapshot, baseline.links, options.hashing)

    def image_files(self, baseline: ImageIndex) -> ImageFiles | None:
        layers = self.runtime.stored_layers(self.info)
        if layers is None or len(layers) != len(baseline.layers):
            return None
        return image_files_from_layers(baseline, layers)


class AcquiredInput:
    """What the inputs acquired earlier share: nothing in them changes any more (no process
    hook, nothing to complete), their image is an archive or a layout, and its files are
    not read for classification."""

    volatile = False
    image: Path  # a ``docker save`` tar or an OCI layout directory
    ref: str | None  # which image of an archive that holds several
    platform: str | None  # of a multi-platform image

    def read(self, options: AcquisitionOptions, progress: Progress) -> Snapshot:
        """The input's snapshot."""
        raise NotImplementedError

    def snapshot(
        self,
        options: AcquisitionOptions,
        progress: Progress,
        after_processes: ProcessHook | None,
    ) -> Snapshot:
        return self.read(options, progress)

    def baseline(self, options: BaselineOptions, progress: Progress) -> ImageIndex:
        return load_image(
            self.image,
            ref=self.ref,
            platform=self.platform,
            cache=resolve_cache(options.cache),
            progress=progress,
        )

    def complete(
        self, snapshot: Snapshot, baseline: ImageIndex, options: AcquisitionOptions
    ) -> Snapshot:
        return snapshot

    def image_files(self, baseline: ImageIndex) -> ImageFiles | None:
        return None


@dataclass(frozen=True)
class AcquiredFilesystem(AcquiredInput):
    """A container filesystem acquired earlier (a directory, an upper dir, a ``docker
    export`` tar) and its image."""

    image: Path
    rootfs: Path
    upper: bool = False  # rootfs is an overlay upper dir (only the changes)
    ref: str | None = None
    platform: str | None = None

    def read(self, options: AcquisitionOptions, progress: Progress) -> Snapshot:
        return read_acquired(self.rootfs, self.upper, options, progress)


def read_acquired(
    rootfs: Path, upper: bool, options: AcquisitionOptions, progress: Progress
) -> Snapshot:
    """A snapshot of an acquired filesystem (``upper``: an overlay upper dir)."""
    acquired_at = now_rfc3339()
    progress(ProgressEvent(Stage.FILESYSTEM))
    view = "upper" if upper else "merged"
    state = read_rootfs(
        rootfs,
        view=view,
        hash_max_size=options.hash_max_size,
        legacy_hashes=options.legacy_hashes,
    )
    progress(ProgressEvent(Stage.FILESYSTEM, len(state.tree), len(state.tree)))
    target = Target(
        runtime="offline",
        id=str(rootfs.resolve()),
        name=rootfs.name,
        details={"source": state.source, "method": state.method, "view": state.view},
    )
    return Snapshot(
        target=target,
        acquired_at=acquired_at,
        filesystems=(state,),
        notes=tuple(atime_notes([state])),
    )


@dataclass(frozen=True)
class Checkpoint(AcquiredInput):
    """A Kubernetes checkpoint archive (KEP-2008) and its image, which the archive lacks."""

    archive: Path
    image: Path
    ref: str | None = None
    platform: str | None = None

    def read(self, options: AcquisitionOptions, progress: Progress) -> Snapshot:
        from drifttools.acquisition.runtimes.checkpoint import CheckpointRuntime  # its own

        progress(ProgressEvent(Stage.FILESYSTEM))
        try:
            return CheckpointRuntime(self.archive, image=self.image).snapshot()
        except (tarfile.TarError, EOFError, ValueError) as exc:
            raise RootfsError(f"{self.archive}: checkpoint archive unreadable: {exc}") from exc


def with_note(snapshot: Snapshot, note: str) -> Snapshot:
    """``snapshot`` with one more acquisition note."""
    return replace(snapshot, notes=(*snapshot.notes, note))
