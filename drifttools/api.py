"""The entry points most users call: take a snapshot, diff it against its image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drifttools.cache import LayerCache
from drifttools.drift import DEFAULT_EXCLUSIONS, diff_snapshot
from drifttools.image import load_image, require_verified
from drifttools.models import DriftReport, Exclusion, ImageIndex, Snapshot, Target
from drifttools.progress import Progress, no_progress
from drifttools.report import now_rfc3339
from drifttools.rootfs import DEFAULT_HASH_CAP, read_rootfs


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
    progress: Progress = no_progress,
) -> DriftReport:
    """Diff an acquired container filesystem against its image archive or layout.

    ``image`` is a ``docker save`` tar or an OCI layout directory; ``rootfs`` a
    directory (a mounted rootfs, or with ``upper=True`` an overlay upper dir) or
    a ``docker export`` tar. Layers are verified and cached (``cache``; pass
    ``LayerCache()`` for the default location). With ``verify`` (the default)
    a digest mismatch raises :class:`DigestMismatch`; without, it is recorded
    in the report's baseline and the diff goes on.
    """
    baseline = load_image(image, ref=ref, platform=platform, cache=cache, progress=progress)
    if verify:
        require_verified(baseline)
    snapshot = offline_snapshot(
        rootfs, image=baseline, upper=upper, hash_max_size=hash_max_size, progress=progress
    )
    return diff_snapshot(snapshot, baseline, exclusions=exclusions)
