"""What every command shares: exit codes, one-line errors, the progress bar, and the options
of a run's stages, each group turned into the library's own options object."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

import drifttools
from drifttools.acquisition.runtime import (
    DEFAULT_RUNTIME,
    NAMESPACED_RUNTIME,
    Runtime,
    runtime_for,
    runtime_name,
    split_reference,
)
from drifttools.analysis.classifiers.yara_externals import parse_define
from drifttools.analysis.diff import DEFAULT_EXCLUSIONS
from drifttools.baseline.cache import default_cache_dir
from drifttools.options import METHODS, AcquisitionOptions, BaselineOptions, ClassifyOptions
from drifttools.progress import Progress as ProgressCallback
from drifttools.progress import ProgressEvent, no_progress
from drifttools.text import printable

if TYPE_CHECKING:
    from drifttools.pipeline import RunOptions

EXIT_OK, EXIT_DRIFT, EXIT_TROUBLE = 0, 1, 2

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class Trouble(click.ClickException):
    """One clear line on stderr, exit 2."""

    exit_code = EXIT_TROUBLE

    def show(self, file: Any = None) -> None:
        click.echo(f"drifttools: error: {printable(self.message)}", err=True)


def _option_name(param: click.Parameter | None) -> str:
    if param is None:
        return "path"
    return max(param.opts, key=len) if param.opts else param.human_readable_name


class InputPath(click.Path):
    """A file option that must exist: a missing one is one clear line and exit 2 (not
    click's usage error), the same for every command."""

    def __init__(self, *, dir_okay: bool = True) -> None:
        super().__init__(dir_okay=dir_okay, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(value)
        if not path.exists():
            raise Trouble(f"{_option_name(param)} {value}: not found")
        if not self.dir_okay and path.is_dir():
            raise Trouble(f"{_option_name(param)} {value}: is a directory, not a file")
        return super().convert(value, param, ctx)


class OutputPath(click.Path):
    """Where a command writes: its directory must exist (never created on the host), and
    it must not be a directory unless ``dir_okay``; otherwise one clear line and exit 2."""

    def __init__(self, *, dir_okay: bool = False) -> None:
        super().__init__(dir_okay=dir_okay, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(value)
        parent = path.parent
        if not parent.is_dir():
            raise Trouble(f"{_option_name(param)} {value}: no such directory {parent}")
        if not self.dir_okay and path.is_dir():
            raise Trouble(f"{_option_name(param)} {value}: is a directory, not a file")
        return super().convert(value, param, ctx)


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
    if not enabled:
        yield no_progress
        return
    from rich.console import Console  # rich only where it may draw
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        yield no_progress
        return

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def update(event: ProgressEvent) -> None:
            bar.update(task, description=event.description, completed=event.done, total=event.total)

        yield update


progress_option = click.option(
    "--progress/--no-progress",
    default=os.environ.get("DRIFTTOOLS_PROGRESS", "1") != "0",
    help="Progress bar on stderr (only ever drawn on a terminal).",
)


@dataclass(frozen=True)
class Engines:
    """Where the engines are, from the runtime flags, spelled as ``docker`` and ``ctr`` /
    ``nerdctl`` spell them: ``--host`` ($DOCKER_HOST), ``--address`` ($CONTAINERD_ADDRESS),
    ``--namespace`` ($CONTAINERD_NAMESPACE)."""

    host: str | None
    address: str | None
    namespaces: tuple[str, ...]
    #: the flags given on the command line (not from the environment): they say which
    #: engine a bare reference (``web-1``) is on
    given: frozenset[str] = frozenset()

    @property
    def namespace(self) -> str | None:
        return self.namespaces[0] if self.namespaces else None

    @property
    def endpoints(self) -> dict[str, str | None]:
        """Each engine's address (None: its own default)."""
        return {DEFAULT_RUNTIME: self.host, NAMESPACED_RUNTIME: self.address}

    def runtime_for(self, reference: str | None, runtime: str | None = None) -> Runtime:
        """The runtime of ``reference`` (None and ``runtime``: a listing), at its address.

        A bare reference is Docker's when ``--host`` is on the command line, containerd's
        when ``--address`` is or a namespace is given (flag or environment), else Docker's.
        """
        if runtime is None and (reference is None or split_reference(reference)[0] is None):
            runtime = self._bare_engine()
        name = runtime_name(reference, runtime=runtime, namespace=self.namespace)
        return runtime_for(
            reference, endpoint=self.endpoints.get(name), runtime=name, namespace=self.namespace
        )

    def _bare_engine(self) -> str | None:
        docker, containerd = "host" in self.given, bool(self.given & {"address", "namespaces"})
        if docker and containerd:
            raise Trouble(
                "--host is Docker's, --address and --namespace containerd's: give one engine's "
                "flags, or name the container as containerd://NAMESPACE/ID"
            )
        if docker:
            return DEFAULT_RUNTIME
        return NAMESPACED_RUNTIME if containerd or self.namespaces else None


def engine_options(*, several_namespaces: bool = False) -> Decorator:
    """Give a command the runtime flags, passed as ``engines`` (:class:`Engines`);
    ``several_namespaces``: ``--namespace`` repeatable (a filter, for ``scan``)."""
    namespace_help = (
        "Only containerd's namespace NS (repeatable; $CONTAINERD_NAMESPACE; default: all)."
        if several_namespaces
        else "containerd's namespace for a reference that names none ($CONTAINERD_NAMESPACE; "
        "default: every namespace); a bare CONTAINER given one is containerd's."
    )
    flags = _options(
        click.option(
            "--host",
            "-H",
            envvar="DOCKER_HOST",
            help="Docker Engine endpoint ($DOCKER_HOST; default: its socket).",
        ),
        click.option(
            "--address",
            "-a",
            envvar="CONTAINERD_ADDRESS",
            help="containerd's socket ($CONTAINERD_ADDRESS; default: the well-known sockets)"
            + ("." if several_namespaces else "; a bare CONTAINER given it is containerd's."),
        ),
        click.option(
            "--namespace",
            "-n",
            "namespaces",
            multiple=several_namespaces,
            envvar="CONTAINERD_NAMESPACE",
            help=namespace_help,
        ),
    )

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_engines(**values: Any) -> Any:
            context = click.get_current_context()
            names = ("host", "address", "namespaces")
            given = frozenset(
                n for n in names if context.get_parameter_source(n) is ParameterSource.COMMANDLINE
            )
            host, address, spaces = (values.pop(n) for n in names)
            namespaces = tuple(spaces) if several_namespaces else (spaces,) if spaces else ()
            values["engines"] = Engines(host, address, namespaces, given)
            return command(**values)

        return flags(with_engines)

    return apply


def _options(*decorators: Decorator) -> Decorator:
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


#: How the container is read (``AcquisitionOptions``).
_ACQUISITION = _options(
    click.option(
        "--method",
        type=click.Choice(list(METHODS)),
        default="auto",
        show_default=True,
        help="Live: how to read the container's filesystem.",
    ),
    click.option(
        "--verify-all",
        is_flag=True,
        help="Live: hash every file of the merged view against the image (--method merged).",
    ),
    click.option("--freeze", is_flag=True, help="Live: pause the container while it is read."),
    click.option(
        "--env-values",
        is_flag=True,
        help="Live: include environment values of processes (they can be secrets).",
    ),
    click.option(
        "--sha256-only",
        is_flag=True,
        help="Hash files and executables with SHA-256 alone, not also MD5 and SHA-1 (faster).",
    ),
)

#: Where the image's layers come from (``BaselineOptions``).
_BASELINE = _options(
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Layer cache directory (default: $XDG_CACHE_HOME/drifttools).",
    ),
    click.option("--no-cache", is_flag=True, help="Read and verify every layer again."),
    click.option(
        "--trust-host-layers",
        is_flag=True,
        help="Live: read uncached image layers from the engine's layer dirs, unverified (faster).",
    ),
    click.option(
        "--trust-cache",
        is_flag=True,
        help="Live: take cached layers without re-checking the engine's copy (reported"
        " verified-by-cache; a warm run then costs only the changes).",
    ),
    click.option(
        "--allow-unverified",
        is_flag=True,
        help="Go on when a digest does not match; the report says so.",
    ),
)


def _check_defines(
    context: click.Context, parameter: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    for value in values:
        try:
            parse_define(value)
        except drifttools.RulesError as exc:
            raise click.BadParameter(str(exc)) from exc
    return values


#: How changes are classified (``ClassifyOptions``).
_CLASSIFICATION = _options(
    click.option(
        "--rules",
        "rules",
        multiple=True,
        type=InputPath(),
        help="YARA rules, added to the bundled rules (repeatable): a .yar/.yara file, a "
        "directory (index files and what they include), or compiled rules (yarac, yara-x).",
    ),
    click.option(
        "--yara-define",
        "yara_defines",
        multiple=True,
        metavar="NAME=VALUE",
        callback=_check_defines,
        help="YARA external variable with a fixed value, like yara -d (repeatable).",
    ),
    click.option(
        "--yara-tag",
        "yara_tags",
        multiple=True,
        metavar="TAG",
        help="Keep only matches of YARA rules with this tag, like yara -t (repeatable).",
    ),
    click.option(
        "--yara-identifier",
        "yara_identifiers",
        multiple=True,
        metavar="RULE",
        help="Keep only matches of the YARA rule of this name, like yara -i (repeatable).",
    ),
    click.option(
        "--yara-engine",
        type=click.Choice(["yara-x", "yara-python"]),
        default="yara-x",
        show_default=True,
        help="YARA engine: yara-x (per-scan timeout) or yara-python (libyara).",
    ),
    click.option("--no-yara", is_flag=True, help="Do not scan with YARA."),
    click.option(
        "--allow",
        "allow",
        multiple=True,
        type=InputPath(dir_okay=False),
        help="Allowlist of expected drift: '[IMAGE-GLOB] PATH-GLOB' a line (repeatable).",
    ),
)

_RUN_KEYS = (
    "method",
    "verify_all",
    "freeze",
    "env_values",
    "sha256_only",
    "cache_dir",
    "no_cache",
    "trust_host_layers",
    "trust_cache",
    "allow_unverified",
    "rules",
    "yara_defines",
    "yara_tags",
    "yara_identifiers",
    "yara_engine",
    "no_yara",
    "allow",
)


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` the options of every stage of a run, passed as ``options``."""

    @functools.wraps(command)
    def with_options(**values: Any) -> Any:
        values["options"] = _run_options(**{key: values.pop(key) for key in _RUN_KEYS})
        return command(**values)

    return _options(_ACQUISITION, _BASELINE, _CLASSIFICATION)(with_options)


def _run_options(
    *,
    method: str,
    verify_all: bool,
    freeze: bool,
    env_values: bool,
    sha256_only: bool,
    cache_dir: Path | None,
    no_cache: bool,
    trust_host_layers: bool,
    trust_cache: bool,
    allow_unverified: bool,
    rules: tuple[Path, ...],
    yara_defines: tuple[str, ...],
    yara_tags: tuple[str, ...],
    yara_identifiers: tuple[str, ...],
    yara_engine: str,
    no_yara: bool,
    allow: tuple[Path, ...],
) -> RunOptions:
    acquisition = AcquisitionOptions(
        method="merged" if verify_all else method,
        freeze=freeze,
        env_values=env_values,
        legacy_hashes=not sha256_only,
    )
    baseline = BaselineOptions(
        cache=None if no_cache else drifttools.LayerCache(cache_dir),
        verify=not allow_unverified,
        trust_host_layers=trust_host_layers,
        trust_cache=trust_cache,
    )
    classification = ClassifyOptions(
        rules=rules,
        yara_defines=yara_defines,
        yara_tags=yara_tags,
        yara_identifiers=yara_identifiers,
        yara=not no_yara,
        yara_engine=yara_engine,
        allow=allow,
        cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
    )
    from drifttools.pipeline import RunOptions

    return RunOptions(acquisition, baseline, DEFAULT_EXCLUSIONS, classification)
