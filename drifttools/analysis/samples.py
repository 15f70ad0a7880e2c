"""The bytes of drifted files, read once each and examined on a bounded pool of threads:
libmagic, our ELF and script facts, YARA, and the text diff, all from the same read.

Threads pay because the work is native: the confined reader, libmagic (ctypes) and libyara
(yara-python) release the GIL while they run, so two files are read and scanned at once.
yara-x's Python binding (1.x) keeps the GIL during a scan (a Python thread stalls for the
whole of it, measured by ``tests/test_samples.py``): its scans take turns, beside the reads
and libmagic of the other worker. libmagic's ``magic_t`` is not thread safe: one per thread
(:mod:`~drifttools.analysis.classifiers.magic`), as are yara-x scanners.

Deterministic whatever the worker count: each file's outcome depends only on its own bytes
and facts, outcomes are returned by path, and the caller walks its own order.

Each file is read once through the snapshot's confined reader (no symlink followed, FIFOs
and devices never opened, atimes kept), up to the scan cap or what its diff needs if more,
and hashed to its end in that read. A file whose walk digest has a sample in the
:class:`~drifttools.analysis.sample_cache.SampleCache` is not read at all, unless its diff
or a package reader needs the bytes. A file whose read digest is not the walk's changed
between the two (a rewrite to the same size): its sample is of the bytes read, recorded
with that digest (:attr:`Examined.read_sha256`), and never cached under the walk's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from drifttools.acquisition.content import Content, ContentReader, ContentUnavailable
from drifttools.analysis.classifiers.elf import content_facts
from drifttools.analysis.classifiers.magic import describe
from drifttools.analysis.classifiers.yara import RuleSet, ScanTimeout
from drifttools.analysis.classifiers.yara_externals import External, file_externals
from drifttools.analysis.sample_cache import PATH_EXTERNALS, Sample, SampleCache, sample_key
from drifttools.models import Change, ContentDiff
from drifttools.progress import Progress, ProgressEvent, Stage

#: Files of one task at most (its reads are one call), and bytes at most (one file over
#: it is a task of its own): the memory in flight is about this times the workers.
_TASK_FILES = 16
_TASK_BYTES = 32 * 1024 * 1024
#: Bytes read at once from a one-pass (archive) reader, examined before the next read.
_PASS_BYTES = 256 * 1024 * 1024


def default_workers() -> int:
    """Threads examining files by default: one per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


def examine(
    data: bytes,
    size: int,
    mode: int,
    ruleset: RuleSet | None,
    cap: int,
    externals: Mapping[str, External] | None = None,
) -> Sample:
    """What the (first ``cap``) bytes of a file of ``size`` bytes say."""
    data = data[:cap]
    info, tags = content_facts(data, mode)
    if size > len(data):
        info["scanned_bytes"] = len(data)
        info["truncated"] = f"larger than the {cap} byte scan cap: first bytes only"
    matches: list[dict[str, Any]] = []
    if ruleset is not None:
        try:
            matches = ruleset.scan(data, externals)
        except ScanTimeout as exc:
            info["yara_error"] = str(exc)
    return Sample(describe(data), info, tuple(tags), tuple(matches))


@dataclass(frozen=True, slots=True)
class Examined:
    """What became of one file: its sample or why it could not be read, its diff when it
    needs one, and its bytes when the caller keeps them (package databases)."""

    sample: Sample | None
    error: str | None = None
    diff: ContentDiff | None = None
    content: Content | None = None
    read: bool = True  # False: the sample came from the cache and the file was not opened
    #: The digest of the bytes examined when it is not the walk's (the file changed since).
    read_sha256: str | None = None


@dataclass(frozen=True)
class Plan:
    """How to examine the changed files of one classification."""

    reader: ContentReader
    ruleset: RuleSet | None
    cap: int  # bytes scanned at most
    owners: Mapping[int, str]  # the container's user names, for YARA's ``owner``
    diff: Callable[[Change, Content | ContentUnavailable], ContentDiff] | None
    diff_bytes: int  # bytes a diff needs read
    wants_diff: Callable[[Change], bool]
    keeps: Callable[[Change], bool]  # whose bytes the caller keeps
    cache: SampleCache | None = None
    workers: int = 0  # 0: :func:`default_workers`


def examine_changes(
    changes: Sequence[Change], plan: Plan, progress: Progress
) -> dict[str, Examined]:
    """Each regular file of ``changes`` examined, by path."""
    workers = plan.workers or default_workers()
    done: dict[str, Examined] = {}
    cached = [0]  # files whose sample came from the cache, for the progress line
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift-classify")
    try:
        if plan.reader.one_pass:
            for group in _groups(changes, plan, _PASS_BYTES, len(changes)):
                contents = plan.reader.read_many(
                    [c.path for c in group], _limit(group, plan), digest=_walk_hashed(group)
                )
                tasks = [
                    pool.submit(_task, plan, chunk, contents)
                    for chunk in _groups(group, plan, _TASK_BYTES, _TASK_FILES)
                ]
                _collect(tasks, done, len(changes), progress, cached)
        else:
            tasks = [
                pool.submit(_task, plan, chunk, None)
                for chunk in _groups(changes, plan, _TASK_BYTES, _TASK_FILES)
            ]
            _collect(tasks, done, len(changes), progress, cached)
    finally:  # on Ctrl-C or an error, the files not started yet are dropped, not waited for
        pool.shutdown(cancel_futures=True)
    if plan.cache is not None:
        plan.cache.prune()
    return done


def _collect(
    tasks: Sequence[Future[dict[str, Examined]]],
    done: dict[str, Examined],
    total: int,
    progress: Progress,
    cached: list[int],
) -> None:
    for task in tasks:
        outcomes = task.result()
        done.update(outcomes)
        cached[0] += sum(1 for examined in outcomes.values() if not examined.read)
        detail = f"{cached[0]} from the sample cache" if cached[0] else ""
        progress(ProgressEvent(Stage.CLASSIFY_FILES, len(done), total, detail))


def _wanted(change: Change, plan: Plan) -> int:
    """Bytes of ``change`` worth reading."""
    return max(plan.cap, plan.diff_bytes) if plan.wants_diff(change) else plan.cap


def _limit(group: Sequence[Change], plan: Plan) -> int:
    return max((_wanted(c, plan) for c in group), default=plan.cap)


def _groups(
    changes: Sequence[Change], plan: Plan, most_bytes: int, most_files: int
) -> Iterator[list[Change]]:
    group: list[Change] = []
    total = 0
    for change in changes:
        assert change.after is not None
        cost = min(change.after.size, _wanted(change, plan))
        if group and (total + cost > most_bytes or len(group) >= most_files):
            yield group
            group, total = [], 0
        group.append(change)
        total += cost
    if group:
        yield group


def _task(
    plan: Plan,
    chunk: Sequence[Change],
    contents: Mapping[str, Content | ContentUnavailable] | None,
) -> dict[str, Examined]:
    """Examine ``chunk`` (reading it unless ``contents`` were read already)."""
    keys = {c.path: _key(c, plan) for c in chunk}
    cached = {}
    for change in chunk:
        key = keys[change.path]
        sample = plan.cache.get(key) if plan.cache is not None and key else None
        if sample is not None:
            cached[change.path] = sample
    to_read = [c for c in chunk if c.path not in cached or plan.wants_diff(c) or plan.keeps(c)]
    if contents is None and to_read:
        contents = plan.reader.read_many(
            [c.path for c in to_read], _limit(to_read, plan), digest=_walk_hashed(to_read)
        )
    reading = {c.path for c in to_read}
    out: dict[str, Examined] = {}
    for change in chunk:
        got = contents[change.path] if contents is not None and change.path in reading else None
        changed = _changed(change, got)
        sample = None if changed else cached.get(change.path)
        if sample is None:
            assert isinstance(got, (Content, ContentUnavailable))
            if isinstance(got, ContentUnavailable):
                out[change.path] = Examined(None, str(got), _diff(change, got, plan))
                continue
            sample = _sample(change, got, plan)
            key = keys[change.path]
            if plan.cache is not None and key and sample.cacheable and _as_walked(change, got):
                plan.cache.put(key, sample)
        out[change.path] = Examined(
            sample,
            diff=_diff(change, got, plan) if got is not None else None,
            content=got if isinstance(got, Content) and plan.keeps(change) else None,
            read=got is not None,
            read_sha256=changed,
        )
    return out


def _diff(change: Change, got: Content | ContentUnavailable, plan: Plan) -> ContentDiff | None:
    if plan.diff is None or not plan.wants_diff(change):
        return None
    return plan.diff(change, got)


def _walk_hashed(changes: Sequence[Change]) -> set[str]:
    """The paths whose walk digest the read is checked against (a file the walk did not
    hash, past its cap, is not hashed to its end again for nothing)."""
    return {c.path for c in changes if c.after is not None and c.after.sha256 is not None}


def _changed(change: Change, got: Content | ContentUnavailable | None) -> str | None:
    """The digest of the bytes read when it is not the one the walk took."""
    assert change.after is not None
    walked = change.after.sha256
    if not isinstance(got, Content) or got.sha256 is None or walked is None:
        return None
    return got.sha256 if got.sha256 != walked else None


def _as_walked(change: Change, got: Content) -> bool:
    """Whether the bytes read may stand for the walk's digest: the read's own digest is
    the walk's, or (an archive member, no digest of its own) it has the walk's size."""
    assert change.after is not None
    if got.sha256 is not None:
        return got.sha256 == change.after.sha256
    return got.size == change.after.size


def _key(change: Change, plan: Plan) -> str | None:
    """The sample cache key of ``change``, or None when it has no walk digest."""
    facts = change.after
    if plan.cache is None or facts is None or facts.sha256 is None:
        return None
    wanted = plan.ruleset.externals & PATH_EXTERNALS if plan.ruleset is not None else ()
    values = file_externals(
        change.path, b"", uid=facts.uid, owners=plan.owners, complete=False, wanted=wanted
    )
    return sample_key(
        facts.sha256,
        ruleset=plan.ruleset,
        cap=plan.cap,
        executable=bool(facts.mode & 0o111),
        path_externals=values,
    )


def _sample(change: Change, got: Content, plan: Plan) -> Sample:
    facts = change.after
    assert facts is not None
    externals = None
    if plan.ruleset is not None:
        wanted = plan.ruleset.externals
        walked_md5 = facts.md5 if got.complete and _as_walked(change, got) else None
        externals = file_externals(
            change.path,
            got.data,
            uid=facts.uid,
            owners=plan.owners,
            complete=got.complete,
            wanted=wanted - {"md5"} if walked_md5 else wanted,
        )
        if walked_md5 and "md5" in wanted:
            externals["md5"] = walked_md5  # the walk hashed it: not again here
    return examine(got.data, got.size, facts.mode, plan.ruleset, plan.cap, externals)
