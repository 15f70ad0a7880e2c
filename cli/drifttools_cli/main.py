"""``drifttools``: exit status like diff(1): 0 no drift, 1 drift, 2 trouble."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import drifttools
from drifttools.acquisition.runtime import DEFAULT_RUNTIME, ENGINES, checkpoint_path
from drifttools.atomic import atomic_output
from drifttools.text import printable
from drifttools_cli.common import (
    EXIT_DRIFT,
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
from drifttools_cli.output import OutputFormat, machine_text

if TYPE_CHECKING:
    from drifttools.pipeline import RunOptions


def emit(report: drifttools.DriftReport, output: OutputFormat, out_file: Path | None) -> None:
    """Write the report where asked; a file appears under its name only when complete."""
    if out_file is not None:
        fmt = OutputFormat.JSON if output is OutputFormat.TABLE else output
        with atomic_output(out_file, "w") as handle:
            handle.writelines(machine_text(report, fmt))
    elif output is OutputFormat.TABLE:
        from drifttools_cli.render import draw_table, stdout_console  # rich: for people only

        draw_table(report, stdout_console())
    else:
        sys.stdout.writelines(machine_text(report, output))


def exit_status(report: drifttools.DriftReport, fail_on: drifttools.Severity | None = None) -> int:
    """diff(1) codes; with ``fail_on``, 1 means "something reached that severity"."""
    if fail_on is not None:
        return EXIT_DRIFT if report.highest_severity.rank >= fail_on.rank else EXIT_OK
    return EXIT_DRIFT if report.has_drift else EXIT_OK


def common_output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--format",
        "output",
        type=click.Choice([f.value for f in OutputFormat]),
        default=OutputFormat.TABLE.value,
        show_default=True,
        help="table for people; json or jsonl for machines; cyclonedx: the packages "
        "added, removed and upgraded, as an SBOM.",
    )(command)
    command = click.option(
        "-o",
        "--output-file",
        "out_file",
        type=OutputPath(),
        help="Write the report here (JSON unless --format jsonl), atomically.",
    )(command)
    return progress_option(command)


#: The commands defined in other modules, as ``module:attribute``: imported when named, so
#: that a ``diff`` loads none of the scan's, the response's or the bundle's code.
ELSEWHERE = {
    "bundle": "drifttools_cli.evidence:bundle",
    "verify": "drifttools_cli.evidence:verify",
    "export": "drifttools_cli.evidence:export",
    "respond": "drifttools_cli.respond:respond_command",
    "fix": "drifttools_cli.respond:fix_command",
    "scan": "drifttools_cli.fleet:scan",
    "summarize": "drifttools_cli.fleet:summarize",
    "show": "drifttools_cli.show:show",
}


class Commands(click.Group):
    """The command group; a command of :data:`ELSEWHERE` is imported the first time it is
    named (``--help`` names them all)."""

    def __init__(self, *args: Any, elsewhere: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.elsewhere = dict(elsewhere)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.elsewhere})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.elsewhere:
            module, attribute = self.elsewhere[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command) and command.name == cmd_name
            self.add_command(command)
            del self.elsewhere[cmd_name]
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=Commands,
    elsewhere=ELSEWHERE,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(drifttools.__version__, prog_name="drifttools")
def cli() -> None:
    """Container drift forensics: what changed in a container compared with its image."""


@cli.command()
@click.argument("container", required=False)
@click.option(
    "--image",
    "image",
    type=InputPath(),
    help="Offline: the image, a `docker save` tar or an OCI layout directory.",
)
@click.option(
    "--rootfs",
    "rootfs",
    type=InputPath(),
    help="Offline: the container's filesystem, a directory or a `docker export` tar.",
)
@click.option("--upper", is_flag=True, help="Offline: --rootfs is an overlay upper dir.")
@click.option("--ref", help="Offline: which image of an archive that holds several (its tag).")
@click.option("--platform", help="Offline: platform of a multi-platform image (linux/arm64).")
@run_options
@engine_options()
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
    options: RunOptions,
    engines: Engines,
    fail_on: str | None,
    output: str,
    out_file: Path | None,
    progress: bool,
) -> None:
    """What drifted in CONTAINER (live, from the host) or in an acquired filesystem
    (--image and --rootfs). Exit 0 no drift, 1 drift, 2 trouble; with --fail-on LEVEL,
    1 only when something reaches LEVEL (0 otherwise, drift or not)."""
    checkpoint = container is not None and checkpoint_path(container) is not None
    offline = image is not None or rootfs is not None
    if checkpoint and (image is None or rootfs is not None):
        raise click.UsageError("a checkpoint:// archive is diffed against --image (no --rootfs)")
    if not checkpoint and (
        offline == (container is not None) or (offline and (image is None or rootfs is None))
    ):
        raise click.UsageError("give a CONTAINER, or both --image and --rootfs")
    stages = _stages(options)
    with troubles(), progress_bar(progress) as update:
        if checkpoint:
            assert container is not None and image is not None
            report = drifttools.diff_checkpoint(container, image=image, **stages, progress=update)
        elif container is not None:
            runtime = engines.runtime_for(container)
            report = drifttools.diff(
                container,
                runtime=runtime,
                acquisition=options.acquisition,
                **stages,
                progress=update,
            )
        else:
            assert image is not None and rootfs is not None
            report = drifttools.diff_offline(
                image=image,
                rootfs=rootfs,
                upper=upper,
                ref=ref,
                platform=platform,
                acquisition=options.acquisition,
                **stages,
                progress=update,
            )
        emit(report, OutputFormat(output), out_file)
    warn_rules(report)
    threshold = drifttools.Severity(fail_on) if fail_on else None
    sys.exit(exit_status(report, threshold))


def warn_rules(report: drifttools.DriftReport) -> None:
    """One line per YARA rule set (rules compiled, rejected, time) and per rule skipped."""
    yara = (report.classification or {}).get("yara") or {}
    for ruleset in yara.get("sets", []):
        if ruleset["origin"] == "bundled" and not ruleset["rejected"]:
            continue
        compiled = (
            "compiled beforehand"
            if ruleset["precompiled"]
            else (f"{ruleset['compiled']} rules compiled, {ruleset['rejected']} rejected")
        )
        click.echo(
            f"drifttools: YARA rules {printable(ruleset['origin'])}: {compiled}, "
            f"{ruleset['seconds']:.1f} s",
            err=True,
        )
    for problem in yara.get("problems", []):
        click.echo(
            f"drifttools: warning: YARA rule {printable(problem['rule'])} "
            f"({printable(problem['origin'])}) skipped: {printable(problem['message'])}",
            err=True,
        )


def _stages(options: RunOptions) -> dict[str, Any]:
    """The options every diff takes past the acquisition, as keyword arguments."""
    return {
        "baseline": options.baseline,
        "classification": options.classification,
        "exclusions": options.exclusions,
    }


@cli.command()
@click.argument("container")
@click.option("--env-values", is_flag=True, help="Include environment values (can be secrets).")
@engine_options()
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def ps(container: str, env_values: bool, engines: Engines, output: str) -> None:
    """The processes of CONTAINER, read from the host's /proc, tagged against the image."""
    with troubles():
        records = drifttools.processes(
            container,
            runtime=engines.runtime_for(container),
            acquisition=drifttools.AcquisitionOptions(env_values=env_values),
        )
    if output == "json":
        click.echo(json.dumps([asdict(r) for r in records], indent=2, ensure_ascii=False))
    else:
        from drifttools_cli.render import draw_processes, stdout_console

        draw_processes(records, stdout_console())


@cli.command(name="ls")
@click.option(
    "--runtime",
    "runtime_name",
    type=click.Choice(ENGINES),
    help=f"Which engine to list (default: {DEFAULT_RUNTIME}; containerd with --address or "
    "--namespace).",
)
@engine_options()
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def list_containers(runtime_name: str | None, engines: Engines, output: str) -> None:
    """Running containers (for containerd: all namespaces, or --namespace), each with a quick
    count of the paths it changed (its upper dir)."""
    with troubles():
        runtime = engines.runtime_for(None, runtime_name)
        rows = drifttools.running_containers(runtime)
    if output == "json":
        click.echo(json.dumps([asdict(row) for row in rows], indent=2, ensure_ascii=False))
    else:
        from drifttools_cli.render import draw_containers, stdout_console

        draw_containers(rows, stdout_console())


def main() -> None:
    """Console entry point; usage errors exit 2 as well, like diff(1)."""
    try:
        cli.main(prog_name="drifttools", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("drifttools: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
