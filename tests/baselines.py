"""A baseline in a form tests compare: each path's kind, mode, content hash, symlink target."""

from __future__ import annotations

from collections.abc import Sequence

from drifttools import _native
from drifttools.baseline.image import merged_image
from drifttools.baseline.index import database_candidates
from drifttools.models import ImageIndex, ImageRef


def merged_baseline(layers: Sequence[_native.Tree], *, overlay: bool = False) -> ImageIndex:
    """The baseline of an image of ``layers`` (bottom first), merged as a run merges them
    (``overlay``: unpacked lower dirs)."""
    image = ImageRef(ref=None, id="sha256:" + "0" * 64)
    merged = _native.MergedLayers(layers, overlay=overlay)
    return merged_image(image, (), merged, (), databases=database_candidates(layers))


def baseline_view(index: ImageIndex) -> dict[str, tuple]:
    """Each path of ``index`` as (kind, mode, sha256, symlink target or None)."""
    view = {}
    for path, entry in index.entries.items():
        facts = entry.facts
        view[path] = (
            facts.kind,
            facts.mode,
            facts.sha256,
            facts.target if facts.kind == "symlink" else None,
        )
    return view
