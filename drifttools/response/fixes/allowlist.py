"""The allowlist side of a fix: the drift judged expected, for the next scans
(``--allow FILE``; the format of :mod:`drifttools.analysis.classifiers.allowlist`)."""

from __future__ import annotations

from drifttools.response.fixes.suggest import Fixes


def allowlist_text(fixes: Fixes) -> str:
    """One rule a directory the application writes, scoped to the image, with its reason."""
    image = (fixes.image or "*").replace(" ", "?")
    lines = ["# drifttools fix: drift judged expected (the application's own writes)"]
    for volume in fixes.volumes:
        lines.append(f"# {'; '.join(volume.motivated_by)}")
        lines.append(f"{image} {volume.subject.rstrip('/')}/**")
    return "\n".join(lines) + "\n"
