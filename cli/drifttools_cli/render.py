"""Drawing reports and listings for people: rich tables on a terminal (machines take
:mod:`drifttools_cli.output`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from drifttools import (
    Change,
    ContainerListing,
    DriftReport,
    PackageRecord,
    ProcessRecord,
    Severity,
)
from drifttools.text import printable


def stdout_console() -> Console:
    """The console for reports on stdout: the terminal's width, or wide lines when piped
    (a report in a file or a pager must not lose its paths to an 80-column guess)."""
    probe = Console()
    return Console(highlight=False, width=None if probe.is_terminal else 200)


_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}
_SYMBOL = {"added": "A", "modified": "C", "metadata": "M", "type": "T", "deleted": "D"}

#: Rows of the change table at most: the highest severities first; the rest are counted
#: (by severity and by directory), for people; machines take --format json.
TABLE_ROWS = 200
#: Directories named in the count of the changes not drawn.
_TOP_DIRECTORIES = 5


def draw_table(report: DriftReport, console: Console, rows: int = TABLE_ROWS) -> None:
    """Changes grouped by severity (highest first), then by path, at most ``rows`` of them
    (the rest counted by severity and directory); runtime package drift of no more than
    low under its package's line; then a summary."""
    target = report.target
    image = target.image
    console.print(
        Text.assemble(
            ("target ", "bold"),
            printable(target.name or target.id),
            (" image ", "bold"),
            printable((image.ref or image.id) if image else "?"),
            (" baseline ", "bold"),
            _verification(report),
        )
    )
    if report.changes:
        table = Table(show_edge=False, pad_edge=False, box=None)
        columns = (
            "severity",
            "",
            "path",
            "type",
            "mode",
            "owner",
            "size",
            "layer",
            "tags",
            "att&ck",
        )
        for column in columns:
            wraps = column in ("path", "tags", "att&ck")
            table.add_column(
                column,
                no_wrap=not wraps,
                overflow="fold",
                min_width=24 if column == "path" else None,
            )
        listed = [c for c in report.changes if not _grouped(c)]
        ranks = {level: level.rank for level in Severity}
        ordered = sorted(listed, key=lambda c: (-ranks[c.severity], c.path))
        for change in ordered[:rows]:
            facts = change.facts
            layer = "" if change.layer is None else str(change.layer)
            table.add_row(
                Text(change.severity.value, style=_STYLE[change.severity]),
                _SYMBOL[change.change.value],
                Text(printable(change.path) + _link_suffix(facts.target)),
                facts.kind,
                f"{facts.mode:04o}",
                f"{facts.uid}:{facts.gid}",
                str(facts.size) if facts.kind == "file" else "",
                layer,
                Text(printable(",".join(change.tags))),
                ",".join(change.attack),
            )
        console.print(table)
        if len(ordered) > rows:
            console.print(_more_line(ordered[rows:]))
    flagged = sorted(
        (p for p in report.processes if p.severity.rank > Severity.INFO.rank),
        key=lambda p: (-p.severity.rank, p.pid),
    )
    for process in flagged:
        console.print(
            Text.assemble(
                (process.severity.value, _STYLE[process.severity]),
                f" process {process.pid} ",
                printable(process.exe or process.comm),
                f" [{printable(','.join(process.tags))}] {','.join(process.attack)}",
            )
        )
    grouped = {c.path for c in report.changes if _grouped(c)}
    for package in report.packages:
        console.print(_package_line(package, grouped))
    summary = report.summary()
    counts = ", ".join(
        f"{summary[k]} {k}" for k in ("added", "modified", "metadata", "type", "deleted")
    )
    levels = ", ".join(f"{n} {k}" for k, n in reversed(summary["by_severity"].items()) if n)
    console.print(Text(f"{counts}; {summary['unreadable']} unreadable", style="bold"))
    if levels:
        console.print(Text(f"by severity: {levels}", style="bold"))
    for error in report.errors[:20]:
        console.print(Text(f"unreadable: {printable(error.path)}: {printable(error.reason)}"))
    if len(report.errors) > 20:
        console.print(
            Text(f"... and {len(report.errors) - 20} more unreadable (see --format json)")
        )


def _verification(report: DriftReport) -> tuple[str, str]:
    if report.verified:
        return ("verified", "green")
    if not report.baseline_problems and all(
        layer.verified or (layer.source == "verified-by-cache" and not layer.problems)
        for layer in report.baseline
    ):
        return ("verified by cache only (not re-checked in this run)", "yellow")
    return ("NOT VERIFIED", "bold red")


def _more_line(hidden: Sequence[Change]) -> Text:
    """The changes the table leaves out, counted by severity and by top directories."""
    levels = Counter(change.severity for change in hidden)
    by_level = ", ".join(f"{levels[k]:,} {k.value}" for k in Severity if levels[k])
    places = Counter(_top_directory(change.path) for change in hidden)
    common = ", ".join(
        f"{printable(place)} {count:,}" for place, count in places.most_common(_TOP_DIRECTORIES)
    )
    return Text(
        f"... and {len(hidden):,} more changes ({by_level}; most under {common}), "
        "use --format json",
        style="bold",
    )


def _top_directory(path: str) -> str:
    """The first two directories of ``path`` (``/app/node_modules``), or its parent."""
    parts = path.split("/", 3)
    return "/".join(parts[:3]) if len(parts) > 3 else (path.rsplit("/", 1)[0] or "/")


def _grouped(change: Change) -> bool:
    """Runtime package drift with nothing more to it: told on its package's line."""
    provenance = change.provenance
    return (
        provenance is not None
        and provenance.runtime_drift
        and change.severity.rank <= Severity.LOW.rank
    )


def _package_line(package: PackageRecord, grouped: set[str]) -> Text:
    words = [package.manager, package.name, package.change]
    words += [f"{package.before or '-'} -> {package.after or '-'}"]
    words += [w for w in (package.architecture, package.purl) if w]
    folded = sum(1 for path in package.files if path in grouped)
    counts = f"{len(package.files)} drifted paths"
    counts += f" ({folded} as it recorded them, not listed above)" if folded else ""
    if package.mismatched:
        counts += f", {len(package.mismatched)} NOT as it recorded them"
    return Text.assemble(
        (package.severity.value, _STYLE[package.severity]),
        " package ",
        printable(" ".join(words)),
        f": {counts}",
    )


def _link_suffix(target: str | None) -> str:
    return f" -> {printable(target)}" if target else ""


def draw_processes(processes: Sequence[ProcessRecord], console: Console) -> None:
    """Processes with their exe state and tags; attacker-controlled text escaped."""
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("pid", "ppid", "uid", "exe", "state", "sha256", "tags", "cmdline"):
        table.add_column(column, no_wrap=column not in ("cmdline", "exe"))
    for process in processes:
        alarming = {"exe-deleted", "memfd", "exe-not-in-image", "exe-modified"} & set(process.tags)
        table.add_row(
            str(process.pid),
            str(process.ppid),
            str(process.uid),
            Text(printable(process.exe or "?")),
            Text(process.exe_state, style="bold red" if alarming else ""),
            (process.exe_sha256 or "")[:12],
            Text(",".join(process.tags), style="bold red" if alarming else ""),
            Text(printable(" ".join(process.cmdline))),
        )
    console.print(table)


def draw_containers(rows: Sequence[ContainerListing], console: Console) -> None:
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("id", "name", "image", "status", "pid", "upper paths", "privileged"):
        table.add_column(column)
    for row in rows:
        changed = row.upper_paths
        table.add_row(
            row.id,
            Text(printable(row.name)),
            Text(printable(str(row.image))),
            row.status,
            str(row.pid or ""),
            Text("?" if changed is None else str(changed), style="yellow" if changed else ""),
            Text("yes", style="bold red") if row.privileged else "",
        )
    console.print(table)
