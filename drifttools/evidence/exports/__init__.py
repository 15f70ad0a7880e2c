"""Timeline and interchange exports of a report: Sleuth Kit bodyfile, Timesketch, CASE/UCO.

Each export is one module with a function ``lines(report, acquisition)`` that yields
the output's lines (without newlines). ``acquisition`` is a bundle's acquisition
record when the report came from one (CASE uses it), else None. All text the
container controls (paths, symlink targets, command lines) is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from drifttools.models import DriftReport

Export = Callable[[DriftReport, Mapping[str, Any] | None], Iterator[str]]

FORMATS = ("bodyfile", "timesketch", "case")


def exporter(name: str) -> Export:
    """The export function of the format ``name`` (one of :data:`FORMATS`)."""
    if name == "bodyfile":
        from drifttools.evidence.exports.bodyfile import lines
    elif name == "timesketch":
        from drifttools.evidence.exports.timesketch import lines
    elif name == "case":
        from drifttools.evidence.exports.case import lines
    else:
        raise ValueError(f"export format must be one of {FORMATS}, not {name!r}")
    return lines


def export_lines(
    report: DriftReport, name: str, acquisition: Mapping[str, Any] | None = None
) -> Iterator[str]:
    """The lines of ``report`` in the export format ``name``."""
    return exporter(name)(report, acquisition)
