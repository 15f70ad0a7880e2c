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


def cell(value: object) -> str:
    """A value as HTML text: control and bidi characters escaped, then HTML-escaped."""
    return html.escape(printable(str(value)) if value is not None else "", quote=True)


def html_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain HTML table, every cell escaped by :func:`cell`."""
    head = "".join(f"<th>{cell(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
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
            f'<details class="diff"><summary><code>{cell(change.path)}</code> '
            f"{cell(diff_summary(change.diff))}</summary>{body}</details>"
        )
    return "".join(blocks)


def report_html(report: DriftReport) -> str:
    """The report as HTML for Jupyter: summary, changes (by severity), processes, diffs."""
    parts = [summary_html(report), changes_html(report), processes_html(report)]
    return '<div class="drifttools-report">' + "".join(parts) + diffs_html(report) + "</div>"


def summary_html(report: DriftReport) -> str:
    """One paragraph: the target, its image, the baseline's verification, counts by kind."""
    summary = report.summary()
    target = report.target
    image = target.image
    verified = "verified" if report.verified else "NOT VERIFIED"
    return (
        f"<p><b>{cell(target.runtime)}</b> {cell(target.name or target.id)} — image "
        f"{cell((image.ref or image.id) if image else '?')} — baseline {verified} — "
        + ", ".join(
            f"{summary[k]} {k}" for k in ("added", "modified", "metadata", "type", "deleted")
        )
        + f", {summary['unreadable']} unreadable</p>"
    )


def changes_html(report: DriftReport) -> str:
    """The changes, highest severity first (the first 500)."""
    order = ["critical", "high", "medium", "low", "info"]
    rows = sorted(change_rows(report), key=lambda r: (order.index(r["severity"]), r["path"]))
    columns = ["severity", "change", "path", "type", "mode", "uid", "size", "sha256", "created_by"]
    text = html_table(columns, [[r[c] for c in columns] for r in rows[:_MAX_ROWS]])
    if len(rows) > _MAX_ROWS:
        text += f"<p>... {len(rows) - _MAX_ROWS} more: see the JSON report</p>"
    return text


def processes_html(report: DriftReport) -> str:
    """The container's processes, as read from the host's /proc ("" when none)."""
    if not report.processes:
        return ""
    columns = ["pid", "ppid", "uid", "comm", "cmdline", "exe", "exe_state", "tags"]
    return html_table(columns, [[r[c] for c in columns] for r in process_rows(report)])


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
