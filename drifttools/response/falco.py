"""Responses triggered by Falco: its JSON alerts, a policy, one response per container per
window.

An alert (Falco's ``json_output``, one a line; Falcosidekick posts the same object) names
the container in ``output_fields``: ``container.id`` (``host`` for a host process),
``k8s.ns.name``, ``k8s.pod.name``, ``proc.exepath``. The policy (YAML) maps rule names,
a minimum priority and tags to actions, dry-run unless a rule says otherwise::

    window: 300                 # seconds: one response per container per window
    bundles: /var/lib/drifttools/responses
    runtime: docker             # or containerd (container ids are looked up there)
    responses:
      - rules: ["Drop and execute new binary in container"]
        actions: [isolate, freeze]
        dry_run: false
      - priority: critical      # this priority or above
        tags: [mitre_execution] # any of these tags
        actions: [isolate]
        fix: true               # and write the fix beside the bundle (<bundle>.fix/)

The first response that matches wins. Alerts for host processes, for containers the
runtime does not know, or that no response matches are recorded and skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drifttools.acquisition.runtime import Runtime
from drifttools.errors import ContainerNotFound, DriftError, ResponseInputError
from drifttools.evidence.report_read import ns_from_rfc3339
from drifttools.options import ResponseOptions
from drifttools.response.action import ACTIONS

#: Falco's priorities, lowest first.
PRIORITIES = (
    "debug", "informational", "notice", "warning", "error", "critical", "alert", "emergency",
)  # fmt: skip
_ALIASES = {"info": "informational", "warn": "warning", "crit": "critical", "emerg": "emergency"}


def _priority(text: Any, where: str) -> str:
    name = str(text).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in PRIORITIES:
        raise ResponseInputError(
            f"{where}: unknown priority {text!r} (known: {', '.join(PRIORITIES)})"
        )
    return name


@dataclass(frozen=True)
class Alert:
    """The fields of a Falco alert a response needs, and the alert itself (recorded)."""

    rule: str
    priority: str
    time: str
    tags: frozenset[str]
    container_id: str | None  # None: no container field; "host": a host process
    pod: tuple[str, str] | None  # (namespace, pod)
    exepath: str | None
    raw: Mapping[str, Any]

    @property
    def time_ns(self) -> int:
        """When Falco saw it (RFC 3339 ``time``); when it arrived, if that is not readable."""
        try:
            return ns_from_rfc3339(self.time) or time.time_ns()
        except ValueError:
            return time.time_ns()


def parse_alert(data: Any) -> Alert:
    """An alert from Falco's JSON output (a decoded object)."""
    if not isinstance(data, dict) or not isinstance(data.get("rule"), str):
        raise ResponseInputError("not a Falco alert: no rule")
    fields = data.get("output_fields") or {}
    if not isinstance(fields, dict):
        raise ResponseInputError("not a Falco alert: output_fields is not an object")
    container = fields.get("container.id")
    namespace, pod = fields.get("k8s.ns.name"), fields.get("k8s.pod.name")
    return Alert(
        rule=data["rule"],
        priority=_priority(data.get("priority", "debug"), "alert"),
        time=str(data.get("time", "")),
        tags=frozenset(str(tag) for tag in data.get("tags") or ()),
        container_id=str(container) if container else None,
        pod=(str(namespace), str(pod)) if namespace and pod else None,
        exepath=fields.get("proc.exepath"),
        raw=data,
    )


@dataclass(frozen=True)
class PolicyResponse:
    """One entry of a policy: which alerts it takes, and what it does."""

    actions: tuple[str, ...]
    rules: frozenset[str] = frozenset()
    priority: str | None = None
    tags: frozenset[str] = frozenset()
    dry_run: bool = True
    fix: bool = False  # write the fix at the source beside the bundle

    def matches(self, alert: Alert) -> bool:
        if self.rules and alert.rule not in self.rules:
            return False
        if self.tags and not self.tags & alert.tags:
            return False
        rank = PRIORITIES.index
        return self.priority is None or rank(alert.priority) >= rank(self.priority)


@dataclass(frozen=True)
class Policy:
    """A response policy: its entries, the window, where bundles go, which runtime."""

    responses: tuple[PolicyResponse, ...]
    window: float = 300.0
    bundles: Path = Path(".")
    runtime: str = "docker"


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResponseInputError(f"{where}: a string or a list of strings")
    return tuple(value)


def policy_from_dict(data: Any, where: str = "policy") -> Policy:
    """A policy from its decoded YAML (see the module's example)."""
    if not isinstance(data, dict) or not isinstance(data.get("responses"), list):
        raise ResponseInputError(f"{where}: a mapping with a list of responses")
    entries = []
    for number, entry in enumerate(data["responses"], 1):
        at = f"{where}: responses[{number}]"
        if not isinstance(entry, dict):
            raise ResponseInputError(f"{at}: a mapping")
        unknown = set(entry) - {"rules", "priority", "tags", "actions", "dry_run", "fix"}
        if unknown:
            raise ResponseInputError(f"{at}: unknown keys {sorted(unknown)}")
        actions = _strings(entry.get("actions"), f"{at}: actions")
        for action in actions:
            if action not in ACTIONS:
                raise ResponseInputError(
                    f"{at}: unknown action {action!r} (known: {', '.join(ACTIONS)})"
                )
        priority = entry.get("priority")
        entries.append(
            PolicyResponse(
                actions=actions,
                rules=frozenset(_strings(entry.get("rules"), f"{at}: rules")),
                priority=_priority(priority, at) if priority is not None else None,
                tags=frozenset(_strings(entry.get("tags"), f"{at}: tags")),
                dry_run=bool(entry.get("dry_run", True)),
                fix=bool(entry.get("fix", False)),
            )
        )
    runtime = str(data.get("runtime", "docker"))
    if runtime not in ("docker", "containerd"):
        raise ResponseInputError(f"{where}: runtime is docker or containerd, not {runtime!r}")
    window = data.get("window", 300)
    if not isinstance(window, int | float) or window < 0:
        raise ResponseInputError(f"{where}: window is a number of seconds")
    return Policy(tuple(entries), float(window), Path(str(data.get("bundles", "."))), runtime)


def load_policy(path: str | Path) -> Policy:
    """A policy file (YAML)."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the respond extra
        raise ResponseInputError(
            "reading a policy needs PyYAML: install drifttools[respond]"
        ) from exc
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ResponseInputError(f"{path}: not YAML: {exc}") from exc
    return policy_from_dict(data, str(path))


#: What a dispatcher calls to respond: :func:`drifttools.respond` by default.
Respond = Callable[..., Any]


@dataclass
class Dispatcher:
    """Turns alerts into at most one response per container per window."""

    policy: Policy
    runtime: Runtime
    respond: Respond
    _last: dict[str, int] = field(default_factory=dict)  # container id -> alert time (ns)

    def reference(self, alert: Alert) -> str | None:
        """The container an alert names (by id; a pod's first container when only the pod
        is named), or None for a host process."""
        if alert.container_id == "host":
            return None
        if alert.container_id is None:
            return f"k8s://{alert.pod[0]}/{alert.pod[1]}" if alert.pod else None
        if self.policy.runtime == "containerd":
            return f"containerd://{alert.container_id}"
        return alert.container_id

    def handle(self, alert: Alert) -> dict[str, Any]:
        """The decision for one alert (responded, planned, skipped or failed), recorded."""
        record: dict[str, Any] = {
            "rule": alert.rule,
            "priority": alert.priority,
            "time": alert.time,
            "container": alert.container_id,
            "pod": "/".join(alert.pod) if alert.pod else None,
        }
        reference = self.reference(alert)
        if reference is None:
            return {**record, "decision": "skipped", "reason": "a host process, not a container"}
        entry = next((e for e in self.policy.responses if e.matches(alert)), None)
        if entry is None:
            return {**record, "decision": "skipped", "reason": "no response of the policy matches"}
        try:
            info = self.runtime.resolve(reference)
        except ContainerNotFound:
            return {**record, "decision": "skipped", "reason": "unknown container"}
        except DriftError as exc:  # the engine is down: this alert fails, the next may not
            return {**record, "decision": "failed", "reason": str(exc)}
        last = self._last.get(info.id)
        if last is not None and alert.time_ns - last < self.policy.window * 1e9:
            return {**record, "decision": "skipped", "reason": "already responded in this window"}
        self._last[info.id] = alert.time_ns
        bundle = self.policy.bundles / f"{info.id[:12]}-{alert.time_ns}.bundle.tar"
        options = ResponseOptions(
            isolate="isolate" in entry.actions,
            freeze="freeze" in entry.actions,
            terminate="terminate" in entry.actions,
            fix=bundle.with_name(bundle.name + ".fix") if entry.fix else None,
        )
        try:
            response = self.respond(
                info.id,
                options=options,
                yes=not entry.dry_run,
                bundle=bundle,
                runtime=self.runtime,
                trigger=dict(alert.raw),
            )
        except DriftError as exc:
            return {**record, "decision": "failed", "reason": str(exc)}
        decision = "planned" if entry.dry_run else "responded" if response.ok else "failed"
        return {**record, "decision": decision, "response": response.to_dict()}
