"""A standalone HTML report, for people who are not in Jupyter: one file, viewable offline.

Severity counts, the changes (highest severity first), the processes, each modified file's
diff, the container's log files, and a timeline of the changes' modification times against
the container's start (its first process), drawn by matplotlib as an inline SVG
(``pip install 'drifttools[html]'``). Every container-controlled string is escaped
(:func:`drifttools.evidence.notebook.cell`); a Content-Security-Policy forbids scripts and
every fetch, so nothing in the page can reach the network.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from drifttools.evidence.notebook import (
    cell,
    changes_html,
    diffs_html,
    html_table,
    processes_html,
    summary_html,
)
from drifttools.evidence.report_read import ns_from_rfc3339
from drifttools.models import ChangeKind, DriftReport, Severity
from drifttools.version import __version__

_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td { max-width: 36em; overflow-wrap: anywhere; }
pre { background: #f8f8f8; padding: .5em; overflow-x: auto; }
.add { color: #0a6e0a; } .del { color: #b00020; } .hunk { color: #6a3fa0; }
.file { font-weight: bold; } details.diff { margin: .3em 0; }
td.critical, td.high { color: #b00020; font-weight: bold; } td.medium { color: #a05a00; }
"""
_COLOURS = {
    ChangeKind.ADDED: "#1f77b4",
    ChangeKind.MODIFIED: "#d62728",
    ChangeKind.METADATA: "#9467bd",
    ChangeKind.TYPE: "#ff7f0e",
    ChangeKind.DELETED: "#7f7f7f",
}


def lines(report: DriftReport, acquisition: Mapping[str, Any] | None = None) -> Iterator[str]:
    """The HTML document, a section a line."""
    name = report.target.name or report.target.id
    yield "<!DOCTYPE html>"
    yield (
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        f"<title>drifttools: {cell(name)}</title><style>{_STYLE}</style></head><body>"
    )
    yield f"<h1>drifttools report: {cell(name)}</h1>"
    acquired = f"acquired {cell(report.acquired_at)} by drifttools {cell(__version__)}"
    if acquisition:
        acquired += f" (case {cell(acquisition.get('case_id'))})"
    yield f"<p>{acquired}</p>{summary_html(report)}"
    yield f'<h2 id="severity">Severity</h2>{severity_table(report)}'
    yield f'<h2 id="timeline">Timeline</h2>{timeline_svg(report)}'
    yield f'<h2 id="changes">Changes</h2>{changes_html(report)}'
    yield f'<h2 id="processes">Processes</h2>{processes_html(report) or "<p>none read</p>"}'
    diffs = diffs_html(report).replace('<details class="diff">', '<details class="diff" open>')
    yield f'<h2 id="diffs">Diffs</h2>{diffs or "<p>no modified files</p>"}'
    yield f'<h2 id="logs">Logs</h2>{logs_table(report)}'
    yield "</body></html>"


def severity_table(report: DriftReport) -> str:
    """Changes, processes and packages counted by severity, highest first."""
    rows: list[list[Any]] = []
    for level in reversed(Severity):
        counts = [
            sum(1 for item in items if item.severity is level)
            for items in (report.changes, report.processes, report.packages)
        ]
        rows.append([level.value, *counts])
    body = html_table(["severity", "changes", "processes", "packages"], rows)
    for marked in ("critical", "high", "medium"):
        body = body.replace(f"<td>{marked}</td>", f'<td class="{marked}">{marked}</td>')
    return body


def logs_table(report: DriftReport) -> str:
    """The container's log files: where, how big, which time range."""
    if not report.logs:
        return "<p>no log files found on the host</p>"
    columns = ["path", "format", "rotated", "size", "entries", "first_at", "last_at", "sha256"]
    return html_table(columns, [[getattr(log, c) for c in columns] for log in report.logs])


def container_start(report: DriftReport) -> datetime | None:
    """When the container started, as its first process did (None: no process read)."""
    starts = [ns_from_rfc3339(p.started_at) for p in report.processes]
    known = [ns for ns in starts if ns is not None]
    return _datetime(min(known)) if known else None


def timeline_svg(report: DriftReport) -> str:
    """Each change at its modification time (the image's for a deletion), by severity and
    coloured by kind, with the container's start and the acquisition marked: an inline SVG."""
    try:
        from matplotlib.dates import date2num
        from matplotlib.figure import Figure
    except ImportError:
        return "<p>no timeline: it needs matplotlib (pip install 'drifttools[html]')</p>"
    figure = Figure(figsize=(10, 3.2), layout="constrained")
    axes = figure.add_subplot()
    levels = list(Severity)
    for kind, colour in _COLOURS.items():
        points = [(c.facts.mtime_ns, c.severity.rank) for c in report.changes if c.change is kind]
        if points:
            axes.scatter(
                [date2num(_datetime(ns)) for ns, _ in points],
                [rank for _, rank in points],
                s=18,
                c=colour,
                label=kind.value,
                alpha=0.8,
            )
    started = container_start(report)
    if started is not None:
        axes.axvline(date2num(started), color="#2ca02c", linestyle="--", label="container start")
    acquired = ns_from_rfc3339(report.acquired_at)
    if acquired is not None:
        axes.axvline(
            date2num(_datetime(acquired)), color="#444", linestyle=":", label="acquisition"
        )
    axes.xaxis_date(UTC)
    axes.set_yticks(range(len(levels)), [level.value for level in levels])
    axes.set_ylim(-0.5, len(levels) - 0.5)
    axes.set_xlabel("modification time (UTC)")
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", fontsize="small", ncols=4)
    figure.autofmt_xdate()
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg") :]


def _datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1_000_000_000, UTC)
