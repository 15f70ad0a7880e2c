"""A baseline in a form tests compare: each path's kind, mode, content hash, symlink target."""

from __future__ import annotations

from drifttools.models import ImageIndex


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
