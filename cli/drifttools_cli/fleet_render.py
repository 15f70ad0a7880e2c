"""The table of a scan or a cluster summary: one line per container, most severe first;
then each replica group's common drift, once; then engines that could not be reached.
Every text a container controls (names, paths, labels) is escaped before it is drawn."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from drifttools import Severity
from drifttools.fleet.records import Row, Summary
from drifttools.text import printable
from drifttools_cli.render import _STYLE, stdout_console

__all__ = ["draw_summary", "stdout_console"]

_KINDS = (("added", "A"), ("modified", "C"), ("metadata", "M"), ("type", "T"), ("deleted", "D"))
_SHOWN_COMMON = 5


def draw_summary(summary: Summary, console: Console) -> None:
    """The summary as a table for people."""
    several = len({row.container.node for row in summary.rows}) > 1 or len(summary.nodes) > 1
    table = Table(show_edge=False, pad_edge=False, box=None)
    columns = ["severity", "runtime", "container", "image", "changes", "by severity", "top"]
    for column in (["node"] if several else []) + columns:
        table.add_column(column, overflow="fold", no_wrap=column in ("severity", "changes"))
    for row in summary.rows:
        table.add_row(*([printable(row.container.node)] if several else []), *_cells(row))
    console.print(table)
    for group in summary.groups:
        common = group.common
        listed = ", ".join(f"{kind} {printable(path)}" for _, path, kind in common[:_SHOWN_COMMON])
        more = f" and {len(common) - _SHOWN_COMMON} more" if len(common) > _SHOWN_COMMON else ""
        console.print(
            Text.assemble(
                ("replicas ", "bold"),
                printable(group.key),
                f": {len(group.members)} containers; common drift: {len(common)} paths",
                f" ({listed}{more})" if common else "",
            )
        )
    for node in summary.nodes:
        for engine in node.engines:
            if engine.error is not None:
                where = f" on {printable(node.node)}" if several else ""
                console.print(
                    Text(f"{engine.name}{where}: not scanned: {printable(engine.error)}", "yellow")
                )
    scanned, failed = summary.scanned, summary.failed
    drifted = sum(1 for row in summary.rows if row.drifted)
    nodes = f" on {len(summary.nodes)} nodes" if several else ""
    console.print(
        Text(f"{scanned} scanned{nodes}, {drifted} drifted, {failed} failed", style="bold")
    )


def _cells(row: Row) -> list[Text | str]:
    c = row.container
    image = Text(printable(c.image or c.image_id[:19]))
    if row.severity is None:
        reason = Text(f"not scanned: {printable(row.error or '?')}", style="bold red")
        return [
            Text("failed", "bold red"),
            c.runtime,
            Text(printable(c.label)),
            image,
            "",
            "",
            reason,
        ]
    changes = " ".join(f"{row.counts.get(k, 0)}{s}" for k, s in _KINDS if row.counts.get(k))
    levels = ", ".join(
        f"{row.counts[level.value]} {level.value}"
        for level in reversed(Severity)
        if row.counts.get(level.value) and level is not Severity.INFO
    )
    top = Text(printable(row.top or ""))
    if row.outliers:
        top.append(f" OUTLIER: {len(row.outliers)} paths only it has", style="bold magenta")
        first = row.outliers[0]
        top.append(f" ({first[2]} {printable(first[1])})")
    if row.bundle:
        top.append(f" bundle {printable(row.bundle)}", style="green")
    return [
        Text(row.severity.value, style=_STYLE[row.severity]),
        c.runtime,
        Text(printable(c.label)),
        image,
        changes or "none",
        levels,
        top,
    ]
