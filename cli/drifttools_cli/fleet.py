"""``drifttools scan`` (every container of this node) and ``drifttools summarize`` (many
nodes' scans in one view): thin faces on :func:`drifttools.scan` and
:func:`drifttools.summarize`."""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

import drifttools
from drifttools.acquisition.runtime import ENGINES
from drifttools.fleet.records import ContainerResult, ScannedContainer, Summary
from drifttools.scan import DEFAULT_JOBS, BundlePolicy, node_name
from drifttools_cli.common import (
    EXIT_DRIFT,
    EXIT_OK,
    EXIT_TROUBLE,
    Engines,
    Trouble,
    engine_options,
    progress_bar,
    progress_option,
    run_options,
    troubles,
)
from drifttools_cli.fleet_render import draw_summary, stdout_console

if TYPE_CHECKING:
    from drifttools.pipeline import RunOptions

EXIT_INTERRUPTED = 130
_LEVELS = [level.value for level in drifttools.Severity]
_FORMATS = ("table", "json", "jsonl")


def scan_status(summary: Summary, fail_on: drifttools.Severity | None) -> int:
    """diff(1) over the node: 2 when nothing could be scanned, else 1 when anything drifted
    (with ``fail_on``: when anything reached it), else 0."""
    reached = any(e.error is None for node in summary.nodes for e in node.engines)
    selected = sum(node.selected for node in summary.nodes)
    if not reached or (selected and not summary.scanned):
        return EXIT_TROUBLE
    if fail_on is not None:
        return EXIT_DRIFT if summary.highest_severity.rank >= fail_on.rank else EXIT_OK
    return EXIT_DRIFT if summary.drifted else EXIT_OK


def emit_summary(summary: Summary, results: list[ContainerResult], output: str) -> None:
    """The results on stdout: a table, one JSON document, or JSON Lines."""
    if output == "table":
        draw_summary(summary, stdout_console())
    elif output == "json":
        document = {
            "schema": summary.to_record()["schema"],
            "containers": [r.to_record() for r in results],
            "summary": summary.to_record(),
        }
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(summary.to_record(), ensure_ascii=False) + "\n")


@click.command()
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    type=click.Choice(ENGINES),
    help="Only this engine (repeatable; default: every engine that answers).",
)
@engine_options(several_namespaces=True)
@click.option("--label", "labels", multiple=True, help="Only containers with label KEY[=VALUE].")
@click.option("--image", "images", multiple=True, help="Only containers of images matching GLOB.")
@click.option("--name", "names", multiple=True, help="Only containers whose name matches GLOB.")
@click.option("--all", "stopped", is_flag=True, help="Stopped containers too (running only).")
@click.option(
    "--jobs",
    "-j",
    envvar="DRIFTTOOLS_JOBS",
    type=click.IntRange(1, 64),
    default=DEFAULT_JOBS,
    show_default=True,
    help="Containers read at once ($DRIFTTOOLS_JOBS).",
)
@click.option("--node", help="This node's name in the records (default: $NODE_NAME or hostname).")
@run_options
@click.option(
    "--fail-on",
    type=click.Choice(_LEVELS),
    help="Exit 1 only when a container reaches this severity (CI gate).",
)
@click.option("--format", "output", type=click.Choice(_FORMATS), default="table", show_default=True)
@click.option(
    "--output",
    "output_url",
    help="Also write the JSON Lines here: a path or any fsspec URL (s3://...), with {node} "
    "and {container} placeholders ({container}: one object per container).",
)
@click.option(
    "--bundle-dir",
    help="Seal an evidence bundle for every container at or above --bundle-if, here "
    "(a path or an fsspec URL; {node} allowed).",
)
@click.option(
    "--bundle-if",
    type=click.Choice(_LEVELS),
    default="high",
    show_default=True,
    help="The severity a container's report must reach to be bundled.",
)
@progress_option
def scan(
    runtimes: tuple[str, ...],
    engines: Engines,
    labels: tuple[str, ...],
    images: tuple[str, ...],
    names: tuple[str, ...],
    stopped: bool,
    jobs: int,
    node: str | None,
    options: RunOptions,
    fail_on: str | None,
    output: str,
    output_url: str | None,
    bundle_dir: str | None,
    bundle_if: str,
    progress: bool,
) -> None:
    """Every container of this node (Docker and containerd, all namespaces), each against
    its image, replicas compared. Exit 0 nothing drifted, 1 something did (or reached
    --fail-on), 2 nothing could be scanned."""
    node = node or node_name()
    with troubles():
        from drifttools.fleet.store import ObjectStore

        store = ObjectStore(output_url, node) if output_url else None
        if store is not None:
            store.check()  # before any container is read
        select = drifttools.ScanFilter(runtimes, engines.namespaces, labels, images, names, stopped)
        results: list[ContainerResult] = []
        with (
            _bundles(bundle_dir, bundle_if, node) as policy,
            progress_bar(progress) as update,
            _first_interrupt() as stop,
        ):
            for item in drifttools.scan(
                endpoints=engines.endpoints,
                select=select,
                options=options,
                jobs=jobs,
                bundles=policy,
                node=node,
                progress=update,
                stop=stop,
            ):
                if isinstance(item, ContainerResult):
                    results.append(item)
                    if output == "jsonl":
                        sys.stdout.write(json.dumps(item.to_record(), ensure_ascii=False) + "\n")
                        sys.stdout.flush()
                    if store is not None and store.per_container:
                        store.write_lines(store.url(item.container.key), [_line(item)])
                else:
                    summary = item
        if store is not None:
            lines = (
                [_line(summary)] if store.per_container else [*map(_line, results), _line(summary)]
            )
            store.write_lines(store.url(), lines)
    emit_summary(summary, results, output)
    if summary.interrupted:
        click.echo(
            f"drifttools: interrupted: {summary.scanned + summary.failed} of "
            f"{sum(n.selected for n in summary.nodes)} containers done",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(scan_status(summary, drifttools.Severity(fail_on) if fail_on else None))


@contextmanager
def _first_interrupt() -> Iterator[threading.Event]:
    """An event the first Ctrl-C sets (the scan then stops cleanly); a second one
    interrupts at once."""
    stop = threading.Event()

    def interrupted(number: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("drifttools: stopping: finishing the containers being read", err=True)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _line(item: ContainerResult | Summary) -> str:
    return json.dumps(item.to_record(), ensure_ascii=False)


@contextmanager
def _bundles(where: str | None, level: str, node: str) -> Iterator[BundlePolicy | None]:
    """The bundle policy of ``--bundle-dir``: a local directory as is; a URL through fsspec
    (each bundle sealed in a local staging directory, then sent, then removed there)."""
    threshold = drifttools.Severity(level)
    if where is None:
        yield None
        return
    if "://" not in where and "{" not in where:
        yield BundlePolicy(Path(where), threshold)
        return
    from drifttools.fleet.store import ObjectStore

    store = ObjectStore(where.rstrip("/") + "/{container}.tar", node)
    store.check()
    with tempfile.TemporaryDirectory(prefix="drifttools-bundles-") as staging:

        def deliver(sealed: Path, container: ScannedContainer) -> str:
            digest = sealed.with_name(sealed.name + ".sha256")
            url = store.url(container.key)
            store.put_file(sealed, url)
            store.put_file(digest, url + ".sha256")  # after it, as beside a local bundle
            sealed.unlink()
            digest.unlink()
            return url

        yield BundlePolicy(Path(staging), threshold, deliver=deliver)


@click.command()
@click.argument("urls", nargs=-1, required=True)
@click.option("--format", "output", type=click.Choice(_FORMATS), default="table", show_default=True)
@click.option("--fail-on", type=click.Choice(_LEVELS), help="Exit 1 only at this severity.")
def summarize(urls: tuple[str, ...], output: str, fail_on: str | None) -> None:
    """One view of many nodes' scans: the JSON Lines `scan --output` wrote, at URL... (paths,
    fsspec URLs, globs). Exit status as `scan`'s."""
    with troubles():
        summary = drifttools.summarize(urls)
    if not summary.nodes and not summary.rows:
        raise Trouble("no scan records in " + " ".join(urls))
    if output == "json":
        click.echo(json.dumps(summary.to_record(), ensure_ascii=False, indent=2))
    elif output == "jsonl":
        click.echo(json.dumps(summary.to_record(), ensure_ascii=False))
    else:
        draw_summary(summary, stdout_console())
    sys.exit(scan_status(summary, drifttools.Severity(fail_on) if fail_on else None))
