"""YARA: two engines behind one scanner interface, rule sets compiled once and cached.

* ``yara-x`` (the default): the Rust engine, memory safe, with a per-scan timeout.
* ``yara-python`` (libyara): for rule sets yara-x rejects.

A rule set is the bundled rules (``drifttools/analysis/rules/*.yar``) plus each ``--rules``
path: a file, a directory (index files and the files they include compiled once), or
rules compiled beforehand (``yarac`` / ``yara.Rules.save`` for yara-python, yara-x's
``Rules.serialize_into``). Sources are read as bytes and expanded
(:mod:`~drifttools.analysis.classifiers.yara_sources`), compiled in one pass
(:mod:`~drifttools.analysis.classifiers.yara_engines`); a rule that does not compile is
reported by name (:class:`RuleProblem`) and every other rule still runs. The externals of
:mod:`~drifttools.analysis.classifiers.yara_externals` are defined for every set and set
per scanned file. Compiled sets are cached by the hash of the engine and its version, the
options, the externals and every source (includes expanded): in the process (the last
few), and on disk under ``<cache dir>/yara/v2/`` when a cache directory is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from drifttools.analysis.classifiers.yara_engines import (
    MAX_OFFSETS,
    YARA_X_MAGIC,
    Compiled,
    Engine,
    External,
    Scanner,
    compiled_engine,
    engine,
)
from drifttools.analysis.classifiers.yara_externals import STANDARD
from drifttools.analysis.classifiers.yara_sources import (
    RULE_SUFFIXES,
    RuleProblem,
    RuleSource,
    bundled_sources,
    read_rules,
    split_rules,
    unique_namespaces,
)
from drifttools.atomic import atomic_write
from drifttools.errors import RulesError, ScanTimeout
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress

__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_MAX_SCAN",
    "DEFAULT_TIMEOUT",
    "ENGINES",
    "MAX_OFFSETS",
    "RULE_SUFFIXES",
    "RuleProblem",
    "RuleSet",
    "RuleSetReport",
    "RuleSource",
    "RulesError",
    "ScanTimeout",
    "bundled_sources",
    "compile_rules",
    "split_rules",
]

ENGINES = ("yara-x", "yara-python")
DEFAULT_ENGINE = "yara-x"
#: Seconds one file's scan may take before it is abandoned (recorded on the change).
DEFAULT_TIMEOUT = 10
#: Bytes of one file scanned at most; a larger file is scanned up to this and says so.
DEFAULT_MAX_SCAN = 32 * 1024 * 1024
#: Compiled sets kept in the process (a node's scan reuses one set for every container).
_KEPT = 2
_CACHE_VERSION = "v2"


@dataclass(frozen=True, slots=True)
class RuleSetReport:
    """What became of one ``--rules`` path (or the bundled rules)."""

    origin: str
    files: int
    compiled: int  # rules that compiled (for compiled files: None known, -1)
    rejected: int
    #: Reading and compiling its files (the set's one pass is in the total); for a set
    #: from a cache, reading and hashing them.
    seconds: float
    precompiled: bool = False


@dataclass
class _Part:
    """One compiled object and its scanner: the sources' set, or one precompiled file."""

    rules: Any
    scan: Scanner


@dataclass
class RuleSet:
    """Compiled rules of one engine, ready to scan bytes."""

    engine: str
    sha256: str  # the hash the compiled set is cached under
    count: int  # rules compiled
    problems: tuple[RuleProblem, ...] = ()
    reports: tuple[RuleSetReport, ...] = ()
    seconds: float = 0.0  # the compilation (0 when it came from a cache)
    defines: Mapping[str, External] = field(default_factory=dict)
    #: Externals some rule may read (a word search of the sources; all of them for
    #: precompiled rules): the scan need not work out the others.
    externals: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()  # only matches with one of these tags (yara -t)
    identifiers: frozenset[str] = frozenset()  # only matches of these rules (yara -i)
    #: Where each rule of a ``--rules`` path was written: ``{namespace: {rule: file}}``,
    #: the file from the folder of that path down (``Yara-Rules/crypto/crypto.yar`` for
    #: a rule ``--rules Yara-Rules`` brings through its ``index.yar``, ``crypto/c1.yar``
    #: for ``--rules crypto/c1.yar``); none for bundled or precompiled rules.
    origins: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    _parts: tuple[_Part, ...] = field(default=(), repr=False)

    def scan(
        self, data: bytes, externals: Mapping[str, External] | None = None
    ) -> list[dict[str, Any]]:
        """Matches of ``data``, sorted by namespace and rule; ``externals`` are the scanned
        file's (``--yara-define`` values win). Raises :class:`ScanTimeout`."""
        values = {**(externals or {}), **self.defines}
        found = [match for part in self._parts for match in part.scan(data, values)]
        if self.tags:
            found = [m for m in found if self.tags.intersection(m["tags"])]
        if self.identifiers:
            found = [m for m in found if m["rule"] in self.identifiers]
        return sorted(found, key=lambda m: (m["namespace"], m["rule"]))

    def origin(self, match: Mapping[str, Any]) -> str:
        """The file the rule of ``match`` was written in (see :attr:`origins`); empty when
        not known."""
        return self.origins.get(match["namespace"], {}).get(match["rule"], "")

    def describe(self) -> dict[str, Any]:
        """What the report says of the rule set."""
        return {
            "engine": self.engine,
            "rules_sha256": self.sha256,
            "rules": self.count,
            "seconds": round(self.seconds, 3),
            "sets": [asdict(r) for r in self.reports],
            "defines": dict(self.defines),
            "tags": sorted(self.tags),
            "identifiers": sorted(self.identifiers),
            "problems": [
                {"rule": p.rule, "origin": p.origin, "message": p.message} for p in self.problems
            ],
        }


@dataclass
class _Stored:
    """A compiled set as the caches keep it (no filters: those are per call)."""

    parts: list[Any]
    count: int
    problems: list[RuleProblem]
    reports: list[RuleSetReport]
    seconds: float
    externals: list[str]
    origins: dict[str, dict[str, str]]


_COMPILED: OrderedDict[str, _Stored] = OrderedDict()


def compile_rules(
    paths: Iterable[str | Path] = (),
    *,
    engine: str = DEFAULT_ENGINE,
    bundled: bool = True,
    relaxed: bool = True,
    timeout: int = DEFAULT_TIMEOUT,
    cache_dir: Path | None = None,
    defines: Mapping[str, External] | None = None,
    tags: Iterable[str] = (),
    identifiers: Iterable[str] = (),
    progress: Progress = no_progress,
) -> RuleSet:
    """Compile the bundled rules and ``paths`` for ``engine``, once per distinct set.

    ``defines`` are externals with fixed values (``yara -d``); ``tags`` and
    ``identifiers`` keep only the matches of rules with one of those tags or names.
    Raises :class:`RulesError` when a path cannot be read, compiled rules are for the
    other engine, or no rule compiles.
    """
    backend = _engine(engine, relaxed)
    defined = dict(defines or {})
    externals = {**STANDARD, **defined}
    sources, compiled_files, reports = _gather(paths, bundled, backend)
    key = _key(backend, relaxed, externals, sources, compiled_files)
    stored = _COMPILED.get(key) or _load_stored(backend, key, cache_dir)
    seconds, sets = 0.0, None
    if stored is None:
        stored = _compile(backend, sources, compiled_files, externals, reports, progress)
        _store(backend, key, cache_dir, stored)
        seconds, sets = stored.seconds, stored.reports
    _COMPILED[key] = stored
    _COMPILED.move_to_end(key)
    while len(_COMPILED) > _KEPT:
        _COMPILED.popitem(last=False)
    parts = tuple(_Part(rules, backend.scanner(rules, timeout)) for rules in stored.parts)
    return RuleSet(
        engine,
        key,
        stored.count,
        tuple(stored.problems),
        tuple(sets or _cached(stored.reports, reports)),
        seconds,
        defined,
        frozenset(stored.externals),
        frozenset(tags),
        frozenset(identifiers),
        stored.origins,
        parts,
    )


def _cached(reports: Sequence[RuleSetReport], gathered: Sequence[_Gathered]) -> list[RuleSetReport]:
    """Reports of a set that came from a cache: each with the seconds it cost this run
    (reading and hashing its files), not those of the compilation that was cached."""
    return [
        replace(report, seconds=round(entry.seconds, 3))
        for report, entry in zip(reports, gathered, strict=True)
    ]


_ENGINES: dict[tuple[str, bool], Engine] = {}


def _engine(name: str, relaxed: bool) -> Engine:
    if (name, relaxed) not in _ENGINES:
        _ENGINES[name, relaxed] = engine(name, relaxed)
    return _ENGINES[name, relaxed]


@dataclass
class _Gathered:
    origin: str
    files: int
    seconds: float
    namespaces: list[str] = field(default_factory=list)
    compiled: bool = False


def _gather(
    paths: Iterable[str | Path], bundled: bool, backend: Engine
) -> tuple[list[RuleSource], list[tuple[str, bytes]], list[_Gathered]]:
    """Sources (namespaces unique), compiled files and what each path gave."""
    sources: list[RuleSource] = []
    compiled: list[tuple[str, bytes]] = []
    gathered: list[_Gathered] = []
    if bundled:
        start = time.perf_counter()
        found = bundled_sources()
        sources += found
        gathered.append(_Gathered("bundled", len(found), time.perf_counter() - start))
    for given in paths:
        start = time.perf_counter()
        path = Path(given)
        if path.is_file():
            kind = compiled_engine(_read(path, len(YARA_X_MAGIC)))
            if kind is not None:
                if kind != backend.name:
                    raise RulesError(
                        f"{path}: rules compiled for {kind}, not {backend.name} "
                        f"(use --yara-engine {kind}, or give the rule sources)"
                    )
                compiled.append((str(path), _read(path)))
                gathered.append(_Gathered(str(path), 1, time.perf_counter() - start, [], True))
                continue
        read = read_rules(path)
        sources += read
        gathered.append(_Gathered(str(path), len(read), time.perf_counter() - start))
    sources = unique_namespaces(sources)
    for entry in gathered:
        entry.namespaces = [s.namespace for s in sources if s.ruleset == entry.origin]
    return sources, compiled, gathered


def _read(path: Path, limit: int = -1) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(limit)
    except OSError as exc:
        raise RulesError(f"cannot read rules {path}: {exc.strerror or exc}") from exc


def _key(
    backend: Engine,
    relaxed: bool,
    externals: Mapping[str, External],
    sources: Sequence[RuleSource],
    compiled: Sequence[tuple[str, bytes]],
) -> str:
    digest = hashlib.sha256()
    head = [backend.name, backend.version, relaxed, sorted(externals.items(), key=str)]
    digest.update(json.dumps(head, default=str).encode())
    for source in sources:
        digest.update(b"\0source\0" + source.namespace.encode())
        digest.update(b"\0" + source.text.encode("utf-8", "surrogateescape"))
    for _, data in compiled:
        digest.update(b"\0compiled\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def _compile(
    backend: Engine,
    sources: Sequence[RuleSource],
    compiled_files: Sequence[tuple[str, bytes]],
    externals: Mapping[str, External],
    gathered: Sequence[_Gathered],
    progress: Progress,
) -> _Stored:
    start = time.perf_counter()

    def step(done: int, total: int) -> None:
        progress(ProgressEvent(Stage.COMPILE_RULES, done, total, f"{done}/{total} rule files"))

    progress(ProgressEvent(Stage.COMPILE_RULES, 0, len(sources)))
    include_problems = [p for s in sources for p in s.problems]
    result = backend.compile(sources, externals, step) if sources else Compiled(None, [], {})
    parts = [] if result.rules is None else [result.rules]
    for origin, data in compiled_files:
        try:
            parts.append(backend.load(data))
        except Exception as exc:  # the engine's own error for a file it cannot load
            raise RulesError(f"cannot load compiled rules {origin}: {exc}") from exc
    per_source = {
        s.namespace: _rule_count(s, result.rejected.get(s.namespace, set())) for s in sources
    }
    reports = []
    for entry in gathered:
        if entry.compiled:
            reports.append(RuleSetReport(entry.origin, 1, -1, 0, round(entry.seconds, 3), True))
            continue
        ok = sum(per_source[n][0] for n in entry.namespaces)
        bad = sum(per_source[n][1] for n in entry.namespaces)
        seconds = entry.seconds + sum(result.seconds.get(n, 0.0) for n in entry.namespaces)
        reports.append(RuleSetReport(entry.origin, entry.files, ok, bad, round(seconds, 3)))
    count = sum(ok for ok, _ in per_source.values())
    problems = [*include_problems, *result.problems]
    if not count and not compiled_files:
        names = ", ".join(p.rule for p in problems[:5]) or "none given"
        raise RulesError(f"no YARA rule compiles ({names})")
    used = sorted(externals) if compiled_files else _used(externals, sources)
    seconds = time.perf_counter() - start
    return _Stored(parts, count, problems, reports, seconds, used, _origins(sources))


def _origins(sources: Sequence[RuleSource]) -> dict[str, dict[str, str]]:
    """:attr:`RuleSet.origins` of ``sources``."""
    bases: dict[str, Path] = {}
    shown: dict[tuple[str, str], str] = {}
    found: dict[str, dict[str, str]] = {}
    for source in sources:
        if source.ruleset == "bundled":
            continue
        if source.ruleset not in bases:
            root = Path(source.ruleset)
            bases[source.ruleset] = root.parent if root.is_dir() else root.parent.parent
        rules = found[source.namespace] = {}
        for name, origin in source.rule_origins():
            key = (source.ruleset, origin)
            if key not in shown:
                shown[key] = os.path.relpath(origin, bases[source.ruleset])
            rules[name] = shown[key]
    return found


def _used(externals: Iterable[str], sources: Sequence[RuleSource]) -> list[str]:
    """The externals some source may read: the name as a word, not ``$name``, ``x.name``
    or a meta key (``md5 = "..."``, which public rules write often)."""
    text = "\n".join(s.text for s in sources)
    return sorted(name for name in externals if _word_in(name, text))


def _word_in(name: str, text: str) -> bool:
    start = text.find(name)
    while start >= 0:
        end = start + len(name)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before in "_.$#@!") and not (after.isalnum() or after == "_"):
            rest = text[end : end + 40].lstrip(" \t")
            if not (rest.startswith("=") and not rest.startswith("==")):
                return True
        start = text.find(name, end)
    return False


def _rule_count(source: RuleSource, rejected: set[str] | None) -> tuple[int, int]:
    """(compiled, rejected) rules of ``source``."""
    rejected = rejected or set()
    if not rejected:
        return source.rule_count(), 0
    names = [name for name, _, _ in source.rules()]
    if "(file)" in rejected:
        return 0, len(names)
    bad = sum(1 for name in names if name in rejected)
    return len(names) - bad, bad


def _stored_path(backend: Engine, key: str, cache_dir: Path | None) -> Path | None:
    if cache_dir is None:
        return None
    return Path(cache_dir) / "yara" / _CACHE_VERSION / f"{backend.name}-{key}"


def _load_stored(backend: Engine, key: str, cache_dir: Path | None) -> _Stored | None:
    path = _stored_path(backend, key, cache_dir)
    if path is None:
        return None
    try:
        meta = json.loads(path.with_suffix(".json").read_text("utf-8"))
        parts = [
            backend.load(path.with_suffix(f".{index}.rules").read_bytes())
            for index in range(int(meta["parts"]))
        ]
        return _Stored(
            parts,
            int(meta["count"]),
            [RuleProblem(**p) for p in meta["problems"]],
            [RuleSetReport(**r) for r in meta["reports"]],
            0.0,
            list(meta["externals"]),
            dict(meta["origins"]),
        )
    except Exception:  # absent, corrupt or from another engine build: compile again
        return None


def _store(backend: Engine, key: str, cache_dir: Path | None, stored: _Stored) -> None:
    path = _stored_path(backend, key, cache_dir)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for index, rules in enumerate(stored.parts):
            atomic_write(path.with_suffix(f".{index}.rules"), backend.save(rules))
        meta = {
            "parts": len(stored.parts),
            "count": stored.count,
            "problems": [asdict(p) for p in stored.problems],
            "reports": [asdict(r) for r in stored.reports],
            "externals": stored.externals,
            "origins": stored.origins,
        }
        atomic_write(path.with_suffix(".json"), json.dumps(meta).encode())
    except OSError:
        pass  # a cache that cannot be written only costs a compile next time
