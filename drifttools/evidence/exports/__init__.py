"""Timeline and interchange exports of a report: Sleuth Kit bodyfile, Timesketch, CASE/UCO,
and a standalone HTML report for people.

Each export is one module with a function ``lines(report, acquisition)`` that yields
the output's lines (without newlines). ``acquisition`` is a bundle's acquisition
record when the report came from one (CASE uses it), else None. All text the
container controls (paths, symlink targets, command lines) is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from drifttools.evidence.exports import bodyfile, case, html, timesketch
from drifttools.models import DriftReport

Export = Callable[[DriftReport, Mapping[str, Any] | None], Iterator[str]]

#: Every export by its ``--to`` name; a new one is a module here and a line in this map.
EXPORTS: Mapping[str, Export] = {
    "bodyfile": bodyfile.lines,
    "timesketch": timesketch.lines,
    "case": case.lines,
    "html": html.lines,
}
FORMATS = tuple(EXPORTS)


def export_lines(
    report: DriftReport, name: str, acquisition: Mapping[str, Any] | None = None
) -> Iterator[str]:
    """The lines of ``report`` in the export format ``name`` (one of :data:`FORMATS`)."""
    if name not in EXPORTS:
        raise ValueError(f"export format must be one of {FORMATS}, not {name!r}")
    return EXPORTS[name](report, acquisition)
