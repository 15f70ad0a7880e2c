"""``drifttools``: exit status like diff(1): 0 no drift, 1 drift, 2 trouble."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import drifttools
from drifttools.acquisition.runtime import DEFAULT_RUNTIME, ENGINES, runtime_for
from drifttools.atomic import atomic_output
from drifttools.baseline.cache import default_cache_dir
from drifttools.progress import Progress as ProgressCallback
from drifttools.progress import no_progress
from drifttools.text import printable
from drifttools_cli.evidence import bundle, export, verify
from drifttools_cli.render import (
    OutputFormat,
    draw_containers,
    draw_processes,
    draw_table,
    machine_lines,
    stdout_console,
)

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_TROUBLE = 0, 1, 2


class Trouble(click.ClickException):
    """One clear line on stderr, exit 2."""

    exit_code = EXIT_TROUBLE

    def show(self, file: Any = None) -> None:
        click.echo(f"drifttools: error: {printable(self.message)}", err=True)


@contextmanager
def troubles() -> Iterator[None]:
    """Turn the library's typed errors, and OS errors, into one line and exit 2."""
    try:
        yield
    except drifttools.DriftError as exc:
        raise Trouble(str(exc)) from exc
    except OSError as exc:
        raise Trouble(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc


@contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr when it is a terminal; otherwise nothing drawn."""
    stderr = Console(stderr=True)
    if not enabled or not stderr.is_terminal:
        yield no_progress
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def update(stage: str, done: int, total: int | None) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        yield update


def emit(report: drifttools.DriftReport, output: OutputFormat, out_file: Path | None) -> None:
    """Write the report where asked; a file appears under its name only when complete."""
    if out_file is not None:
        fmt = OutputFormat.JSON if output is OutputFormat.TABLE else output
        with atomic_output(out_file, "w") as handle:
            for line in machine_lines(report, fmt):
                handle.write(line + "\n")
    elif output is OutputFormat.TABLE:
        draw_table(report, stdout_console())
    else:
        for line in machine_lines(report, output):
            sys.stdout.write(line + "\n")


def exit_status(report: drifttools.DriftReport, fail_on: drifttools.Severity | None = None) -> int:
    """diff(1) codes; with ``fail_on``, 1 means "something reached that severity"."""
    if fail_on is not None:
        return EXIT_DRIFT if report.highest_severity.rank >= fail_on.rank else EXIT_NO_DRIFT
    return EXIT_DRIFT if report.has_drift else EXIT_NO_DRIFT


def common_output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--format",
        "output",
        type=click.Choice([f.value for f in OutputFormat]),
        default=OutputFormat.TABLE.value,
        show_default=True,
        help="table for people; json or jsonl for machines.",
    )(command)
    command = click.option(
        "-o",
        "--output-file",
        "out_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the report here (JSON unless --format jsonl), atomically.",
    )(command)
    return click.option(
        "--progress/--no-progress",
        default=os.environ.get("DRIFTTOOLS_PROGRESS", "1") != "0",
        help="Progress bar on stderr (only ever drawn on a terminal).",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(drifttools.__version__, prog_name="drifttools")
def cli() -> None:
    """Container drift forensics: what changed in a container compared with its image."""


@cli.command()
@click.argument("container", required=False)
@click.option(
    "--image",
    "image",
    type=click.Path(path_type=Path),
    help="Offline: the image, a `docker save` tar or an OCI layout directory.",
)
@click.option(
    "--rootfs",
    "rootfs",
    type=click.Path(path_type=Path),
    help="Offline: the container's filesystem, a directory or a `docker export` tar.",
)
@click.option("--upper", is_flag=True, help="Offline: --rootfs is an overlay upper dir.")
@click.option("--ref", help="Offline: which image of an archive that holds several (its tag).")
@click.option("--platform", help="Offline: platform of a multi-platform image (linux/arm64).")
@click.option(
    "--method",
    type=click.Choice(["auto", "upper", "merged", "export"]),
    default="auto",
    show_default=True,
    help="Live: how to read the container's filesystem.",
)
@click.option(
    "--verify-all",
    is_flag=True,
    help="Live: hash every file of the merged view against the image (--method merged).",
)
@click.option("--freeze", is_flag=True, help="Live: pause the container while it is read.")
@click.option(
    "--env-values",
    is_flag=True,
    help="Live: include environment values of processes (they can be secrets).",
)
@click.option(
    "--host", "endpoint", help="Docker Engine endpoint (default: DOCKER_HOST or the socket)."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Layer cache directory (default: $XDG_CACHE_HOME/drifttools).",
)
@click.option("--no-cache", is_flag=True, help="Read and verify every layer again.")
@click.option(
    "--trust-host-layers",
    is_flag=True,
    help="Live: read uncached image layers from the engine's layer dirs, unverified (faster).",
)
@click.option(
    "--allow-unverified",
    is_flag=True,
    help="Go on when a digest does not match; the report says so.",
)
@click.option(
    "--rules",
    "rules",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="YARA rules file or directory, added to the bundled rules (repeatable).",
)
@click.option(
    "--yara-engine",
    type=click.Choice(["yara-x", "yara-python"]),
    default="yara-x",
    show_default=True,
    help="YARA engine: yara-x (per-scan timeout) or yara-python (libyara).",
)
@click.option("--no-yara", is_flag=True, help="Do not scan with YARA.")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Allowlist of expected drift: '[IMAGE-GLOB] PATH-GLOB' a line (repeatable).",
)
@click.option(
    "--fail-on",
    type=click.Choice([level.value for level in drifttools.Severity]),
    help="Exit 1 only when a change, process or package reaches this severity (CI gate).",
)
@common_output_options
def diff(
    container: str | None,
    image: Path | None,
    rootfs: Path | None,
    upper: bool,
    ref: str | None,
    platform: str | None,
    method: str,
    verify_all: bool,
    freeze: bool,
    env_values: bool,
    endpoint: str | None,
    cache_dir: Path | None,
    no_cache: bool,
    trust_host_layers: bool,
    allow_unverified: bool,
    rules: tuple[Path, ...],
    yara_engine: str,
    no_yara: bool,
    allow: tuple[Path, ...],
    fail_on: str | None,
    output: str,
    out_file: Path | None,
    progress: bool,
) -> None:
    """What drifted in CONTAINER (live, from the host) or in an acquired filesystem
    (--image and --rootfs). Exit 0 no drift, 1 drift, 2 trouble; with --fail-on LEVEL,
    1 only when something reaches LEVEL (0 otherwise, drift or not)."""
    checkpoint = container is not None and container.startswith("checkpoint://")
    offline = image is not None or rootfs is not None
    if checkpoint and (image is None or rootfs is not None):
        raise click.UsageError("a checkpoint:// archive is diffed against --image (no --rootfs)")
    if not checkpoint and (
        offline == (container is not None) or (offline and (image is None or rootfs is None))
    ):
        raise click.UsageError("give a CONTAINER, or both --image and --rootfs")
    cache = None if no_cache else drifttools.LayerCache(cache_dir)
    classification = drifttools.ClassifyOptions(
        rules=rules,
        yara=not no_yara,
        yara_engine=yara_engine,
        allow=allow,
        cache_dir=(cache_dir or default_cache_dir()) if not no_cache else None,
    )
    with troubles(), progress_bar(progress) as update:
        if checkpoint:
            from drifttools.acquisition.runtimes.checkpoint import (
                diff_checkpoint,  # gRPC stubs: only here
            )

            report = diff_checkpoint(
                container, image=image, verify=not allow_unverified, cache=cache
            )
        elif container is not None:
            report = drifttools.diff(
                container,
                runtime=runtime_for(container, endpoint=endpoint),
                method="merged" if verify_all else method,
                freeze=freeze,
                env_values=env_values,
                cache=cache,
                verify=not allow_unverified,
                trust_host_layers=trust_host_layers,
                classification=classification,
                progress=update,
            )
        else:
            report = drifttools.diff_offline(
                image=image,
                rootfs=rootfs,
                upper=upper,
                ref=ref,
                platform=platform,
                cache=cache,
                verify=not allow_unverified,
                classification=classification,
                progress=update,
            )
        emit(report, OutputFormat(output), out_file)
    for problem in (report.classification or {}).get("yara", {}).get("problems", []):
        click.echo(
            f"drifttools: warning: YARA rule {printable(problem['rule'])} "
            f"({printable(problem['origin'])}) skipped: {printable(problem['message'])}",
            err=True,
        )
    threshold = drifttools.Severity(fail_on) if fail_on else None
    sys.exit(exit_status(report, threshold))


@cli.command()
@click.argument("container")
@click.option("--env-values", is_flag=True, help="Include environment values (can be secrets).")
@click.option("--host", "endpoint", help="Docker Engine endpoint.")
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def ps(container: str, env_values: bool, endpoint: str | None, output: str) -> None:
    """The processes of CONTAINER, read from the host's /proc, tagged against the image."""
    with troubles():
        records = drifttools.processes(
            container, runtime=runtime_for(container, endpoint=endpoint), env_values=env_values
        )
    if output == "json":
        click.echo(json.dumps([asdict(r) for r in records], indent=2, ensure_ascii=False))
    else:
        draw_processes(records, stdout_console())


@cli.command(name="ls")
@click.option(
    "--runtime",
    "runtime_name",
    type=click.Choice(ENGINES),
    default=DEFAULT_RUNTIME,
    show_default=True,
    help="Which engine to list.",
)
@click.option(
    "--host",
    "--address",
    "endpoint",
    help="Engine endpoint: Docker's DOCKER_HOST, or containerd's socket.",
)
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def list_containers(runtime_name: str, endpoint: str | None, output: str) -> None:
    """Running containers (all namespaces for containerd), each with a quick count of the
    paths it changed (its upper dir)."""
    with troubles():
        runtime = runtime_for(None, endpoint=endpoint, runtime=runtime_name)
        rows = drifttools.running_containers(runtime)
    if output == "json":
        click.echo(json.dumps([asdict(row) for row in rows], indent=2, ensure_ascii=False))
    else:
        draw_containers(rows, stdout_console())


for command in (bundle, verify, export):
    cli.add_command(command)


def main() -> None:
    """Console entry point; usage errors exit 2 as well, like diff(1)."""
    try:
        cli.main(prog_name="drifttools", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("drifttools: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
