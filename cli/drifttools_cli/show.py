"""``drifttools show SOURCE PATH``: one drifted path of a live container or a bundle, for
people: its change, facts before and after, hashes, findings, and with ``--diff`` what
changed inside it (the report's bounded, escaped unified diff, or its byte summary).

Exit status like diff(1): 0 the path did not drift, 1 it did, 2 trouble.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drifttools.clock import rfc3339_ns
from drifttools.evidence.notebook import diff_summary
from drifttools.models import Change, DriftReport, FileFacts
from drifttools.text import printable
from drifttools_cli.common import EXIT_DRIFT, EXIT_OK, Engines, engine_options, troubles
from drifttools_cli.evidence import cache_dir_option, report_of


@click.command()
@click.argument("source")
@click.argument("path")
@click.option("--diff", "with_diff", is_flag=True, help="Show what changed inside the file.")
@engine_options()
@cache_dir_option
def show(source: str, path: str, with_diff: bool, engines: Engines, cache_dir: Path | None) -> None:
    """PATH of SOURCE (a live container or a bundle): how it drifted from the image."""
    with troubles():
        report, _ = report_of(source, engines, cache_dir)
    change = next((c for c in report.changes if c.path == path), None)
    if change is None:
        click.echo(f"{printable(path)}: no drift")
        sys.exit(EXIT_OK)
    for line in _describe(change, report):
        click.echo(line)
    if with_diff:
        if change.diff is None:
            click.echo("no diff: only modified regular files are diffed")
        else:
            click.echo(printable(diff_summary(change.diff)))
            click.echo(change.diff.unified or "", nl=False)  # each line escaped by the report
            if change.diff.truncated:
                click.echo("... (diff truncated at its cap; the bundle keeps the whole file)")
    sys.exit(EXIT_DRIFT)


def _describe(change: Change, report: DriftReport) -> list[str]:
    layer = report.baseline[change.layer] if change.layer is not None else None
    lines = [f"{printable(change.path)}: {change.change.value} ({change.severity.value})"]
    if layer is not None:
        lines.append(f"  layer: {layer.diff_id}  {printable(layer.created_by or '')}")
    for side, facts in (("image", change.before), ("container", change.after)):
        if facts is not None:
            lines.append(f"  {side + ':':<10} {_facts(facts)}")
    lines += [f"  finding: {printable(f.rule)} ({f.severity.value}) {printable(f.detail)}"
              for f in change.findings]  # fmt: skip
    return lines


def _facts(facts: FileFacts) -> str:
    text = f"{facts.kind} {facts.mode:04o} {facts.uid}:{facts.gid} {facts.size} bytes"
    text += f" mtime {rfc3339_ns(facts.mtime_ns)}"
    for name in ("sha256", "sha1", "md5"):
        if (value := getattr(facts, name)) is not None:
            text += f" {name} {value}"
    if facts.target is not None:
        text += f" -> {printable(facts.target)}"
    return text
