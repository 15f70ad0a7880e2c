"""YARA: two engines behind one scanner interface, rule sets compiled once and cached.

* ``yara-x`` (the default): the Rust engine, memory safe, with a per-scan timeout.
* ``yara-python`` (libyara): for rule sets yara-x rejects.

A rule set is the bundled rules (``drifttools/rules/*.yar``) plus any files or
directories given; each file is its own namespace (its stem). A file that does not
compile is split into its rules and each is tried on its own, so one broken rule is
reported by name (:class:`RuleProblem`) and every other rule still runs. Compiled
sets are cached by the hash of engine, version, options and sources: in the process,
and on disk under ``<cache dir>/yara/v1/`` when a cache directory is given.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from drifttools.atomic import atomic_write
from drifttools.errors import RulesError, ScanTimeout

ENGINES = ("yara-x", "yara-python")
DEFAULT_ENGINE = "yara-x"
#: Seconds one file's scan may take before it is abandoned (recorded on the change).
DEFAULT_TIMEOUT = 10
#: Bytes of one file scanned at most; a larger file is scanned up to this and says so.
DEFAULT_MAX_SCAN = 32 * 1024 * 1024
#: Offsets kept per matched string.
MAX_OFFSETS = 16
RULE_SUFFIXES = (".yar", ".yara")

_RULE_START = re.compile(r"^[ \t]*((?:private|global)[ \t]+)*rule[ \t]+(\w+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class RuleSource:
    namespace: str
    origin: str  # the file it came from
    text: str


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """A rule (or a whole file, when it cannot be split into rules) that did not compile."""

    rule: str
    origin: str
    message: str


def bundled_sources() -> list[RuleSource]:
    """The rule set shipped with drifttools (``drifttools/rules``)."""
    folder = resources.files("drifttools").joinpath("analysis/rules")
    found = sorted((e for e in folder.iterdir() if e.name.endswith(RULE_SUFFIXES)), key=str)
    return [RuleSource(Path(e.name).stem, f"bundled:{e.name}", e.read_text("utf-8")) for e in found]


def load_sources(paths: Iterable[str | Path], *, bundled: bool = True) -> list[RuleSource]:
    """Rule sources from files and directories (``*.yar``, ``*.yara``, sorted), after the
    bundled ones; namespaces are file stems, made unique with ``_2``, ``_3``..."""
    sources = bundled_sources() if bundled else []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            raise RulesError(f"no such rules file or directory: {path}")
        for file in files:
            try:
                text = file.read_text("utf-8", errors="surrogateescape")
            except OSError as exc:
                raise RulesError(f"cannot read rules {file}: {exc.strerror or exc}") from exc
            sources.append(RuleSource(file.stem, str(file), text))
    seen: dict[str, int] = {}
    unique = []
    for source in sources:
        count = seen[source.namespace] = seen.get(source.namespace, 0) + 1
        name = source.namespace if count == 1 else f"{source.namespace}_{count}"
        unique.append(RuleSource(re.sub(r"\W", "_", name), source.origin, source.text))
    return unique


def split_rules(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A YARA file as its header (imports, includes) and ``(name, text)`` of each rule."""
    starts = [(m.start(), m.group(2)) for m in _RULE_START.finditer(text)]
    if not starts:
        return text, []
    header = text[: starts[0][0]]
    bounds = [*(s for s, _ in starts[1:]), len(text)]
    return header, [(name, text[s:e]) for (s, name), e in zip(starts, bounds, strict=True)]


class _Backend(Protocol):
    name: str
    version: str

    def check(self, sources: Sequence[RuleSource]) -> str | None: ...
    def build(self, sources: Sequence[RuleSource]) -> Any: ...
    def save(self, rules: Any) -> bytes: ...
    def load(self, data: bytes) -> Any: ...
    def scan(self, rules: Any, data: bytes, timeout: int) -> list[dict[str, Any]]: ...


class _YaraX:
    name = "yara-x"

    def __init__(self, relaxed: bool) -> None:
        import yara_x

        self._x = yara_x
        self.relaxed = relaxed
        from importlib.metadata import version

        self.version = version("yara-x")

    def _compiler(self, sources: Sequence[RuleSource]) -> Any:
        compiler = self._x.Compiler(relaxed_re_syntax=self.relaxed)
        for source in sources:
            compiler.new_namespace(source.namespace)
            compiler.add_source(source.text, origin=source.origin)
        return compiler

    def check(self, sources: Sequence[RuleSource]) -> str | None:
        try:
            self._compiler(sources)
        except self._x.CompileError as exc:
            return str(exc).splitlines()[0]
        return None

    def build(self, sources: Sequence[RuleSource]) -> Any:
        return self._compiler(sources).build()

    def save(self, rules: Any) -> bytes:
        import io

        out = io.BytesIO()
        rules.serialize_into(out)
        return out.getvalue()

    def load(self, data: bytes) -> Any:
        import io

        return self._x.Rules.deserialize_from(io.BytesIO(data))

    def scan(self, rules: Any, data: bytes, timeout: int) -> list[dict[str, Any]]:
        scanner = self._x.Scanner(rules)
        scanner.set_timeout(timeout)
        try:
            results = scanner.scan(data)
        except self._x.TimeoutError as exc:
            raise ScanTimeout(f"YARA scan timed out after {timeout} s") from exc
        return [
            _match(
                rule.identifier,
                rule.namespace,
                rule.tags,
                dict(rule.metadata),
                {p.identifier: [(m.offset, m.length) for m in p.matches] for p in rule.patterns},
            )
            for rule in results.matching_rules
        ]


class _YaraPython:
    name = "yara-python"

    def __init__(self, relaxed: bool) -> None:
        import yara

        self._y = yara
        self.relaxed = relaxed  # libyara's regex syntax is already the relaxed one
        self.version = yara.__version__

    def check(self, sources: Sequence[RuleSource]) -> str | None:
        try:
            self.build(sources)
        except self._y.SyntaxError as exc:
            return str(exc)
        return None

    def build(self, sources: Sequence[RuleSource]) -> Any:
        merged: dict[str, str] = {}
        for source in sources:
            merged[source.namespace] = merged.get(source.namespace, "") + "\n" + source.text
        return self._y.compile(sources=merged)

    def save(self, rules: Any) -> bytes:
        import io

        out = io.BytesIO()
        rules.save(file=out)
        return out.getvalue()

    def load(self, data: bytes) -> Any:
        import io

        return self._y.load(file=io.BytesIO(data))

    def scan(self, rules: Any, data: bytes, timeout: int) -> list[dict[str, Any]]:
        try:
            found = rules.match(data=data, timeout=timeout)
        except self._y.TimeoutError as exc:
            raise ScanTimeout(f"YARA scan timed out after {timeout} s") from exc
        return [
            _match(
                m.rule,
                m.namespace,
                m.tags,
                dict(m.meta),
                {
                    s.identifier: [(i.offset, i.matched_length) for i in s.instances]
                    for s in m.strings
                },
            )
            for m in found
        ]


def _plain(value: Any) -> Any:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _match(
    rule: str,
    namespace: str,
    tags: Iterable[str],
    meta: dict[str, Any],
    strings: dict[str, list[tuple[int, int]]],
) -> dict[str, Any]:
    """One match as report data: rule, namespace, tags, meta and offsets of each string."""
    return {
        "rule": rule,
        "namespace": namespace,
        "tags": sorted(tags),
        "meta": {key: _plain(value) for key, value in sorted(meta.items())},
        "strings": [
            {"id": ident, "offset": offset, "length": length}
            for ident, hits in sorted(strings.items())
            for offset, length in sorted(hits)[:MAX_OFFSETS]
        ],
    }


def _backend(engine: str, relaxed: bool) -> _Backend:
    if engine == "yara-x":
        return _YaraX(relaxed)
    if engine == "yara-python":
        return _YaraPython(relaxed)
    raise RulesError(f"unknown YARA engine {engine!r} (choose {' or '.join(ENGINES)})")


@dataclass
class RuleSet:
    """Compiled rules of one engine, ready to scan bytes."""

    engine: str
    sha256: str  # the hash the compiled set is cached under
    rules: Any
    count: int  # rules compiled
    problems: tuple[RuleProblem, ...] = ()
    timeout: int = DEFAULT_TIMEOUT
    _backend: _Backend | None = field(default=None, repr=False)

    def scan(self, data: bytes) -> list[dict[str, Any]]:
        """Matches of ``data``, sorted by namespace and rule. Raises :class:`ScanTimeout`."""
        assert self._backend is not None
        found = self._backend.scan(self.rules, data, self.timeout)
        return sorted(found, key=lambda m: (m["namespace"], m["rule"]))

    def describe(self) -> dict[str, Any]:
        """What the report says of the rule set."""
        return {
            "engine": self.engine,
            "rules_sha256": self.sha256,
            "rules": self.count,
            "problems": [
                {"rule": p.rule, "origin": p.origin, "message": p.message} for p in self.problems
            ],
        }


_COMPILED: dict[str, RuleSet] = {}


def compile_rules(
    paths: Iterable[str | Path] = (),
    *,
    engine: str = DEFAULT_ENGINE,
    bundled: bool = True,
    relaxed: bool = True,
    timeout: int = DEFAULT_TIMEOUT,
    cache_dir: Path | None = None,
) -> RuleSet:
    """Compile the bundled rules and ``paths`` for ``engine``, once per distinct set.

    Raises :class:`RulesError` when a path cannot be read or no rule compiles.
    """
    backend = _backend(engine, relaxed)
    sources = load_sources(paths, bundled=bundled)
    key = hashlib.sha256(
        json.dumps(
            [backend.name, backend.version, relaxed, [(s.namespace, s.text) for s in sources]]
        ).encode("utf-8", "surrogateescape")
    ).hexdigest()
    if key in _COMPILED:
        cached = _COMPILED[key]
        return RuleSet(engine, key, cached.rules, cached.count, cached.problems, timeout, backend)
    stored = _load_stored(backend, key, cache_dir)
    if stored is not None:
        rules, count, problems = stored
    else:
        accepted, problems = _accept(backend, sources)
        count = sum(len(split_rules(s.text)[1]) for s in accepted)
        if not count:
            names = ", ".join(p.rule for p in problems[:5]) or "none given"
            raise RulesError(f"no YARA rule compiles ({names})")
        rules = backend.build(accepted)
        _store(backend, key, cache_dir, rules, count, problems)
    ruleset = RuleSet(engine, key, rules, count, tuple(problems), timeout, backend)
    _COMPILED[key] = ruleset
    return ruleset


def _accept(
    backend: _Backend, sources: Sequence[RuleSource]
) -> tuple[list[RuleSource], list[RuleProblem]]:
    """Sources that compile; a file that does not is taken rule by rule, in order, each rule
    tried with the ones accepted before it (so a rule may use an earlier one)."""
    accepted: list[RuleSource] = []
    problems: list[RuleProblem] = []
    for source in sources:
        error = backend.check([*accepted, source])
        if error is None:
            accepted.append(source)
            continue
        header, rules = split_rules(source.text)
        if not rules:
            problems.append(RuleProblem("(file)", source.origin, error))
            continue
        kept: list[str] = []
        for name, text in rules:
            trial = RuleSource(source.namespace, source.origin, header + "".join([*kept, text]))
            error = backend.check([*accepted, trial])
            if error is None:
                kept.append(text)
            else:
                problems.append(RuleProblem(name, source.origin, error))
        if kept:
            accepted.append(RuleSource(source.namespace, source.origin, header + "".join(kept)))
    return accepted, problems


def _stored_path(backend: _Backend, key: str, cache_dir: Path | None) -> Path | None:
    if cache_dir is None:
        return None
    return Path(cache_dir) / "yara" / "v1" / f"{backend.name}-{key}"


def _load_stored(
    backend: _Backend, key: str, cache_dir: Path | None
) -> tuple[Any, int, list[RuleProblem]] | None:
    path = _stored_path(backend, key, cache_dir)
    if path is None:
        return None
    try:
        meta = json.loads(path.with_suffix(".json").read_text("utf-8"))
        rules = backend.load(path.with_suffix(".rules").read_bytes())
    except Exception:  # absent, corrupt or from another engine build: compile again
        return None
    return rules, int(meta["count"]), [RuleProblem(**p) for p in meta["problems"]]


def _store(
    backend: _Backend,
    key: str,
    cache_dir: Path | None,
    rules: Any,
    count: int,
    problems: Sequence[RuleProblem],
) -> None:
    path = _stored_path(backend, key, cache_dir)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path.with_suffix(".rules"), backend.save(rules))
        meta = {"count": count, "problems": [asdict(p) for p in problems]}
        atomic_write(path.with_suffix(".json"), json.dumps(meta).encode())
    except OSError:
        pass  # a cache that cannot be written only costs a compile next time
