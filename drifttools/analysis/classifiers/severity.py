"""The one severity model (docs/severity.md): findings decide, the change kind is the floor.

1. The floor is the change kind's base severity (added/modified/type/metadata: low,
   deleted: info), or info for a process.
2. Each finding has a severity; the subject takes the highest.
3. Two or more independent findings at high (different rules) make it critical.
4. Expected drift (allowlisted) caps the path-based findings (location, persistence,
   tampering, packages) at low; content evidence (YARA, process behaviour) is not capped.
5. Runtime package drift (a file a package added at runtime installed with the bytes it
   recorded) caps what the record vouches for at medium.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

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
