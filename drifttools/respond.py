"""``drifttools.respond``: the response cycle for a drifted container, from the host.

Plan first: without ``yes`` the steps are returned (each action, on what, how it is undone)
and nothing changes. With ``yes``, in this order, each step in the bundle's hash-chained
action log (plan, start, end, result, operator):

1. **preserve** (RFC 3227): a sealed evidence bundle, as :func:`drifttools.bundle` makes it;
   if it fails nothing else runs unless ``force``;
2. the actions of :data:`drifttools.response.action.ACTIONS`: isolate, freeze, terminate;
3. **fix** at the source: :func:`drifttools.fix.write_fixes` from the preserved report.

The bundle is sealed after the last step, so ``drifttools verify`` covers the response.
"""

from __future__ import annotations

import functools
import getpass
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drifttools.acquisition.runtime import Runtime
from drifttools.analysis.diff import DEFAULT_EXCLUSIONS
from drifttools.errors import DriftError, ResponseFailed
from drifttools.evidence.bundle import BundleResult, BundleWriter
from drifttools.evidence.bundle.actions import ActionLog, now
from drifttools.fix import FixResult, write_fixes
from drifttools.models import ContainerInfo, Exclusion
from drifttools.options import (
    DEFAULT_ACQUISITION,
    DEFAULT_BASELINE,
    DEFAULT_BUNDLE,
    DEFAULT_CLASSIFICATION,
    DEFAULT_RESPONSE,
    AcquisitionOptions,
    BaselineOptions,
    BundleOptions,
    ClassifyOptions,
    ResponseOptions,
)
from drifttools.pipeline import Hooks, Run, RunOptions, run
from drifttools.progress import Progress, no_progress
from drifttools.response.action import ACTIONS
from drifttools.response.actions import release as release_action
from drifttools.response.model import Outcome, Step, Subject
from drifttools.sources import LiveContainer


@dataclass(frozen=True)
class Response:
    """A response: its plan, and when executed how each step went and where the bundle is."""

    container: ContainerInfo
    plan: tuple[Step, ...]
    executed: bool
    outcomes: tuple[Outcome, ...] = ()
    bundle: BundleResult | None = None
    fix: FixResult | None = None
    log: bytes = b""  # the action log (sealed in the bundle when there is one)

    @property
    def ok(self) -> bool:
        """Every step that ran held."""
        return all(outcome.ok for outcome in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """The response as JSON-ready data."""
        return {
            "container": {
                "runtime": self.container.runtime,
                "id": self.container.id,
                "name": self.container.name,
            },
            "executed": self.executed,
            "ok": self.ok,
            "plan": [step.to_dict() for step in self.plan],
            "outcomes": [outcome.to_dict() for outcome in self.outcomes],
            "bundle": None
            if self.bundle is None
            else {"path": str(self.bundle.path), "sha256": self.bundle.sha256},
            "fix": None if self.fix is None else self.fix.to_dict(),
        }


def operator_of(options: ResponseOptions) -> dict[str, str]:
    """Who responds, and from where: the user (``--operator``, else the login behind sudo)
    and the host."""
    user = options.operator or os.environ.get("SUDO_USER")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # a uid with no name (a bare container)
            user = f"uid {os.getuid()}"
    return {"user": user, "host": os.uname().nodename}


def default_bundle_path(info: ContainerInfo, directory: bool = False) -> Path:
    """``<name>-<UTC time>.bundle[.tar]`` in the working directory."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", info.name or info.id[:12]).strip("._") or "container"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path(f"{name}-{stamp}.bundle" + ("" if directory else ".tar"))


def plan(subject: Subject, options: ResponseOptions, bundle: Path | None) -> tuple[Step, ...]:
    """The steps a response would take, in order (raises ``ResponseRefused`` for one that
    must not be done); nothing is changed."""
    steps = []
    if options.preserve:
        assert bundle is not None
        steps.append(
            Step(
                "preserve",
                subject.label,
                f"sealed evidence bundle at {bundle}: processes and their executables "
                "(memfd and deleted too) first, then mounts and files, hash-chained log",
                "nothing to undo: read only",
            )
        )
    for kind in ACTIONS.values():
        if kind.wanted(options):
            steps.append(kind.plan(subject, options))
    if options.fix is not None:
        steps.append(
            Step(
                "fix",
                subject.label,
                f"write to {options.fix}: a Dockerfile patch, a Kubernetes securityContext "
                "fragment, an allowlist of the expected drift, a summary",
                "delete the files written",
            )
        )
    return tuple(steps)


def respond(
    reference: str,
    *,
    options: ResponseOptions = DEFAULT_RESPONSE,
    yes: bool = False,
    bundle: str | Path | None = None,
    runtime: Runtime | None = None,
    acquisition: AcquisitionOptions = DEFAULT_ACQUISITION,
    baseline: BaselineOptions = DEFAULT_BASELINE,
    classification: ClassifyOptions | None = DEFAULT_CLASSIFICATION,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
    evidence: BundleOptions = DEFAULT_BUNDLE,
    trigger: Mapping[str, Any] | None = None,
    progress: Progress = no_progress,
) -> Response:
    """Plan, and with ``yes`` run, the response to the container ``reference`` names.

    ``options`` says which actions (see :class:`~drifttools.options.ResponseOptions`);
    ``bundle`` where the evidence goes (default: ``<name>-<UTC time>.bundle.tar`` here);
    ``trigger`` (a Falco alert) is recorded in the action log. The other options are
    those of :func:`drifttools.bundle`. Raises
    :class:`~drifttools.errors.ResponseRefused` before anything is changed when a step
    must not be done (isolating a container in the host's network namespace).
    """
    source = LiveContainer.resolve(reference, runtime)
    subject = Subject(source.info, source.runtime)
    output = Path(bundle) if bundle else default_bundle_path(subject.info, evidence.directory)
    steps = plan(subject, options, output if options.preserve else None)
    if not yes:
        return Response(subject.info, steps, executed=False)
    run_options = RunOptions(acquisition, baseline, exclusions, classification)
    operator = operator_of(options)
    if not options.preserve:
        log = ActionLog()
        _log_plan(log, steps, operator, trigger)
        evidence_run = run(source, run_options, progress=progress) if options.fix else None
        outcomes, fixed = _act(subject, steps, options, log, operator, evidence_run)
        return Response(subject.info, steps, True, outcomes, None, fixed, log.data())
    with BundleWriter(output, evidence, reference) as writer:
        _log_plan(writer.log, steps, operator, trigger)
        preserved, evidence_run = _preserve(
            steps[0], source, writer, run_options, progress, operator
        )
        if not preserved.ok and not options.force:
            raise ResponseFailed(
                f"preservation failed, nothing else was done (force goes on): {preserved.error}"
            )
        try:
            outcomes, fixed = _act(subject, steps[1:], options, writer.log, operator, evidence_run)
        except BaseException as exc:  # the evidence is sealed whatever stops the response
            writer.log.add("response interrupted", error=f"{type(exc).__name__}: {exc}")
            if evidence_run is not None:
                writer.seal()
            raise
        sealed = writer.seal() if evidence_run is not None else None
        logged = writer.log.data()
    return Response(subject.info, steps, True, (preserved, *outcomes), sealed, fixed, logged)


def release(
    reference: str,
    *,
    yes: bool = False,
    runtime: Runtime | None = None,
    options: ResponseOptions = DEFAULT_RESPONSE,
) -> Response:
    """Plan, and with ``yes`` undo, a response's isolation and freeze (the container keeps
    running). The action log is returned (no bundle is made)."""
    source = LiveContainer.resolve(reference, runtime)
    subject = Subject(source.info, source.runtime)
    steps = (release_action.plan(subject, options),)
    if not yes:
        return Response(subject.info, steps, executed=False)
    log, operator = ActionLog(), operator_of(options)
    _log_plan(log, steps, operator, None)
    outcome = _step(log, steps[0], operator, lambda: release_action.apply(subject, options))
    return Response(subject.info, steps, True, (outcome,), log=log.data())


def _log_plan(
    log: ActionLog,
    steps: Sequence[Step],
    operator: Mapping[str, str],
    trigger: Mapping[str, Any] | None,
) -> None:
    detail: dict[str, Any] = {"operator": dict(operator), "steps": [s.to_dict() for s in steps]}
    if trigger is not None:
        detail["trigger"] = dict(trigger)
    log.add("response planned", **detail)


def _step(
    log: ActionLog,
    step: Step,
    operator: Mapping[str, str],
    work: Callable[[], Mapping[str, Any]],
) -> Outcome:
    """Run one step between its ``started`` and ``ended`` log entries; a failure is its
    outcome, not an exception (the steps after it still run)."""
    log.add("response step started", step=step.action, target=step.target, operator=dict(operator))
    started = now()
    try:
        result, error = dict(work()), None
    except (DriftError, OSError) as exc:
        result, error = {}, str(exc)
    outcome = Outcome(step, started, now(), error is None, result, error)
    log.add("response step ended", step=step.action, ok=outcome.ok, result=result, error=error)
    return outcome


def _preserve(
    step: Step,
    source: LiveContainer,
    writer: BundleWriter,
    options: RunOptions,
    progress: Progress,
    operator: Mapping[str, str],
) -> tuple[Outcome, Run | None]:
    kept: list[Run] = []

    def work() -> Mapping[str, Any]:
        hooks = Hooks(after_processes=writer.after_processes, after_snapshot=writer.after_snapshot)
        done = run(source, options, progress=writer.observe(progress), hooks=hooks)
        writer.collect(*done, options.acquisition, options.baseline.verify)
        kept.append(done)
        return {"bundle": str(writer.output), "changes": len(done.report.changes)}

    outcome = _step(writer.log, step, operator, work)
    return outcome, kept[0] if kept else None


def _act(
    subject: Subject,
    steps: Sequence[Step],
    options: ResponseOptions,
    log: ActionLog,
    operator: Mapping[str, str],
    evidence: Run | None,
) -> tuple[tuple[Outcome, ...], FixResult | None]:
    outcomes = []
    fixed: list[FixResult] = []
    for step in steps:
        if step.action == "fix":
            assert options.fix is not None

            def work() -> Mapping[str, Any]:
                if evidence is None:
                    raise ResponseFailed("no report to fix from: preservation failed")
                result = write_fixes(
                    evidence.report,
                    options.fix,  # type: ignore[arg-type]
                    image_config=evidence.baseline.image.config,
                    dockerfile=options.dockerfile,
                )
                fixed.append(result)
                return result.to_dict()

            outcomes.append(_step(log, step, operator, work))
        else:
            apply = ACTIONS[step.action].apply
            outcomes.append(_step(log, step, operator, functools.partial(apply, subject, options)))
    return tuple(outcomes), fixed[0] if fixed else None
