"""The one severity model (docs/severity.md): findings decide, the change kind is the floor.

1. The floor is the change kind's base severity (added/modified/type/metadata: low,
   deleted: info), or info for a process.
2. Each finding has a severity; the subject takes the highest.
3. Two or more independent findings at high (different rules) make it critical.
4. Expected drift (allowlisted) caps the path-based findings (location, persistence,
   tampering, packages) at low; content evidence (YARA, process behaviour) is not capped.
5. Runtime package drift (a file a package added at runtime installed with the bytes it
   recorded) caps what the record vouches for at medium.
6. A YARA match weighs what the rule's own meta says (``severity``, ``score``,
   ``threat_level``); a generic rule, and a match on the image's own bytes, at most low.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from drifttools.models import Finding, Severity

#: Finding rules whose prefix marks them path-based: an allowlist caps them.
PATH_BASED = ("location.", "persistence.", "account.", "tampering.", "package.")


def cap_expected(findings: Sequence[Finding]) -> list[Finding]:
    """Findings of expected drift: path-based ones no higher than low."""
    capped = []
    for finding in findings:
        if finding.rule.startswith(PATH_BASED) and finding.severity.rank > Severity.LOW.rank:
            finding = Finding(
                finding.rule, Severity.LOW, finding.attack, finding.tags, finding.detail
            )
        capped.append(finding)
    return capped


def score(floor: Severity, findings: Sequence[Finding]) -> Severity:
    """The severity of a subject with these findings."""
    levels = [floor, *(f.severity for f in findings)]
    highest = max(levels, key=lambda level: level.rank)
    high_rules = {f.rule for f in findings if f.severity.rank >= Severity.HIGH.rank}
    if highest is Severity.HIGH and len(high_rules) >= 2:
        return Severity.CRITICAL
    return highest


#: What a package's record cannot vouch for: where a file is, set-id bits, capabilities,
#: what its content matches.
NOT_VOUCHED = ("location.", "tampering.setid", "tampering.capabilities", "yara:")


def cap_runtime_package(findings: Sequence[Finding]) -> list[Finding]:
    """Findings of a file a package added at runtime installed with the bytes it recorded:
    what that record vouches for (a service script, a new library, the mtime) no higher
    than medium; the rest (:data:`NOT_VOUCHED`) keeps its severity."""
    return [
        dataclasses.replace(finding, severity=Severity.MEDIUM)
        if not finding.rule.startswith(NOT_VOUCHED) and finding.severity.rank > Severity.MEDIUM.rank
        else finding
        for finding in findings
    ]


#: Tags that mark a YARA rule as generic: it describes a capability or a trait (an URL,
#: a crypto constant), not a threat. Compared in lower case.
GENERIC_TAGS = frozenset(
    {"generic", "info", "informational", "capability", "capabilities", "hunting", "utils"}
)
#: Names of the rule files and folders of generic rules (Yara-Rules' ``capabilities``,
#: ``crypto`` and ``utils`` folders, with their ``*_index.yar``), matched against each
#: folder and the file stem of where a rule was written and against its namespace, with
#: ``_index`` and ``_2``... left off.
GENERIC_NAMESPACES = frozenset(
    {"capabilities", "crypto", "crypto_signatures", "utils", "generic", "info"}
)
_SUFFIXES = re.compile(r"(_index)?(_\d+)?$")
_TEXT_LEVELS = {level.value: level for level in Severity}


def _numeric(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _percent(value: float) -> Severity:
    """A 0-100 weight (signature-base ``score``, Elastic's numeric ``severity``)."""
    if value >= 90:
        return Severity.CRITICAL
    if value >= 70:
        return Severity.HIGH
    if value >= 40:
        return Severity.MEDIUM
    return Severity.LOW if value > 0 else Severity.INFO


def _threat_level(value: float) -> Severity:
    """A 0-5 ``threat_level`` (ReversingLabs; above 5 is the top)."""
    levels = (Severity.INFO, Severity.LOW, Severity.LOW, Severity.MEDIUM, Severity.HIGH)
    return levels[int(value)] if value < len(levels) else Severity.CRITICAL


def yara_weight(meta: Mapping[str, object]) -> Severity | None:
    """The severity a rule's own meta gives it (docs/severity.md), None when it has no
    weight: ``severity`` as a level name (info ... critical) or a 0-100 number, then
    ``score`` (0-100), then ``threat_level`` (0-5)."""
    severity = meta.get("severity")
    if isinstance(severity, str) and severity.strip().lower() in _TEXT_LEVELS:
        return _TEXT_LEVELS[severity.strip().lower()]
    for key, scale in (
        ("severity", _percent),
        ("score", _percent),
        ("threat_level", _threat_level),
    ):
        value = _numeric(meta.get(key))
        if value is not None and value >= 0:
            return scale(value)
    return None


def is_generic(namespace: str, tags: Iterable[str], origin: str = "") -> bool:
    """Whether a rule is generic by the tags the docs list, or by the names they list for
    its namespace or for where it was written (``origin``, :attr:`RuleSet.origins
    <drifttools.analysis.classifiers.yara.RuleSet.origins>`: a folder or the stem of
    ``Yara-Rules/capabilities/capabilities.yar`` for a rule that Yara-Rules' ``index.yar``
    brings into namespace ``index``)."""
    names = [namespace, *PurePosixPath(origin).parent.parts, PurePosixPath(origin).stem]
    if any(_SUFFIXES.sub("", name.lower()) in GENERIC_NAMESPACES for name in names):
        return True
    return any(t.lower() in GENERIC_TAGS for t in tags)


def yara_finding(match: Mapping[str, Any], *, in_image: bool = False, origin: str = "") -> Finding:
    """A YARA match as a finding: severity from the rule's weight (:func:`yara_weight`);
    a generic rule (no weight, or :func:`is_generic` by its tags, namespace or ``origin``)
    at most low; a match on bytes that are the image's own (``in_image``) at most low and
    tagged ``in-image``: context, not drift. ATT&CK ids from ``meta.attack``."""
    meta = match.get("meta", {})
    return _finding(
        str(match["namespace"]),
        str(match["rule"]),
        tuple(match.get("tags", ())),
        tuple(meta.items()),
        in_image,
        origin,
    )


@functools.lru_cache(maxsize=1 << 14)  # the rules of a public set that match
def _finding(
    namespace: str,
    rule: str,
    tags: tuple[str, ...],
    meta_items: tuple[tuple[str, Any], ...],
    in_image: bool,
    origin: str,
) -> Finding:
    """:func:`yara_finding` of one rule, worked out once: a rule matches many files, and
    its finding depends only on what it is, never on the offsets."""
    meta = dict(meta_items)
    weight = yara_weight(meta)
    generic = weight is None or is_generic(namespace, tags, origin)
    severity = weight or Severity.LOW
    marks = (*(("yara-generic",) if generic else ()), *(("in-image",) if in_image else ()))
    if marks and severity.rank > Severity.LOW.rank:
        severity = Severity.LOW
    attack = tuple(a for a in str(meta.get("attack", "")).replace(",", " ").split() if a)
    detail = str(meta.get("description", ""))
    if in_image:
        detail = f"the image's own bytes (context, not drift): {detail}".rstrip(": ")
    return Finding(f"yara:{namespace}/{rule}", severity, attack, ("yara", *tags, *marks), detail)
