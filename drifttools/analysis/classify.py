"""Classification: what the drift means. Changes and processes in, findings and severity out.

Runs only on what drifted (changed paths, process executables): libmagic on a bounded
prefix, our ELF/script facts, YARA, then the heuristics of :mod:`drifttools.analysis.classifiers`
(each finding with its ATT&CK ids), package drift, the allowlist of expected drift, and
the one severity model (:mod:`drifttools.analysis.classifiers.severity`, docs/severity.md).

Pure over its inputs except for reads: file bytes through :class:`ContentReader` (confined
to the container's root), image bytes through an optional ``image_files`` reader, and a
live process's executable through ``/proc/<pid>/exe`` while that process lives. Each changed
file is read once, on a bounded pool of threads, and that read serves libmagic, the ELF
facts, YARA, the text diff of a modified file and the package readers
(:mod:`~drifttools.analysis.samples`); a content classified before is not read again
(:mod:`~drifttools.analysis.sample_cache`). ``image_files`` is called from those threads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drifttools import _native
from drifttools.acquisition.content import ContentReader, ContentUnavailable
from drifttools.analysis.classifier import ChangeContext, rule_findings
from drifttools.analysis.classifiers.allowlist import Allowlist
from drifttools.analysis.classifiers.packages import PackageDrift, package_drift
from drifttools.analysis.classifiers.packages.database import is_database_path
from drifttools.analysis.classifiers.persistence import start_scripts
from drifttools.analysis.classifiers.processes import exposed_ports, process_findings, read_exe
from drifttools.analysis.classifiers.severity import cap_expected, score, yara_finding
from drifttools.analysis.classifiers.yara import RuleSet, compile_rules
from drifttools.analysis.classifiers.yara_externals import file_externals, owner_names, parse_define
from drifttools.analysis.content_diff import diff_bytes, file_diff, needs_diff
from drifttools.analysis.sample_cache import SampleCache
from drifttools.analysis.samples import Plan, default_workers, examine, examine_changes
from drifttools.baseline.sources import LayerSource
from drifttools.models import (
    Change,
    ChangeKind,
    DriftReport,
    Finding,
    ImageIndex,
    ProcessRecord,
    Severity,
    Snapshot,
)
from drifttools.options import DEFAULT_CLASSIFICATION, ClassifyOptions
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress

#: Reads a path's bytes (up to a limit) from the image, or None when it cannot.
ImageFiles = Callable[[str, int], bytes | None]

_CONTENT_KINDS = (ChangeKind.ADDED, ChangeKind.MODIFIED, ChangeKind.TYPE, ChangeKind.METADATA)


def _combine(
    floor: Severity, findings: Sequence[Finding], tags: Iterable[str], expected: bool
) -> tuple[Severity, tuple[str, ...], tuple[str, ...], tuple[Finding, ...]]:
    if expected:
        findings = cap_expected(findings)
    all_tags = dict.fromkeys(tags)
    attack: dict[str, None] = {}
    for finding in findings:
        all_tags.update(dict.fromkeys(finding.tags))
        attack.update(dict.fromkeys(finding.attack))
    ordered = tuple(sorted(findings, key=lambda f: (-f.severity.rank, f.rule)))
    return score(floor, findings), tuple(all_tags), tuple(attack), ordered


def image_files_from_layers(baseline: ImageIndex, layers: Sequence[LayerSource]) -> ImageFiles:
    """A reader of image paths from unpacked layer directories (bottom first, one per layer
    of ``baseline``), confined to each directory; bytes are returned only when they hash to
    the baseline's sha256 (or were cut at the limit)."""
    import hashlib

    directories = [layer.directory for layer in layers]

    def read(path: str, limit: int) -> bytes | None:
        entry = baseline.entries.get(path)
        if entry is None or entry.facts.kind != "file" or entry.layer >= len(directories):
            return None
        directory = directories[entry.layer]
        if directory is None:
            return None
        try:
            data, size, _ = _native.read_file(os.fspath(directory), path, limit=limit)
        except (OSError, ValueError):
            return None
        if len(data) == size and entry.facts.sha256 not in (
            None,
            hashlib.sha256(data).hexdigest(),
        ):
            return None
        return data

    return read


def classify(
    report: DriftReport,
    snapshot: Snapshot,
    baseline: ImageIndex,
    options: ClassifyOptions = DEFAULT_CLASSIFICATION,
    *,
    image_files: ImageFiles | None = None,
    ruleset: RuleSet | None = None,
    progress: Progress = no_progress,
) -> DriftReport:
    """``report`` with every change and process classified, packages and the rule set filled.

    ``ruleset`` overrides the one compiled from ``options`` (compile once, classify many).
    Modified regular files get their :class:`~drifttools.models.ContentDiff` when
    ``options.diffs``. The report is the same whatever ``options.workers``.
    Raises :class:`~drifttools.analysis.classifiers.yara.RulesError` only when rules were
    asked for and none compiles,
    :class:`~drifttools.analysis.classifiers.allowlist.AllowlistError` for a bad allowlist;
    everything else that cannot be read is recorded and the run goes on.
    """
    if ruleset is None and options.yara:
        ruleset = compile_rules(
            options.rules,
            engine=options.yara_engine,
            bundled=options.bundled_rules,
            timeout=options.yara_timeout,
            cache_dir=options.cache_dir,
            defines=dict(parse_define(d) for d in options.yara_defines),
            tags=options.yara_tags,
            identifiers=options.yara_identifiers,
            progress=progress,
        )
    cap = options.max_scan_size
    reader = ContentReader(snapshot)
    allow = Allowlist.build(options.allow, report.target.image)
    config = baseline.image.config
    starts = frozenset(start_scripts(config, baseline.entries))
    by_path = {c.path: c for c in report.changes}
    notes = list(report.notes)

    wanted = [
        c
        for c in report.changes
        if c.change in _CONTENT_KINDS and c.after is not None and c.after.kind == "file"
    ]
    owners = _owners(reader, cap)
    plan = Plan(
        reader,
        ruleset,
        cap,
        owners,
        diff=lambda change, got: file_diff(change, got, image_files, options),
        diff_bytes=diff_bytes(options),
        wants_diff=lambda change: needs_diff(change, options),
        keeps=lambda change: is_database_path(change.path),
        cache=SampleCache(options.cache_dir) if options.cache_dir is not None else None,
        workers=options.workers,
    )
    examined = examine_changes(wanted, plan, progress)
    executables = {p for p, e in examined.items() if e.sample and "executable" in e.sample.tags}

    def after(path: str) -> bytes | None:
        change = by_path.get(path)
        if change is not None and change.after is None:
            return None
        kept = examined.get(path)
        if kept is not None and kept.content is not None:
            return kept.content.data[:cap]
        try:
            return reader.read(path, cap).data
        except ContentUnavailable:
            if change is None and image_files is not None:
                return image_files(path, cap)
            return None

    def before(path: str) -> bytes | None:
        return image_files(path, cap) if image_files is not None else None

    packages = package_drift(
        by_path, baseline.entries, before, after, executables, baseline.database_paths
    )
    notes += packages.notes

    changes = []
    for change in report.changes:
        outcome = examined.get(change.path)
        sample = outcome.sample if outcome else None
        tags = list(sample.tags) if sample else []
        findings: list[Finding] = []
        content: dict[str, Any] = dict(sample.info) if sample else {}
        if outcome is not None and outcome.error is not None:
            content["error"] = outcome.error
        if outcome is not None and outcome.read_sha256 is not None:
            content["read_sha256"] = outcome.read_sha256  # what was classified
            tags.append("changed-since-walk")
        if sample:
            in_image = _same_bytes(change)
            findings += [
                yara_finding(m, in_image=in_image, origin=_origin(ruleset, m)) for m in sample.yara
            ]
        findings += rule_findings(change, ChangeContext(frozenset(tags), starts))
        findings, package_tags = packages.judge(change, findings)
        tags += package_tags
        rule = allow.match(change.path)
        if rule is not None:
            tags.append("expected")
            content["allowed_by"] = rule.origin
        severity, all_tags, attack, ordered = _combine(
            change.severity, findings, tags, rule is not None
        )
        changes.append(
            dataclasses.replace(
                change,
                tags=tuple(dict.fromkeys((*change.tags, *all_tags))),
                severity=severity,
                attack=attack,
                magic=sample.magic if sample else change.magic,
                yara=tuple(sample.yara) if sample else change.yara,
                findings=ordered,
                content=content,
                provenance=packages.provenance.get(change.path),
                diff=outcome.diff if outcome is not None and outcome.diff else change.diff,
            )
        )

    declared = exposed_ports(config)
    with ThreadPoolExecutor(options.workers or default_workers(), "drift-classify") as pool:
        processes = tuple(
            pool.map(
                lambda p: _classify_process(p, declared, ruleset, cap, packages, owners),
                report.processes,
            )
        )
    progress(ProgressEvent(Stage.CLASSIFY_PROCESSES, len(processes), len(processes)))
    description: dict[str, Any] = {
        "yara": ruleset.describe() if ruleset is not None else None,
        "allowlist": sorted({r.origin for r in allow.rules}),
        "max_scan_size": cap,
        "start_scripts": sorted(starts),
    }
    return dataclasses.replace(
        report,
        changes=tuple(changes),
        processes=processes,
        packages=tuple(packages.records),
        notes=tuple(notes),
        classification=description,
    )


def _owners(reader: ContentReader, cap: int) -> dict[int, str]:
    """The container's user names by uid (its own /etc/passwd), for YARA's ``owner``."""
    try:
        return owner_names(reader.read("/etc/passwd", cap).data)
    except ContentUnavailable:
        return {}


def _origin(ruleset: RuleSet | None, match: Mapping[str, Any]) -> str:
    return ruleset.origin(match) if ruleset is not None else ""


def _same_bytes(change: Change) -> bool:
    """Whether a change left the image's bytes as they were (metadata only)."""
    before, after = change.before, change.after
    return (
        before is not None
        and after is not None
        and before.sha256 is not None
        and before.sha256 == after.sha256
    )


#: Process tags that say its executable is not the image's file as the image has it.
_DRIFTED_EXE = frozenset({"memfd", "exe-deleted", "exe-not-in-image", "exe-modified"})


def _image_executable(process: ProcessRecord) -> bool:
    """Whether a process runs the image's own executable, bytes unchanged."""
    return (
        process.exe_state == "present"
        and process.exe_sha256 is not None
        and not _DRIFTED_EXE.intersection(process.tags)
    )


def _classify_process(
    process: ProcessRecord,
    declared: set[tuple[str, int]],
    ruleset: RuleSet | None,
    cap: int,
    packages: PackageDrift,
    owners: Mapping[int, str],
) -> ProcessRecord:
    findings, tags = process_findings(process, declared, packages)
    errors = list(process.errors)
    magic = None
    content: dict[str, Any] = {}
    matches: list[dict[str, Any]] = []
    if process.exe_state != "unreadable" and process.state != "Z":
        data, error = read_exe(process, cap)
        if error is not None:
            errors.append(f"classify: {error}")
            content["error"] = error
        elif data is not None:
            size = process.exe_size or len(data)
            externals = file_externals(
                process.exe or "",
                data,
                uid=None,  # the file's owner is not the process's: not known here
                owners=owners,
                complete=size == len(data),
                wanted=ruleset.externals if ruleset is not None else (),
            )
            sample = examine(data, size, 0o755, ruleset, cap, externals)
            magic, content, matches = sample.magic, dict(sample.info), list(sample.yara)
            tags += [t for t in sample.tags if t != "executable"]
            unchanged = _image_executable(process)
            findings += [
                yara_finding(m, in_image=unchanged, origin=_origin(ruleset, m)) for m in matches
            ]
    severity, all_tags, attack, ordered = _combine(Severity.INFO, findings, tags, False)
    return dataclasses.replace(
        process,
        tags=tuple(dict.fromkeys((*process.tags, *all_tags))),
        severity=severity,
        attack=attack,
        findings=ordered,
        magic=magic,
        content=content,
        yara=tuple(matches),
        errors=tuple(errors),
    )
