"""Timesketch JSONL: one event per line and per timestamp kind.

Each line has Timesketch's required ``message``, ``datetime`` (ISO 8601, UTC)
and ``timestamp_desc``, plus ``timestamp`` (microseconds since the epoch, as
Timesketch stores it) and the change's attributes. Changed paths give up to four
events (modification, access, change, birth); processes one (their start).
Container-controlled text in ``message`` is escaped; JSON escapes the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from drifttools.evidence.report_read import ns_from_rfc3339
from drifttools.models import Change, DriftReport
from drifttools.text import printable

_KINDS = (
    ("mtime_ns", "Content Modification Time"),
    ("atime_ns", "Last Access Time"),
    ("ctime_ns", "Metadata Modification Time"),
    ("btime_ns", "Creation Time"),
)


def iso(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC with microseconds (what Timesketch parses)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    return stamp.isoformat()


def _event(ns: int, desc: str, message: str, **attributes: Any) -> str:
    event = {
        "message": message,
        "datetime": iso(ns),
        "timestamp": ns // 1000,
        "timestamp_desc": desc,
        **attributes,
    }
    return json.dumps(event, ensure_ascii=False)


def _change_events(change: Change, container: Mapping[str, Any]) -> Iterator[str]:
    facts = change.facts
    message = f"{change.change.value} {facts.kind} {printable(change.path)}"
    if facts.kind == "symlink" and facts.target is not None:
        message += f" -> {printable(facts.target)}"
    if change.tags:
        message += f" [{', '.join(printable(tag) for tag in change.tags)}]"
    for attribute, desc in _KINDS:
        ns = getattr(facts, attribute)
        if ns is None:
            continue
        yield _event(
            ns,
            desc,
            message,
            data_type="drifttools:file:change",
            path=change.path,
            change=change.change.value,
            file_type=facts.kind,
            mount=change.mount,
            sha256=facts.sha256,
            md5=facts.md5,
            sha1=facts.sha1,
            size=facts.size,
            mode=f"{facts.mode:04o}",
            uid=facts.uid,
            gid=facts.gid,
            severity=change.severity.value,
            tags=list(change.tags),
            **container,
        )


def lines(report: DriftReport, acquisition: Mapping[str, Any] | None = None) -> Iterator[str]:
    """The events of ``report``, changes first (sorted by path), then processes."""
    container = {"container_id": report.target.id, "container_name": report.target.name}
    for change in report.changes:
        yield from _change_events(change, container)
    for process in report.processes:
        ns = ns_from_rfc3339(process.started_at)
        if ns is None:
            continue
        command = " ".join(printable(arg) for arg in process.cmdline) or printable(process.comm)
        yield _event(
            ns,
            "Start Time",
            f"process {process.pid} started: {command}",
            data_type="drifttools:process",
            pid=process.pid,
            ns_pid=process.ns_pid,
            ppid=process.ppid,
            uid=process.uid,
            exe=process.exe,
            exe_state=process.exe_state,
            exe_sha256=process.exe_sha256,
            exe_md5=process.exe_md5,
            exe_sha1=process.exe_sha1,
            cmdline=list(process.cmdline),
            tags=list(process.tags),
            **container,
        )
