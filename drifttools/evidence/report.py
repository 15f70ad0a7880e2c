"""Report v1: the JSON contract (``drifttools.report/v1``) and its schema.

Field meanings are documented in ``docs/report-v1.md``; the JSON Schema ships
in the package (:func:`report_schema`) and every report the tests produce is
validated against it.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson

from drifttools.clock import rfc3339_ns
from drifttools.version import __version__

if TYPE_CHECKING:  # the model calls these renderers: it is imported for its types only
    from drifttools.models import Change, DriftReport, FileFacts, Finding, ImageRef, Layer, Target

SCHEMA_ID = "drifttools.report/v1"


def facts_to_dict(facts: FileFacts) -> dict[str, Any]:
    xattrs = facts.xattrs
    return {
        "type": facts.kind,
        "mode": f"{facts.mode:04o}",
        "uid": facts.uid,
        "gid": facts.gid,
        "size": facts.size,
        "mtime": rfc3339_ns(facts.mtime_ns),
        "sha256": facts.sha256,
        "md5": facts.md5,
        "sha1": facts.sha1,
        "target": facts.target,
        "xattrs": {name: value.hex() for name, value in sorted(xattrs.items())} if xattrs else {},
        "rdev": f"{facts.rdev[0]}:{facts.rdev[1]}" if facts.rdev else None,
        "ctime": rfc3339_ns(facts.ctime_ns),
        "btime": rfc3339_ns(facts.btime_ns),
    }


#: The keys of :func:`facts_to_dict`, all null: a deleted path has no facts now.
_EMPTY_FACTS: dict[str, Any] = dict.fromkeys(
    [
        "type",
        "mode",
        "uid",
        "gid",
        "size",
        "mtime",
        "sha256",
        "md5",
        "sha1",
        "target",
        "xattrs",
        "rdev",
        "ctime",
        "btime",
    ]
)


def change_to_dict(change: Change, layers: tuple[Layer, ...]) -> dict[str, Any]:
    """One change: the container's facts on top (null when deleted), the image's in ``before``."""
    now = facts_to_dict(change.after) if change.after else dict(_EMPTY_FACTS)
    if change.after is None and change.before is not None:
        now["type"] = change.before.kind
    before = None
    if change.before is not None:
        layer = layers[change.layer] if change.layer is not None else None
        before = {**facts_to_dict(change.before), "layer": layer.diff_id if layer else None}
    return {
        "path": change.path,
        "change": change.change.value,
        **now,
        "before": before,
        "mount": change.mount,
        "tags": list(change.tags),
        "severity": change.severity.value,
        "yara": [dict(match) for match in change.yara],
        "magic": change.magic,
        "attack": list(change.attack),
        "findings": [finding_to_dict(finding) for finding in change.findings],
        "content": plain(change.content),
        "provenance": plain(change.provenance),
        "diff": plain(change.diff),
    }


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "severity": finding.severity.value,
        "attack": list(finding.attack),
        "tags": list(finding.tags),
        "detail": finding.detail,
    }


def image_to_dict(image: ImageRef | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {"ref": image.ref, "id": image.id, "platform": image.platform}


def target_to_dict(target: Target) -> dict[str, Any]:
    return {
        "runtime": target.runtime,
        "id": target.id,
        "name": target.name,
        "image": image_to_dict(target.image),
        "pid": target.pid,
        **dict(target.details),
    }


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    return {
        "diff_id": layer.diff_id,
        "digest": layer.digest,
        "media_type": layer.media_type,
        "size": layer.size,
        "verified": layer.verified,
        "source": layer.source,
        "verified_at": layer.verified_at,
        "created_by": layer.created_by,
        "problems": list(layer.problems),
    }


_SCALARS = (str, int, float, type(None))


def plain(value: Any) -> Any:
    """A dataclass (or container of them) as JSON-native data: dicts, lists, scalars."""
    if isinstance(value, _SCALARS):  # bool is an int; the cheap checks first
        return value
    if type(value) is dict or isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {name: plain(getattr(value, name)) for name in _field_names(type(value))}
    return value


@cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(kind))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a big report is millions of new, acyclic dicts
    and lists, and collecting while they are built would take as long as building them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def report_to_dict(report: DriftReport) -> dict[str, Any]:
    """The whole report as JSON-ready data."""
    with _collector_paused():
        return {key: value if key != "changes" else list(value) for key, value in _fields(report)}


def _fields(report: DriftReport) -> Iterator[tuple[str, Any]]:
    """The report's top-level fields in order; ``changes`` as an iterator, each change made
    when it is taken, so that a writer need never hold them all."""
    yield "schema", SCHEMA_ID
    yield "tool", {"name": "drifttools", "version": __version__}
    yield "acquired_at", report.acquired_at
    yield "target", target_to_dict(report.target)
    yield (
        "baseline",
        {
            "verified": report.verified,
            "problems": list(report.baseline_problems),
            "layers": [layer_to_dict(layer) for layer in report.baseline],
        },
    )
    yield "summary", report.summary()
    yield "changes", (change_to_dict(change, report.baseline) for change in report.changes)
    yield (
        "processes",
        [
            {**plain(process), "findings": [finding_to_dict(f) for f in process.findings]}
            for process in report.processes
        ],
    )
    yield "sockets", [plain(socket) for socket in report.sockets]
    yield "mounts", [plain(mount) for mount in report.mounts]
    yield "packages", [plain(package) for package in report.packages]
    yield (
        "exclusions",
        [{"path": e.path, "reason": e.reason, "subtree": e.subtree} for e in report.exclusions],
    )
    yield "errors", [{"path": e.path, "reason": e.reason} for e in report.errors]
    yield "notes", list(report.notes)
    yield "logs", [plain(log) for log in report.logs]
    if report.classification is not None:
        yield "classification", plain(report.classification)


_json_encode = json.JSONEncoder(ensure_ascii=False).encode


def _encode(value: Any) -> str:
    """JSON text of ``value`` by orjson (several times faster than ``json``); ``json`` takes
    what orjson refuses (an integer beyond 64 bits from a package file, a lone surrogate)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return _json_encode(value)


def report_json_chunks(report: DriftReport, indent: int = 2) -> Iterator[str]:
    """The report as indented JSON text in pieces, to be written as they come (each change
    is made, encoded and dropped in turn): each top-level field on its own lines and each
    item of a list field (a change, a process...) on one line of its own, so that the
    document reads well and diffs with line tools."""
    pad = " " * indent
    separator = "{\n"
    for key, value in _fields(report):
        yield f"{separator}{pad}{_encode(key)}: "
        separator = ",\n"
        items = iter(value) if isinstance(value, list | Iterator) else None
        first = next(items, None) if items is not None else None
        if items is None or first is None:
            yield _encode(value if items is None else [])
            continue
        yield f"[\n{pad}{pad}{_encode(first)}"
        for item in items:
            yield f",\n{pad}{pad}{_encode(item)}"
        yield f"\n{pad}]"
    yield "\n}"


def report_to_json(report: DriftReport, indent: int | None = 2) -> str:
    """The report as JSON text: compact, or laid out as :func:`report_json_chunks` says."""
    if indent is None:
        return _encode(report_to_dict(report))
    return "".join(report_json_chunks(report, indent))


def report_to_jsonl(report: DriftReport) -> Iterator[str]:
    """JSON Lines: a header record (everything but the changes), then one line per change."""
    header: dict[str, Any] = {"record": "report"}
    changes: Iterator[dict[str, Any]] = iter(())
    for key, value in _fields(report):
        if key == "changes":
            changes = value
        else:
            header[key] = value
    yield _encode(header)
    for change in changes:
        yield _encode({"record": "change", **change})


@cache
def report_schema() -> dict[str, Any]:
    """The JSON Schema of report v1, as shipped in the package."""
    schema = resources.files("drifttools").joinpath("evidence/schema/report-v1.json")
    text = schema.read_text("utf-8")
    return json.loads(text)
