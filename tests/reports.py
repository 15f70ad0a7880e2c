"""What every report a test produces must be: valid against the shipped schema, JSON-ready."""

from __future__ import annotations

import json
from dataclasses import replace

import jsonschema

from drifttools import report_schema
from drifttools.models import (
    Change,
    ChangeKind,
    DriftReport,
    FileFacts,
    Finding,
    ImageRef,
    Layer,
    Severity,
    Target,
)


def assert_valid_report(document: dict) -> None:
    """``document`` validates against the shipped report schema and serialises as JSON."""
    jsonschema.validate(document, report_schema())
    json.dumps(document)


def synthetic_report(changes: int) -> DriftReport:
    """A classified-looking report of ``changes`` changes (a node_modules-sized drift: added,
    modified and deleted files, a few findings), for the renderers at scale."""
    layers = (Layer("sha256:" + "1" * 64, None, "tar", 1, "RUN x", True, "archive"),)
    levels = [Severity.INFO] * 90 + [Severity.LOW] * 7 + [Severity.MEDIUM] * 2 + [Severity.HIGH]
    items = []
    for i in range(changes):
        kind = (ChangeKind.ADDED, ChangeKind.MODIFIED, ChangeKind.DELETED)[i % 3]
        level = levels[i % len(levels)]
        now = FileFacts("file", 0o644, 0, 0, i, 1_700_000_000_000_000_000 + i, f"{i:064x}")
        before = None if kind is ChangeKind.ADDED else replace(now, sha256=f"{i + 1:064x}")
        findings = (Finding("drift.executable", level, ("T1105",), ("executable",)),)
        items.append(
            Change(
                f"/app/node_modules/pkg-{i // 50}/lib/file-{i}.js",
                kind,
                before,
                None if kind is ChangeKind.DELETED else now,
                None if before is None else 0,
                severity=level,
                tags=("executable",) if level is not Severity.INFO else (),
                attack=("T1105",) if level is Severity.HIGH else (),
                findings=findings if level is not Severity.INFO else (),
                content={"magic": "text/javascript"},
            )
        )
    return DriftReport(
        Target("offline", "synthetic", image=ImageRef(ref="app:1", id="sha256:" + "2" * 64)),
        "2026-01-01T00:00:00.000000000Z",
        layers,
        tuple(items),
    )
