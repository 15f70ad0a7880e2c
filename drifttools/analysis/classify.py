"""Classification: what the drift means. Changes and processes in, findings and severity out.

Runs only on what drifted (changed paths, process executables): libmagic on a bounded
prefix, our ELF/script facts, YARA, then the heuristics of :mod:`drifttools.analysis.classifiers`
(each finding with its ATT&CK ids), package drift, the allowlist of expected drift, and
the one severity model (:mod:`drifttools.analysis.classifiers.severity`, docs/severity.md).

Pure over its inputs except for reads: file bytes through :class:`ContentReader` (confined
to the container's root), image bytes through an optional ``image_files`` reader, and a
live process's executable through ``/proc/<pid>/exe`` while that process lives.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drifttools import _native
from drifttools.acquisition.content import ContentReader, ContentUnavailable
from drifttools.analysis.classifier import ChangeContext, rule_findings
from drifttools.analysis.classifiers.allowlist import Allowlist
from drifttools.analysis.classifiers.elf import content_facts
from drifttools.analysis.classifiers.magic import describe
from drifttools.analysis.classifiers.packages import PackageDrift, package_drift
from drifttools.analysis.classifiers.persistence import start_scripts
from drifttools.analysis.classifiers.processes import exposed_ports, process_findings, read_exe
from drifttools.analysis.classifiers.severity import cap_expected, score, yara_finding
from drifttools.analysis.classifiers.yara import RuleSet, ScanTimeout, compile_rules
from drifttools.analysis.classifiers.yara_externals import (
    External,
    file_externals,
    owner_names,
    parse_define,
)
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

#: Bytes read from one file in one batch at most (several files per batch).
_BATCH_BYTES = 256 * 1024 * 1024
#: Files examined at once: libmagic and the YARA engines release the GIL while they scan.
_EXAMINERS = min(4, os.cpu_count() or 1)
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


class _Sample:
    """What was learnt of one file's bytes."""

    def __init__(self) -> None:
        self.magic: str | None = None
        self.info: dict[str, Any] = {}
        self.tags: list[str] = []
        self.yara: list[dict[str, Any]] = []


def _examine(
    data: bytes,
    size: int,
    mode: int,
    ruleset: RuleSet | None,
    cap: int,
    externals: Mapping[str, External] | None = None,
) -> _Sample:
    sample = _Sample()
    sample.magic = describe(data)
    info, tags = content_facts(data, mode)
    sample.info.update(info)
    sample.tags += tags
    if size > len(data):
        sample.info["scanned_bytes"] = len(data)
        sample.info["truncated"] = f"larger than the {cap} byte scan cap: first bytes only"
    if ruleset is not None:
        try:
            sample.yara = ruleset.scan(data, externals)
        except ScanTimeout as exc:
            sample.info["yara_error"] = str(exc)
    return sample


def _batches(changes: Sequence[Change], cap: int) -> Iterator[list[Change]]:
    batch: list[Change] = []
    total = 0
    for change in changes:
        assert change.after is not None
        cost = min(change.after.size, cap)
        if batch and total + cost > _BATCH_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(change)
        total += cost
    if batch:
        yield batch


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
            data, size = _native.read_file(os.fspath(directory), path, limit=limit)
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
        Raises :class:`~drifttools.analysis.classifiers.yara.RulesError` only when rules were asked
    for and
    none compiles, :class:`~drifttools.analysis.classifiers.allowlist.AllowlistError` for a bad
    allowlist; everything else that cannot be read is recorded and the run goes on.
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
    samples: dict[str, _Sample] = {}
    unreadable: dict[str, str] = {}
    done = 0
    with ThreadPoolExecutor(max_workers=_EXAMINERS, thread_name_prefix="drift-classify") as pool:
        for batch in _batches(wanted, cap):
            contents = reader.read_many([c.path for c in batch], cap)
            pending = {}
            for change in batch:
                got = contents[change.path]
                if isinstance(got, ContentUnavailable):
                    unreadable[change.path] = str(got)
                    continue
                assert change.after is not None
                externals = file_externals(
                    change.path,
                    got.data,
                    uid=change.after.uid,
                    owners=owners,
                    complete=got.size == len(got.data),
                    wanted=ruleset.externals if ruleset is not None else (),
                )
                pending[change.path] = pool.submit(
                    _examine, got.data, got.size, change.after.mode, ruleset, cap, externals
                )
            samples.update((path, future.result()) for path, future in pending.items())
            done += len(batch)
            progress(ProgressEvent(Stage.CLASSIFY_FILES, done, len(wanted)))

    executables = {p for p, s in samples.items() if "executable" in s.tags}

    def after(path: str) -> bytes | None:
        change = by_path.get(path)
        if change is not None and change.after is None:
            return None
        try:
            return reader.read(path, cap).data
        except ContentUnavailable:
            if change is None and image_files is not None:
                return image_files(path, cap)
            return None

    def before(path: str) -> bytes | None:
        return image_files(path, cap) if image_files is not None else None

    packages = package_drift(by_path, baseline.entries, before, after, executables)
    notes += packages.notes

    changes = []
    for change in report.changes:
        sample = samples.get(change.path)
        tags = list(sample.tags) if sample else []
        findings: list[Finding] = []
        content: dict[str, Any] = dict(sample.info) if sample else {}
        if change.path in unreadable:
            content["error"] = unreadable[change.path]
        if sample:
            findings += [yara_finding(m, in_image=_same_bytes(change)) for m in sample.yara]
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
            )
        )

    processes = tuple(
        _classify_process(p, exposed_ports(config), ruleset, cap, packages, owners)
        for p in report.processes
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
            sample = _examine(data, size, 0o755, ruleset, cap, externals)
            magic, content, matches = sample.magic, sample.info, sample.yara
            tags += [t for t in sample.tags if t != "executable"]
            unchanged = _image_executable(process)
            findings += [yara_finding(m, in_image=unchanged) for m in matches]
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
