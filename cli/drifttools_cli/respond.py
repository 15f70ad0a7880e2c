"""``drifttools respond``: plan (the default) or, with --yes, run the response cycle.

Exit status: 0 the plan was printed or every step held; 1 a step failed (what failed on
stderr, every step in the action log); 2 trouble (refused, no such container, bad input).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from drifttools.fix import fix
from drifttools.options import BundleOptions, ResponseOptions
from drifttools.respond import Response, release, respond
from drifttools.response.falco import Dispatcher, load_policy, parse_alert
from drifttools.response.webhook import SECRET_HEADER, make_server
from drifttools.text import printable
from drifttools_cli.common import (
    EXIT_DRIFT,
    EXIT_OK,
    Engines,
    Trouble,
    engine_options,
    progress_bar,
    progress_option,
    run_options,
    troubles,
)

if TYPE_CHECKING:
    from drifttools.pipeline import RunOptions

dockerfile_option = click.option(
    "--dockerfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The image's Dockerfile, to write the fix's patch against.",
)


def draw_response(response: Response) -> None:
    """The plan, or each step's outcome, one line each, for people."""
    info = response.container
    name = printable(f"{info.runtime} {info.name} ({info.id[:12]})")
    if not response.executed:
        click.echo(f"plan for {name} (nothing is changed without --yes):")
        for number, step in enumerate(response.plan, 1):
            click.echo(f"  {number}. {step.action}: {printable(step.how)}")
            click.echo(f"     undo: {printable(step.undo)}")
            for note in step.notes:
                click.echo(f"     note: {printable(note)}")
        return
    for outcome in response.outcomes:
        state = "done" if outcome.ok else "FAILED"
        click.echo(f"{outcome.step.action}: {state}: {printable(outcome.step.how)}")
        if outcome.error:
            click.echo(
                f"drifttools: respond: {outcome.step.action}: {printable(outcome.error)}", err=True
            )
    if response.bundle is not None:
        click.echo(f"sha256:{response.bundle.sha256}  {printable(str(response.bundle.path))}")


@click.command(name="respond")
@click.argument("target", required=False)
@click.option(
    "--from-falco",
    "alerts",
    type=click.File("r"),
    help="Respond to Falco JSON alerts, one a line (- for stdin), as --policy says.",
)
@click.option(
    "--listen",
    help="Respond to Falcosidekick's webhook posts on HOST:PORT, as --policy says.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --from-falco / --listen: the response policy (YAML).",
)
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"With --listen: the shared secret of the {SECRET_HEADER} header "
    "(default: $DRIFTTOOLS_LISTEN_SECRET).",
)
@click.option("--isolate", is_flag=True, help="Drop all but loopback in its network namespace.")
@click.option("--terminate", is_flag=True, help="Kill it through the runtime (record kept).")
@click.option("--remove", is_flag=True, help="With --terminate: remove the container record too.")
@click.option(
    "--fix",
    "fix_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write what stops the drift from recurring here (Dockerfile patch, securityContext).",
)
@dockerfile_option
@click.option(
    "--bundle",
    "bundle_path",
    type=click.Path(path_type=Path),
    help="Where the evidence bundle goes (default: <name>-<UTC time>.bundle.tar here).",
)
@click.option("--no-bundle", is_flag=True, help="Do not preserve first (explicitly).")
@click.option("--force", is_flag=True, help="Go on when preservation failed.")
@click.option("--release", "undo", is_flag=True, help="Undo isolate and freeze.")
@click.option("--yes", is_flag=True, help="Do it (without: print the plan, change nothing).")
@click.option("--operator", help="Who responds (recorded; default: the user running).")
@click.option("--case-id", help="The case this response belongs to (recorded).")
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sign the bundle's manifest with this Ed25519 private key (PEM).",
)
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@run_options
@engine_options()
@progress_option
def respond_command(
    target: str | None,
    alerts: TextIO | None,
    listen: str | None,
    policy_file: Path | None,
    secret_file: Path | None,
    isolate: bool,
    terminate: bool,
    remove: bool,
    fix_dir: Path | None,
    dockerfile: Path | None,
    bundle_path: Path | None,
    no_bundle: bool,
    force: bool,
    undo: bool,
    yes: bool,
    operator: str | None,
    case_id: str | None,
    sign_key: Path | None,
    output: str,
    options: RunOptions,
    engines: Engines,
    progress: bool,
) -> None:
    """Respond to TARGET: preserve (a sealed bundle) → --isolate → --freeze → --terminate →
    --fix DIR, each step in the bundle's action log. Prints the plan unless --yes.
    (--freeze also pauses the container while it is read.) With --from-falco or --listen,
    Falco's alerts pick the containers and --policy the actions."""
    if alerts is not None or listen is not None:
        if target is not None or policy_file is None or (alerts and listen):
            raise click.UsageError("--from-falco or --listen, with --policy and no TARGET")
        with troubles():
            policy = load_policy(policy_file)
            dispatcher = Dispatcher(policy, engines.runtime_for(None, policy.runtime), respond)
            if alerts is not None:
                _from_falco(alerts, dispatcher)
            else:
                assert listen is not None
                _listen(listen, dispatcher, _secret(secret_file))
        return
    if target is None:
        raise click.UsageError("give a TARGET (or --from-falco / --listen)")
    if remove and not terminate:
        raise click.UsageError("--remove goes with --terminate")
    if dockerfile is not None and fix_dir is None:
        raise click.UsageError("--dockerfile goes with --fix")
    request = ResponseOptions(
        isolate=isolate,
        freeze=options.acquisition.freeze,
        terminate=terminate,
        remove=remove,
        fix=fix_dir,
        dockerfile=dockerfile,
        preserve=not no_bundle,
        force=force,
        operator=operator,
    )
    wanted = (isolate, request.freeze, terminate, fix_dir is not None)
    if undo and any(wanted):
        raise click.UsageError("--release undoes a response: give it alone")
    if not undo and not any(wanted) and no_bundle:
        raise click.UsageError("nothing to do: no action and --no-bundle")
    evidence = BundleOptions(operator=operator, case_id=case_id, sign_key=sign_key)
    with troubles(), progress_bar(progress) as update:
        runtime = engines.runtime_for(target)
        if undo:
            response = release(target, yes=yes, runtime=runtime, options=request)
        else:
            response = respond(
                target,
                options=request,
                yes=yes,
                bundle=bundle_path,
                runtime=runtime,
                acquisition=options.acquisition,
                baseline=options.baseline,
                classification=options.classification,
                exclusions=options.exclusions,
                evidence=evidence,
                progress=update,
            )
    if output == "json":
        click.echo(json.dumps(response.to_dict(), indent=2, ensure_ascii=False))
    else:
        draw_response(response)
    sys.exit(EXIT_OK if response.ok else EXIT_DRIFT)


def _record(decision: dict[str, Any]) -> None:
    click.echo(json.dumps(decision, ensure_ascii=False))


def _from_falco(alerts: TextIO, dispatcher: Dispatcher) -> None:
    """One decision a line on stdout; a line that is not an alert is recorded and skipped."""
    for number, line in enumerate(alerts, 1):
        if not line.strip():
            continue
        try:
            alert = parse_alert(json.loads(line))
        except ValueError as exc:
            _record({"line": number, "decision": "skipped", "reason": f"not a Falco alert: {exc}"})
            continue
        _record(dispatcher.handle(alert))


def _secret(path: Path | None) -> str:
    secret = path.read_text().strip() if path else os.environ.get("DRIFTTOOLS_LISTEN_SECRET", "")
    if not secret:
        raise Trouble("--listen needs a shared secret: --secret-file or $DRIFTTOOLS_LISTEN_SECRET")
    return secret


def _listen(address: str, dispatcher: Dispatcher, secret: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise click.UsageError(f"--listen HOST:PORT, not {address!r}")
    server = make_server(host.strip("[]"), int(port), dispatcher, secret, record=_record)
    bound = server.server_address
    click.echo(f"drifttools: listening on http://{bound[0]}:{bound[1]}/", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


@click.command(name="fix")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output-dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the Dockerfile patch, pod.yaml, allowlist.txt and SUMMARY.md go.",
)
@dockerfile_option
def fix_command(source: Path, directory: Path, dockerfile: Path | None) -> None:
    """From SOURCE (a report JSON or a bundle), write what stops its drift from recurring."""
    with troubles():
        result = fix(source, directory, dockerfile=dockerfile)
    for name, digest in result.files.items():
        click.echo(f"sha256:{digest}  {printable(str(directory / name))}")
