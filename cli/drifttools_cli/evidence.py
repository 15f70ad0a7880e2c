"""``drifttools bundle``, ``verify`` and ``export``: evidence bundles and timelines.

Exit status like diff(1): ``verify`` gives 0 when every byte checked out, 1 when
verification failed (what failed on stderr), 2 on trouble (no such bundle, bad
key). ``bundle`` and ``export`` give 0 or 2.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import drifttools
from drifttools.atomic import atomic_output
from drifttools.evidence.bundle import is_bundle, open_bundle, verify_bundle
from drifttools.evidence.exports import FORMATS, export_lines
from drifttools.options import DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_TOTAL_SIZE, BundleOptions
from drifttools.text import printable
from drifttools_cli.common import (
    EXIT_OK,
    Engines,
    InputPath,
    OutputPath,
    engine_options,
    progress_bar,
    progress_option,
    run_options,
    troubles,
)

if TYPE_CHECKING:
    from drifttools.pipeline import RunOptions

EXIT_FAILED = 1


@click.command()
@click.argument("container")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=OutputPath(dir_okay=True),
    help="Where to write the bundle (must not exist); <output>.sha256 is written beside it.",
)
@click.option("--dir", "as_directory", is_flag=True, help="Write a directory, not one tar file.")
@click.option(
    "--sign",
    "sign_key",
    type=InputPath(dir_okay=False),
    help="Sign the manifest with this Ed25519 private key (PEM, unencrypted).",
)
@click.option("--operator", help="Who acquired the evidence (recorded).")
@click.option("--case-id", help="The case this acquisition belongs to (recorded).")
@click.option(
    "--max-file-size",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_FILE_SIZE,
    show_default=True,
    help="Bytes: larger files and executables are listed as skipped, not stored.",
)
@click.option(
    "--max-total-size",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_TOTAL_SIZE,
    show_default=True,
    help="Bytes: stop storing blobs past this total (the rest is listed as skipped).",
)
@run_options
@engine_options()
@progress_option
def bundle(
    container: str,
    output: Path,
    as_directory: bool,
    sign_key: Path | None,
    operator: str | None,
    case_id: str | None,
    max_file_size: int,
    max_total_size: int,
    options: RunOptions,
    engines: Engines,
    progress: bool,
) -> None:
    """Collect CONTAINER's evidence into one sealed bundle; print its SHA-256 at the end."""
    evidence = BundleOptions(
        directory=as_directory,
        max_file_size=max_file_size,
        max_total_size=max_total_size,
        operator=operator,
        case_id=case_id,
        sign_key=sign_key,
    )
    with troubles(), progress_bar(progress) as update:
        result = drifttools.bundle(
            container,
            output,
            runtime=engines.runtime_for(container),
            acquisition=options.acquisition,
            baseline=options.baseline,
            classification=options.classification,
            exclusions=options.exclusions,
            evidence=evidence,
            progress=update,
        )
    for item in result.skipped:
        where = item["path"] if item["path"] is not None else f"pid {item['pid']}"
        click.echo(f"skipped: {printable(str(where))}: {printable(str(item['reason']))}", err=True)
    click.echo(f"sha256:{result.sha256}  {printable(str(result.path))}")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "public_key",
    type=InputPath(dir_okay=False),
    help="Require a signature by this Ed25519 public key (PEM).",
)
def verify(path: Path, public_key: Path | None) -> None:
    """Check every byte of the bundle at PATH. Exit 0 verified, 1 failed, 2 trouble."""
    with troubles():
        result = verify_bundle(path, public_key=public_key)
    name = printable(str(path))
    if not result.ok:
        for problem in result.problems:
            click.echo(f"drifttools: verify: {name}: {printable(problem)}", err=True)
        click.echo(f"FAILED {name}")
        sys.exit(EXIT_FAILED)
    signed = (
        "signed, key checked" if result.key_given else "signed" if result.signed else "unsigned"
    )
    click.echo(f"verified {name}: {result.members} members, {signed}, sha256:{result.sha256}")
    sys.exit(EXIT_OK)


def report_of(
    source: str, engines: Engines, cache_dir: Path | None
) -> tuple[drifttools.DriftReport, Mapping[str, Any] | None]:
    """The report of SOURCE: a bundle's (with its acquisition record), or a live diff."""
    if is_bundle(source):
        with open_bundle(source) as opened:
            return opened.report, opened.acquisition
    report = drifttools.diff(
        source,
        runtime=engines.runtime_for(source),
        baseline=drifttools.BaselineOptions(cache=drifttools.LayerCache(cache_dir)),
    )
    return report, None


cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Layer cache directory (SOURCE a container).",
)


@click.command()
@click.argument("source")
@click.option("--to", "fmt", type=click.Choice(FORMATS), required=True, help="Export format.")
@click.option(
    "-o",
    "--output-file",
    "out_file",
    type=OutputPath(),
    help="Write here (atomically) instead of stdout.",
)
@engine_options()
@cache_dir_option
def export(
    source: str, fmt: str, out_file: Path | None, engines: Engines, cache_dir: Path | None
) -> None:
    """Export SOURCE (a bundle, or a live container) as a bodyfile, Timesketch JSONL, CASE,
    or a standalone HTML report (severity, processes, diffs, logs, a timeline)."""
    with troubles():
        report, acquisition = report_of(source, engines, cache_dir)
        lines = export_lines(report, fmt, acquisition)
        if out_file is None:
            for line in lines:
                sys.stdout.write(line + "\n")
        else:
            with atomic_output(out_file, "w") as handle:
                for line in lines:
                    handle.write(line + "\n")
