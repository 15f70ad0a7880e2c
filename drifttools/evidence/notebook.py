"""Reports in notebooks: HTML (every container-controlled string escaped) and DataFrames."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from drifttools.clock import rfc3339_ns
from drifttools.text import printable

if TYPE_CHECKING:
    import pandas

    from drifttools.models import ContentDiff, DriftReport

_MAX_ROWS = 500


def _cell(value: object) -> str:
    return html.escape(printable(str(value)) if value is not None else "", quote=True)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_cell(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def change_rows(report: DriftReport) -> list[dict[str, Any]]:
    """One flat row per change: what a DataFrame or a table shows."""
    rows = []
    for change in report.changes:
        facts = change.facts
        layer = report.baseline[change.layer] if change.layer is not None else None
        rows.append(
            {
                "severity": change.severity.value,
                "change": change.change.value,
                "path": change.path,
                "type": facts.kind,
                "mode": f"{facts.mode:04o}",
                "uid": facts.uid,
                "gid": facts.gid,
                "size": facts.size,
                "mtime": rfc3339_ns(facts.mtime_ns),
                "sha256": change.after.sha256 if change.after else None,
                "sha256_before": change.before.sha256 if change.before else None,
                "mount": change.mount,
                "layer": layer.diff_id if layer else None,
                "created_by": layer.created_by if layer else None,
                "tags": ",".join(change.tags),
            }
        )
    return rows


def process_rows(report: DriftReport) -> list[dict[str, Any]]:
    return [
        {
            "pid": p.pid,
            "ns_pid": p.ns_pid,
            "ppid": p.ppid,
            "uid": p.uid,
            "comm": p.comm,
            "cmdline": " ".join(p.cmdline),
            "exe": p.exe,
            "exe_state": p.exe_state,
            "exe_sha256": p.exe_sha256,
            "tags": ",".join(p.tags),
        }
        for p in report.processes
    ]


def diff_summary(diff: ContentDiff) -> str:
    """One line that says what a :class:`ContentDiff` holds (plain text, not escaped)."""
    if diff.kind == "text":
        cut = ", truncated" if diff.truncated else ""
        return f"text: +{diff.lines_added} -{diff.lines_removed} lines{cut}"
    if diff.kind == "binary":
        return (
            f"binary: {diff.size_before} -> {diff.size_after} bytes, {diff.bytes_differing}"
            f" differ; first {diff.common_prefix} and last {diff.common_suffix} equal"
        )
    return f"no diff: {diff.reason}"


def diffs_html(report: DriftReport) -> str:
    """Each modified file's diff as a collapsible block: its path and summary, then the
    unified diff (already escaped by the report, escaped again for HTML), lines coloured."""
    blocks = []
    for change in report.changes:
        if change.diff is None:
            continue
        lines = []
        for line in (change.diff.unified or "").splitlines():
            kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
            if line.startswith(("+++ ", "--- ")):
                kind = "file"
            lines.append(f'<span class="{kind}">{html.escape(line, quote=True)}</span>')
        body = f"<pre>{chr(10).join(lines)}</pre>" if lines else ""
        blocks.append(
            f'<details class="diff"><summary><code>{_cell(change.path)}</code> '
            f"{_cell(diff_summary(change.diff))}</summary>{body}</details>"
        )
    return "".join(blocks)


def report_html(report: DriftReport) -> str:
    """The report as HTML for Jupyter: summary, changes (by severity), processes."""
    summary = report.summary()
    target = report.target
    image = target.image
    verified = "verified" if report.verified else "NOT VERIFIED"
    header = (
        f"<p><b>{_cell(target.runtime)}</b> {_cell(target.name or target.id)} — image "
        f"{_cell((image.ref or image.id) if image else '?')} — baseline {verified} — "
        + ", ".join(
            f"{summary[k]} {k}" for k in ("added", "modified", "metadata", "type", "deleted")
        )
        + f", {summary['unreadable']} unreadable</p>"
    )
    order = ["critical", "high", "medium", "low", "info"]
    rows = sorted(change_rows(report), key=lambda r: (order.index(r["severity"]), r["path"]))
    columns = ["severity", "change", "path", "type", "mode", "uid", "size", "sha256", "created_by"]
    parts = [header, _table(columns, [[r[c] for c in columns] for r in rows[:_MAX_ROWS]])]
    if len(rows) > _MAX_ROWS:
        parts.append(f"<p>... {len(rows) - _MAX_ROWS} more: use to_pandas()</p>")
    if report.processes:
        processes = process_rows(report)
        columns = ["pid", "ppid", "uid", "comm", "cmdline", "exe", "exe_state", "tags"]
        parts.append(_table(columns, [[r[c] for c in columns] for r in processes]))
    parts.append(diffs_html(report))
    return '<div class="drifttools-report">' + "".join(parts) + "</div>"


def changes_frame(report: DriftReport) -> pandas.DataFrame:
    """The changes as a pandas DataFrame (``pip install drifttools[pandas]``)."""
    try:
        import pandas
    except ImportError:
        raise ImportError("to_pandas() needs pandas: pip install 'drifttools[pandas]'") from None
    return pandas.DataFrame(change_rows(report), columns=list(_COLUMNS))


_COLUMNS = (
    "severity",
    "change",
    "path",
    "type",
    "mode",
    "uid",
    "gid",
    "size",
    "mtime",
    "sha256",
    "sha256_before",
    "mount",
    "layer",
    "created_by",
    "tags",
)
