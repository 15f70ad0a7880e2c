"""The human side of a fix: a short summary, each suggestion with what motivated it."""

from __future__ import annotations

from drifttools.response.fixes.suggest import Fixes, Suggestion
from drifttools.text import printable


def _item(suggestion: Suggestion) -> list[str]:
    lines = [f"- {printable(suggestion.subject)}"]
    lines += [f"  - {printable(why)}" for why in suggestion.motivated_by]
    return lines


def summary_text(fixes: Fixes) -> str:
    """Markdown: what to change at the source, and why, group by group."""
    lines = [f"# Fix at the source: {printable(fixes.image or 'the image')}", ""]
    groups = (
        ("Installed at runtime: install in the image, pinned", fixes.installs),
        ("Written by the application: a VOLUME / emptyDir, root read-only", fixes.volumes),
        ("Mutation tools the image ships that were used: remove", fixes.tools),
        ("Not judged expected: investigate (they motivate the read-only root)", fixes.investigate),
    )
    for heading, items in groups:
        if items:
            lines += [f"## {heading}", ""]
            for suggestion in items:
                lines += _item(suggestion)
            lines.append("")
    lines += ["## Pod security", ""]
    lines += _item(fixes.user) + _item(fixes.capabilities)
    return "\n".join(lines) + "\n"
