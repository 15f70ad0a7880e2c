"""The two YARA engines behind one interface: compile in linear time, load, save, scan.

* ``yara-x``: one compiler for the whole set. A failed ``add_source`` leaves the compiler
  usable and keeps the rules of that source that did compile; ``Compiler.errors()`` names
  every rule that did not (by its line), so a set compiles in one pass however many rules
  it rejects.
* ``yara-python`` (libyara): one compilation of the whole set. Only when it fails are the
  failing sources found by bisection (sources are namespaces: a half that compiles is
  good, so k bad files cost about 2·k·log2(files) compilations of shrinking halves, cut
  by text size: a file larger than the rest of its half is checked alone at once). A
  source that fails is repaired rule by rule, each round dropping the rule libyara's
  error line points at (libyara reports one error per compilation; the first is the one
  the bisection saw): one compile of that file per rule it loses. An error on an
  ``import`` (an unknown module) drops that statement, its line left empty so the line
  map holds; the rules using the module then fail on their own, as they do with yara-x.

yara-x scanners are per thread (a ``Scanner`` is bound to the thread that made it), made
once and kept with their thread.
"""

from __future__ import annotations

import bisect
import io
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Protocol

from drifttools.analysis.classifiers.yara_sources import (
    IMPORT,
    RuleProblem,
    RuleSource,
    is_import,
    split_rules,
)
from drifttools.errors import RulesError, ScanTimeout

#: Offsets kept per matched string.
MAX_OFFSETS = 16
#: The first bytes of compiled rules: yara-x's ``Rules.serialize_into``, libyara's ``yarac``.
YARA_X_MAGIC = b"YARA-X\0\0"
LIBYARA_MAGIC = b"YARA"

External = str | int | float | bool
#: Called with (sources done, sources in all) while a set compiles.
CompileProgress = Callable[[int, int], None]


@dataclass
class Compiled:
    """What a compilation produced: the engine's rules, what it rejected, per source the
    names of the rules it rejected (``"(file)"``: the whole source) and the seconds spent
    on that source alone (the one pass over the whole set is nobody's)."""

    rules: Any
    problems: list[RuleProblem] = field(default_factory=list)
    rejected: dict[str, set[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class Engine(Protocol):
    """What :mod:`drifttools.analysis.classifiers.yara` asks of an engine."""

    name: str
    version: str

    def compile(
        self,
        sources: Sequence[RuleSource],
        externals: Mapping[str, External],
        progress: CompileProgress,
    ) -> Compiled: ...
    def save(self, rules: Any) -> bytes: ...
    def load(self, data: bytes) -> Any: ...
    def scanner(self, rules: Any, timeout: int) -> Scanner: ...


class Scanner(Protocol):
    def __call__(self, data: bytes, externals: Mapping[str, External]) -> list[dict[str, Any]]: ...


def engine(name: str, relaxed: bool = True) -> Engine:
    """The engine called ``name``; :class:`RulesError` for an unknown one."""
    if name == "yara-x":
        return YaraX(relaxed)
    if name == "yara-python":
        return YaraPython()
    raise RulesError(f"unknown YARA engine {name!r} (choose yara-x or yara-python)")


def compiled_engine(data: bytes) -> str | None:
    """The engine whose compiled rules ``data`` starts like, or None for source text."""
    if data.startswith(YARA_X_MAGIC):
        return "yara-x"
    if data.startswith(LIBYARA_MAGIC) and not data[4:5].isalpha():
        return "yara-python"
    return None


def _problem(
    source: RuleSource, starts: Sequence[tuple[int, str]], line: int, message: str
) -> tuple[str, RuleProblem]:
    """The rule of ``source`` that line ``line`` falls in (``starts``: each rule's first
    line and name, in order), or :data:`IMPORT`, and the problem naming it."""
    index = bisect.bisect_right(starts, (line, "\uffff")) - 1
    name = starts[index][1] if index >= 0 else "(file)"
    if line and is_import(source.text, line):
        name = IMPORT
    origin, at = source.locate(line)
    return name, RuleProblem(name, origin, f"{message} ({origin}:{at})")


class YaraX:
    name = "yara-x"

    def __init__(self, relaxed: bool) -> None:
        import yara_x

        self._x = yara_x
        self.relaxed = relaxed
        self.version = version("yara-x")

    def compile(
        self,
        sources: Sequence[RuleSource],
        externals: Mapping[str, External],
        progress: CompileProgress,
    ) -> Compiled:
        compiler = self._x.Compiler(relaxed_re_syntax=self.relaxed)
        for key, value in externals.items():
            compiler.define_global(key, value)
        compiled = Compiled(None)
        seen = 0
        for done, source in enumerate(sources, 1):
            start = time.perf_counter()
            compiler.new_namespace(source.namespace)
            try:
                compiler.add_source(source.text, origin=source.origin)
            except self._x.CompileError:
                errors = compiler.errors()
                starts = [(first, name) for name, first, _ in source.rules()]
                for error in errors[seen:]:
                    message = f"error[{error['code']}]: {error['title']}"
                    line = int(error.get("line") or 0)
                    rule, problem = _problem(source, starts, line, message)
                    compiled.problems.append(problem)
                    compiled.rejected.setdefault(source.namespace, set()).add(rule)
                seen = len(errors)
            compiled.seconds[source.namespace] = time.perf_counter() - start
            progress(done, len(sources))
        compiled.rules = compiler.build()
        return compiled

    def save(self, rules: Any) -> bytes:
        out = io.BytesIO()
        rules.serialize_into(out)
        return out.getvalue()

    def load(self, data: bytes) -> Any:
        return self._x.Rules.deserialize_from(io.BytesIO(data))

    def scanner(self, rules: Any, timeout: int) -> Scanner:
        x = self._x
        undefined: set[str] = set()
        slot = object()  # this rule set's place in each thread's cache
        records = MatchRecords(lambda rule: (rule.tags, rule.metadata))

        def make() -> Any:
            scanner = x.Scanner(rules)
            scanner.set_timeout(timeout)
            return scanner

        def scan(data: bytes, externals: Mapping[str, External]) -> list[dict[str, Any]]:
            scanner = _thread_scanner(slot, make)
            for key, value in externals.items():
                if key not in undefined:
                    try:
                        scanner.set_global(key, value)
                    except (x.ScanError, TypeError, ValueError):
                        undefined.add(key)  # precompiled rules that do not define it
            try:
                results = scanner.scan(data)
            except x.TimeoutError as exc:
                raise _timed_out(timeout) from exc
            return [
                records.record(
                    rule,
                    rule.identifier,
                    rule.namespace,
                    (
                        (p.identifier, [(m.offset, m.length) for m in p.matches])
                        for p in rule.patterns
                    ),
                )
                for rule in results.matching_rules
            ]

        return scan


#: Each thread's yara-x scanners, newest last. A yara-x ``Scanner`` may be used and
#: dropped only on the thread that made it, so scanners live with their thread (dropped
#: when it ends, or when a newer one pushes them out), not with their rule set.
_THREAD = threading.local()
_SCANNERS_PER_THREAD = 2


def _thread_scanner(key: object, make: Callable[[], Any]) -> Any:
    cache: OrderedDict[object, Any] | None = getattr(_THREAD, "scanners", None)
    if cache is None:
        cache = _THREAD.scanners = OrderedDict()
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    scanner = cache[key] = make()
    while len(cache) > _SCANNERS_PER_THREAD:
        cache.popitem(last=False)
    return scanner


_LIBYARA_LINE = re.compile(r"line (\d+): (.*)", re.DOTALL)


class YaraPython:
    name = "yara-python"

    def __init__(self) -> None:
        import yara

        self._y = yara
        self.version = f"{version('yara-python')} (libyara {yara.__version__})"

    def _build(self, sources: Iterable[tuple[str, str]], externals: Mapping[str, External]) -> Any:
        merged: dict[str, str] = {}
        for namespace, text in sources:
            merged[namespace] = merged.get(namespace, "") + "\n" + text
        return self._y.compile(sources=merged, externals=dict(externals))

    def compile(
        self,
        sources: Sequence[RuleSource],
        externals: Mapping[str, External],
        progress: CompileProgress,
    ) -> Compiled:
        compiled = Compiled(None)
        texts = {s.namespace: s.text for s in sources}
        try:
            compiled.rules = self._build(texts.items(), externals)
        except self._y.Error as exc:
            order = {s.namespace: index for index, s in enumerate(sources)}
            bad = sorted(
                self._failing(list(sources), externals, exc), key=lambda b: order[b[0].namespace]
            )
            for done, (source, error) in enumerate(bad, 1):
                start = time.perf_counter()
                texts[source.namespace] = self._repair(source, externals, compiled, error)
                compiled.seconds[source.namespace] = time.perf_counter() - start
                progress(done, len(bad))
            compiled.rules = self._build(((n, t) for n, t in texts.items() if t), externals)
        progress(len(sources), len(sources))
        return compiled

    def _failing(
        self, group: list[RuleSource], externals: Mapping[str, External], error: Any = None
    ) -> list[tuple[RuleSource, Any]]:
        """The sources of ``group`` that do not compile on their own, each with its error,
        by bisection (``error``: the group's own, when already known): sources are
        namespaces that cannot see each other's rules, so a half that compiles is good."""
        if error is None:
            try:
                self._build(((s.namespace, s.text) for s in group), externals)
                return []
            except self._y.Error as exc:
                error = exc
        if len(group) == 1:
            return [(group[0], error)]
        first, second = _halves(group)
        return [*self._failing(first, externals), *self._failing(second, externals)]

    def _repair(
        self, source: RuleSource, externals: Mapping[str, External], compiled: Compiled, error: Any
    ) -> str:
        """``source``'s text less the rules libyara rejects, found one error at a time
        (libyara reports its last error: problems are put back in the file's order);
        ``error`` is that of ``source`` compiled on its own."""
        header, rules = split_rules(source.text)
        first_lines = {name: line for name, line, _ in source.rules()}
        kept = list(rules)
        rejected = compiled.rejected.setdefault(source.namespace, set())
        found: list[tuple[int, RuleProblem]] = []
        text = source.text
        while error is not None:
            at_error = _LIBYARA_LINE.search(str(error))
            line = int(at_error.group(1)) - 1 if at_error else 0  # _build prepends a newline
            message = at_error.group(2) if at_error else str(error)
            at_rule = _rule_at(header, kept, line)
            name = "(file)"
            if line and is_import(text, line):
                # dropped, the line kept empty: the rules that use it fail on their own
                name = IMPORT
                header, kept = _blank_line(header, kept, line, at_rule)
            elif at_rule is not None:
                index, start = at_rule
                name, _ = kept.pop(index)
                line = first_lines.get(name, 1) + line - start
            origin, at = source.locate(line)
            found.append((line, RuleProblem(name, origin, f"{message} ({origin}:{at})")))
            rejected.add(name)
            if name == "(file)":
                text = ""
                break
            text = header + "".join(chunk for _, chunk in kept)
            try:
                self._build([(source.namespace, text)], externals)
                error = None
            except self._y.Error as exc:
                error = exc
        compiled.problems += [problem for _, problem in sorted(found, key=lambda f: f[0])]
        return text

    def save(self, rules: Any) -> bytes:
        out = io.BytesIO()
        rules.save(file=out)
        return out.getvalue()

    def load(self, data: bytes) -> Any:
        return self._y.load(file=io.BytesIO(data))

    def scanner(self, rules: Any, timeout: int) -> Scanner:
        y = self._y
        records = MatchRecords(lambda match: (match.tags, match.meta.items()))

        def go_on(kind: int, detail: Any) -> int:
            # libyara's "too many matches" for a string: keep what it kept and go on, as
            # the yara command does (without this callback yara-python makes it a Python
            # warning, an error under -W error)
            return int(y.CALLBACK_CONTINUE)

        def scan(data: bytes, externals: Mapping[str, External]) -> list[dict[str, Any]]:
            try:
                found = rules.match(
                    data=data,
                    timeout=timeout,
                    externals=dict(externals),
                    warnings_callback=go_on,
                )
            except y.TimeoutError as exc:
                raise _timed_out(timeout) from exc
            return [
                records.record(
                    m,
                    m.rule,
                    m.namespace,
                    (
                        (s.identifier, [(i.offset, i.matched_length) for i in s.instances])
                        for s in m.strings
                    ),
                )
                for m in found
            ]

        return scan


def _rule_at(header: str, kept: Sequence[tuple[str, str]], line: int) -> tuple[int, int] | None:
    """The index in ``kept`` of the rule line ``line`` of the joined text falls in, and the
    line that rule starts at; None for a line of the header."""
    start = 1 + header.count("\n")
    if line < start or not kept:
        return None
    for index, (_, chunk) in enumerate(kept):
        end = start + chunk.count("\n")
        if line < end or index == len(kept) - 1:
            return index, start
        start = end
    return None


def _halves(group: Sequence[RuleSource]) -> tuple[list[RuleSource], list[RuleSource]]:
    """``group`` in two parts of about the same text size; a source larger than all the
    others together alone (a large index file is then compiled on its own at once, not
    once per level of the bisection)."""
    sizes = [len(s.text) for s in group]
    total = sum(sizes)
    largest = max(range(len(group)), key=sizes.__getitem__)
    if sizes[largest] * 2 >= total:
        return [group[largest]], [*group[:largest], *group[largest + 1 :]]
    size = 0
    for index, source in enumerate(group[:-1], 1):
        size += len(source.text)
        if size * 2 >= total:
            return list(group[:index]), list(group[index:])
    return list(group[:-1]), list(group[-1:])


def _blank_line(
    header: str, kept: list[tuple[str, str]], line: int, at_rule: tuple[int, int] | None
) -> tuple[str, list[tuple[str, str]]]:
    """``header`` and ``kept`` with line ``line`` of their joined text made empty."""
    if at_rule is None:
        return _blank(header, line - 1), kept
    index, start = at_rule
    name, chunk = kept[index]
    return header, [*kept[:index], (name, _blank(chunk, line - start)), *kept[index + 1 :]]


def _blank(text: str, index: int) -> str:
    lines = text.split("\n")
    lines[index] = ""
    return "\n".join(lines)


def _timed_out(timeout: int) -> ScanTimeout:
    return ScanTimeout(f"YARA scan timed out after {timeout} s")


def _plain(value: Any) -> Any:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


class MatchRecords:
    """Matches as report data: rule, namespace, tags, meta and the offsets of each string.

    What a rule is (its tags and meta, sorted and made plain) is worked out the first time
    it matches and copied after: a rule of a public set matches many files, and only the
    offsets differ between them. ``describe`` gives a match's tags and meta items.
    """

    def __init__(self, describe: Callable[[Any], tuple[Iterable[str], Iterable[tuple[str, Any]]]]):
        self._describe = describe
        self._heads: dict[tuple[str, str], tuple[list[str], dict[str, Any]]] = {}

    def record(
        self,
        match: Any,
        rule: str,
        namespace: str,
        strings: Iterable[tuple[str, list[tuple[int, int]]]],
    ) -> dict[str, Any]:
        """The record of ``match``, a match of ``rule`` in ``namespace``."""
        head = self._heads.get((namespace, rule))
        if head is None:
            tags, meta = self._describe(match)
            head = (sorted(tags), {key: _plain(value) for key, value in sorted(dict(meta).items())})
            self._heads[namespace, rule] = head
        hits: dict[str, list[tuple[int, int]]] = {}
        for ident, found in strings:
            if found:
                hits.setdefault(ident, []).extend(found)
        return {
            "rule": rule,
            "namespace": namespace,
            "tags": list(head[0]),
            "meta": dict(head[1]),
            "strings": [
                {"id": ident, "offset": offset, "length": length}
                for ident, found in sorted(hits.items())
                for offset, length in sorted(found)[:MAX_OFFSETS]
            ],
        }
