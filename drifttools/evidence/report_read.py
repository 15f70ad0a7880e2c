"""Report v1 JSON back to the model: the inverse of :mod:`drifttools.evidence.report`.

Evidence bundles keep the report as JSON; :func:`report_from_dict` gives the
:class:`DriftReport` back, so a notebook on another machine works with the same
objects as a live run. Keys this version does not know are ignored (a newer
report still reads); what JSON cannot hold is left at its default (the image's
raw config, a process environment that was not collected).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from drifttools.models import (
    Change,
    ChangeKind,
    ContentDiff,
    DriftReport,
    ErrorRecord,
    Exclusion,
    FileFacts,
    Finding,
    ImageRef,
    Layer,
    LogRecord,
    MountPoint,
    OpenFile,
    PackageRecord,
    PackageRef,
    ProcessRecord,
    Provenance,
    RecordCheck,
    Severity,
    SocketRecord,
    Target,
)

_TARGET_KEYS = ("runtime", "id", "name", "image", "pid")


def ns_from_rfc3339(text: str | None) -> int | None:
    """``2026-01-01T10:00:00.000000001Z`` to nanoseconds since the epoch (None stays None)."""
    if text is None:
        return None
    whole, _, fraction = text.removesuffix("Z").partition(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


def facts_from_dict(data: Mapping[str, Any]) -> FileFacts:
    """One ``facts_to_dict`` record back to :class:`FileFacts`."""
    rdev = data.get("rdev")
    major_minor = tuple(int(part) for part in rdev.split(":")) if rdev else None
    return FileFacts(
        kind=data["type"],
        mode=int(data["mode"], 8),
        uid=data["uid"],
        gid=data["gid"],
        size=data["size"],
        mtime_ns=ns_from_rfc3339(data["mtime"]) or 0,
        sha256=data.get("sha256"),
        md5=data.get("md5"),
        sha1=data.get("sha1"),
        target=data.get("target"),
        xattrs={name: bytes.fromhex(value) for name, value in (data.get("xattrs") or {}).items()},
        rdev=major_minor,  # type: ignore[arg-type]
        ctime_ns=ns_from_rfc3339(data.get("ctime")),
        btime_ns=ns_from_rfc3339(data.get("btime")),
    )


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def _socket(data: Mapping[str, Any]) -> SocketRecord:
    found = _known(SocketRecord, data)
    return SocketRecord(**{**found, "pids": tuple(found.get("pids", ()))})


def _finding(data: Mapping[str, Any]) -> Finding:
    return Finding(
        rule=data["rule"],
        severity=Severity(data["severity"]),
        attack=tuple(data.get("attack", ())),
        tags=tuple(data.get("tags", ())),
        detail=data.get("detail", ""),
    )


def _process(data: Mapping[str, Any]) -> ProcessRecord:
    found = _known(ProcessRecord, data)
    for name in ("cmdline", "libraries", "env_names", "tags", "errors", "attack", "yara"):
        if name in found:
            found[name] = tuple(found[name])
    found["fds"] = tuple(OpenFile(**_known(OpenFile, fd)) for fd in found.get("fds", ()))
    found["sockets"] = tuple(_socket(s) for s in found.get("sockets", ()))
    if "severity" in found:
        found["severity"] = Severity(found["severity"])
    if "findings" in found:
        found["findings"] = tuple(_finding(f) for f in found["findings"])
    return ProcessRecord(**found)


def _change(data: Mapping[str, Any], layer_index: Mapping[str, int]) -> Change:
    kind = ChangeKind(data["change"])
    before = data.get("before")
    layer = None
    if before is not None and before.get("layer") is not None:
        layer = layer_index.get(before["layer"])
    return Change(
        path=data["path"],
        change=kind,
        before=facts_from_dict(before) if before is not None else None,
        after=None if kind is ChangeKind.DELETED else facts_from_dict(data),
        layer=layer,
        mount=data.get("mount", "/"),
        tags=tuple(data.get("tags", ())),
        severity=Severity(data.get("severity", "info")),
        attack=tuple(data.get("attack", ())),
        magic=data.get("magic"),
        yara=tuple(data.get("yara", ())),
        findings=tuple(_finding(f) for f in data.get("findings", ())),
        content=data.get("content") or {},
        provenance=_provenance(data.get("provenance")),
        diff=ContentDiff(**data["diff"]) if data.get("diff") else None,
    )


def _package_ref(data: Mapping[str, Any] | None) -> PackageRef | None:
    return None if data is None else PackageRef(**_known(PackageRef, data))


def _provenance(data: Mapping[str, Any] | None) -> Provenance | None:
    if data is None:
        return None
    record = data.get("record")
    return Provenance(
        package=_package_ref(data.get("package")),
        image_package=_package_ref(data.get("image_package")),
        record=RecordCheck(record) if record else None,
        runtime=bool(data.get("runtime")),
        listed_as=data.get("listed_as"),
    )


def _package(data: Mapping[str, Any]) -> PackageRecord:
    found = _known(PackageRecord, data)
    for name in ("files", "mismatched"):
        found[name] = tuple(found.get(name, ()))
    found["severity"] = Severity(found.get("severity", "medium"))
    return PackageRecord(**found)


def _image(data: Mapping[str, Any] | None) -> ImageRef | None:
    if data is None:
        return None
    return ImageRef(
        ref=data.get("ref"), id=data["id"], platform=data.get("platform", "linux/amd64")
    )


def _layer(data: Mapping[str, Any]) -> Layer:
    return Layer(
        diff_id=data["diff_id"],
        digest=data.get("digest"),
        media_type=data.get("media_type", ""),
        size=data.get("size", 0),
        created_by=data.get("created_by"),
        verified=data["verified"],
        source=data.get("source", "archive"),
        problems=tuple(data.get("problems", ())),
        verified_at=data.get("verified_at"),
    )


def report_from_dict(data: Mapping[str, Any]) -> DriftReport:
    """A report v1 document (``report_to_dict`` output) as the :class:`DriftReport` model."""
    target_data = data["target"]
    target = Target(
        runtime=target_data["runtime"],
        id=target_data["id"],
        name=target_data.get("name"),
        image=_image(target_data.get("image")),
        pid=target_data.get("pid"),
        details={k: v for k, v in target_data.items() if k not in _TARGET_KEYS},
    )
    baseline = tuple(_layer(layer) for layer in data["baseline"]["layers"])
    layer_index = {layer.diff_id: position for position, layer in enumerate(baseline)}
    return DriftReport(
        target=target,
        acquired_at=data["acquired_at"],
        baseline=baseline,
        changes=tuple(_change(change, layer_index) for change in data["changes"]),
        baseline_problems=tuple(data["baseline"].get("problems", ())),
        errors=tuple(ErrorRecord(e["path"], e["reason"]) for e in data.get("errors", ())),
        exclusions=tuple(
            Exclusion(e["path"], e["reason"], e.get("subtree", True))
            for e in data.get("exclusions", ())
        ),
        processes=tuple(_process(p) for p in data.get("processes", ())),
        sockets=tuple(_socket(s) for s in data.get("sockets", ())),
        mounts=tuple(MountPoint(**_known(MountPoint, m)) for m in data.get("mounts", ())),
        packages=tuple(_package(p) for p in data.get("packages", ())),
        notes=tuple(data.get("notes", ())),
        classification=data.get("classification"),
        logs=tuple(_log(log) for log in data.get("logs", ())),
    )


def _log(data: Mapping[str, Any]) -> LogRecord:
    found = _known(LogRecord, data)
    return LogRecord(**{**found, "aliases": tuple(found.get("aliases", ()))})
