"""YARA rule sources as the engines should see them: bytes read, decoded, includes expanded.

* **Bytes, decoded as YARA reads them.** libyara's lexer works on bytes: a Latin-1 ``é``
  in a string literal is the byte ``0xE9``. Both Python bindings want ``str``, so a file is
  decoded as UTF-8 and every byte that is not UTF-8 becomes the escape ``\\xNN``
  (``backslashreplace``): in a text string or a regular expression that escape *is* that
  byte for both engines, in a comment it is a comment. No file is ever a traceback.
* **Includes** are resolved relative to the including file's folder, as libyara does, and
  expanded in place (an ``include`` is textual); a cycle or a missing file is one named
  problem. The expanded text keeps a line map, so an engine's error line names the file
  and line it came from. An included file's ``import`` then sits between the rules of
  the files before it: an error on it (an unknown module) is :data:`IMPORT`, not the
  rule above it.
* **Directories** are searched for ``*.yar`` / ``*.yara``; a file another file of the same
  directory includes is compiled through its includer only, and an index whose files a
  larger index brings (Yara-Rules' ``*_index.yar`` beside ``index.yar``) not at all.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from drifttools.errors import RulesError

RULE_SUFFIXES = (".yar", ".yara")
#: How deep includes may nest (libyara's own limit is 16).
MAX_INCLUDE_DEPTH = 16

_RULE_START = re.compile(r"^[ \t]*((?:private|global)[ \t]+)*rule[ \t]+(\w+)", re.MULTILINE)
_INCLUDE = re.compile(r'^[ \t]*include[ \t]+"((?:[^"\\\n]|\\.)*)"[^\n]*', re.MULTILINE)
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_IMPORT = re.compile(r'[ \t]*import[ \t]+"')
#: What an error on an ``import`` statement is reported as: no rule is lost by it (the
#: statement is dropped; the rules that use the module fail on their own).
IMPORT = "(import)"


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """A rule (or a whole file, when it cannot be split into rules) that did not compile."""

    rule: str
    origin: str
    message: str


@dataclass(frozen=True, slots=True)
class RuleSource:
    """One namespace's text, includes expanded, with where each line came from."""

    namespace: str
    origin: str  # the file it came from (or ``bundled:<name>``)
    text: str
    ruleset: str = ""  # the ``--rules`` path (or ``bundled``) it was found under
    #: ``(first line in text, origin, first line in origin)`` of each expanded piece.
    pieces: tuple[tuple[int, str, int], ...] = ()
    problems: tuple[RuleProblem, ...] = ()  # includes that could not be read

    def locate(self, line: int) -> tuple[str, int]:
        """The file and line that line ``line`` (1-based) of :attr:`text` came from."""
        if not self.pieces:
            return self.origin, line
        index = bisect.bisect_right([p[0] for p in self.pieces], line) - 1
        start, origin, first = self.pieces[max(index, 0)]
        return origin, first + line - start

    def rule_count(self) -> int:
        """How many rules :attr:`text` has."""
        return sum(1 for _ in _RULE_START.finditer(self.text))

    def rule_origins(self) -> list[tuple[str, str]]:
        """``(name, file it was written in)`` of each rule of :attr:`text`, in order (an
        index's rules come from the files it includes)."""
        starts = [p[0] for p in self.pieces]
        found = []
        for name, line, _ in self.rules():
            index = bisect.bisect_right(starts, line) - 1
            found.append((name, self.pieces[index][1] if index >= 0 else self.origin))
        return found

    def rules(self) -> list[tuple[str, int, int]]:
        """``(name, first line, start offset)`` of each rule of :attr:`text`, in order."""
        found = []
        line, last = 1, 0
        for match in _RULE_START.finditer(self.text):
            line += self.text.count("\n", last, match.start())
            last = match.start()
            found.append((match.group(2), line, match.start()))
        return found


def is_import(text: str, line: int) -> bool:
    """Whether line ``line`` (1-based) of ``text`` is an ``import`` statement (an expanded
    include can put one between rules)."""
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if not start:
            return False
    return _IMPORT.match(text, start) is not None


def decode_rules(data: bytes) -> str:
    """Rule file bytes as text the engines read as those bytes (see the module doc)."""
    return data.decode("utf-8", "backslashreplace")


def split_rules(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A YARA file as its header (imports, includes) and ``(name, text)`` of each rule."""
    starts = [(m.start(), m.group(2)) for m in _RULE_START.finditer(text)]
    if not starts:
        return text, []
    header = text[: starts[0][0]]
    bounds = [*(s for s, _ in starts[1:]), len(text)]
    return header, [(name, text[s:e]) for (s, name), e in zip(starts, bounds, strict=True)]


def bundled_sources() -> list[RuleSource]:
    """The rule set shipped with drifttools (``drifttools/analysis/rules``)."""
    folder = resources.files("drifttools").joinpath("analysis/rules")
    found = sorted((e for e in folder.iterdir() if e.name.endswith(RULE_SUFFIXES)), key=str)
    return [
        RuleSource(Path(e.name).stem, f"bundled:{e.name}", decode_rules(e.read_bytes()), "bundled")
        for e in found
    ]


def _include_targets(text: str) -> list[tuple[str, re.Match[str]]]:
    if "include" not in text:
        return []
    comments = [(m.start(), m.end()) for m in _BLOCK_COMMENT.finditer(text)]
    found = []
    for match in _INCLUDE.finditer(text):
        if any(start <= match.start() < end for start, end in comments):
            continue
        found.append((match.group(1).replace("\\\\", "\\").replace('\\"', '"'), match))
    return found


def _included(path: str, target: str) -> str:
    """Where ``include "target"`` in ``path`` points: relative to ``path``'s folder, no
    symlink followed to find it."""
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), target))


class _Texts:
    """Rule files read once as bytes and decoded, by absolute path."""

    def __init__(self) -> None:
        self._read: dict[str, str] = {}

    def get(self, path: str) -> str:
        if path not in self._read:
            with open(path, "rb") as stream:
                self._read[path] = decode_rules(stream.read())
        return self._read[path]


def read_source(
    path: Path, namespace: str, ruleset: str, texts: _Texts | None = None
) -> RuleSource:
    """``path`` read as bytes, decoded, includes expanded. Raises :class:`RulesError` only
    when ``path`` itself cannot be read; an include that cannot is a problem of the source."""
    texts = texts or _Texts()
    problems: list[RuleProblem] = []
    pieces: list[tuple[str, str, int]] = []
    name = str(path)
    top_path = os.path.abspath(name)
    try:
        top = texts.get(top_path)
    except OSError as exc:
        raise RulesError(f"cannot read rules {path}: {exc.strerror or exc}") from exc
    _expand(name, top, [top_path], pieces, problems, texts)
    text_parts: list[str] = []
    mapped: list[tuple[int, str, int]] = []
    line = 1
    for text, origin, first in pieces:
        mapped.append((line, origin, first))
        text_parts.append(text)
        line += text.count("\n")
    return RuleSource(namespace, name, "".join(text_parts), ruleset, tuple(mapped), tuple(problems))


def _expand(
    path: str,
    text: str,
    stack: list[str],
    pieces: list[tuple[str, str, int]],
    problems: list[RuleProblem],
    texts: _Texts,
) -> None:
    """Append ``text`` to ``pieces`` with each include statement replaced by its file."""
    position, line = 0, 1
    for target, match in _include_targets(text):
        before = text[position : match.start()]
        pieces.append((before, path, line))
        line += before.count("\n")
        included = _included(path, target)
        position = match.end()
        if included in stack:
            problems.append(RuleProblem("(include)", path, f"include cycle: {target}"))
        elif len(stack) >= MAX_INCLUDE_DEPTH:
            problems.append(RuleProblem("(include)", path, f"nested too deep: {target}"))
        else:
            try:
                inner = texts.get(included)
            except OSError as exc:
                problems.append(
                    RuleProblem("(include)", path, f"cannot include {target}: {exc.strerror}")
                )
            else:
                _expand(included, inner + "\n", [*stack, included], pieces, problems, texts)
    pieces.append((text[position:], path, line))


def read_rules(path: Path) -> list[RuleSource]:
    """The sources of a ``--rules`` path: the file itself, or a directory's ``*.yar`` and
    ``*.yara`` (sorted), each file read once, each rule file compiled once: a file another
    of them includes only through an includer, and an index file whose files a larger
    index already includes (Yara-Rules' ``*_index.yar`` beside ``index.yar``) not at all."""
    if path.is_file():
        return [read_source(path, path.stem, str(path))]
    if not path.is_dir():
        raise RulesError(f"no such rules file or directory: {path}")
    files = sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(path)
        for name in names
        if name.endswith(RULE_SUFFIXES) and os.path.isfile(os.path.join(folder, name))
    )
    texts = _Texts()
    includes: dict[str, list[str]] = {}
    for file in files:
        try:
            text = texts.get(os.path.abspath(file))
        except OSError as exc:
            raise RulesError(f"cannot read rules {file}: {exc.strerror or exc}") from exc
        includes[os.path.abspath(file)] = [_included(file, t) for t, _ in _include_targets(text)]
    included = {target for targets in includes.values() for target in targets}
    tops = [file for file in includes if file not in included]
    reached = {top: _reached(top, includes) for top in tops}
    covered: set[str] = set()
    kept: set[str] = set()
    for top in sorted(tops, key=lambda t: (-len(reached[t]), t)):
        brings = reached[top] - {top}
        if brings and brings <= covered and not _RULE_START.search(texts.get(top)):
            continue  # an index of files a larger index already brings
        covered |= reached[top]
        kept.add(top)
    return [
        read_source(Path(file), os.path.splitext(os.path.basename(file))[0], str(path), texts)
        for file in files
        if os.path.abspath(file) in kept
    ]


def _reached(top: str, includes: dict[str, list[str]]) -> set[str]:
    """``top`` and the directory's files it includes, directly or not."""
    found, stack = {top}, [top]
    while stack:
        for target in includes.get(stack.pop(), ()):
            if target not in found:
                found.add(target)
                stack.append(target)
    return found


def unique_namespaces(sources: Sequence[RuleSource]) -> list[RuleSource]:
    """``sources`` with namespaces made valid identifiers and unique (``_2``, ``_3``...)."""
    seen: dict[str, int] = {}
    unique = []
    for source in sources:
        base = re.sub(r"\W", "_", source.namespace)
        count = seen[base] = seen.get(base, 0) + 1
        name = base if count == 1 else f"{base}_{count}"
        unique.append(
            RuleSource(
                name, source.origin, source.text, source.ruleset, source.pieces, source.problems
            )
        )
    return unique
