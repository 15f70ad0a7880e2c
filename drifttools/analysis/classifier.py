"""The contract every heuristic over a change follows, and the registry of them.

A rule looks at one :class:`~drifttools.models.Change` and what classification already
learnt of it (:class:`ChangeContext`), and returns its findings, each with its severity and
ATT&CK ids. Rules do no I/O. A new rule is one module in :mod:`drifttools.analysis.classifiers`
and one line in :data:`CHANGE_RULES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from drifttools.analysis.classifiers.context import ChangeContext
from drifttools.analysis.classifiers.locations import location_findings
from drifttools.analysis.classifiers.persistence import persistence_findings
from drifttools.analysis.classifiers.tampering import tampering_findings
from drifttools.models import Change, Finding

__all__ = ["CHANGE_RULES", "ChangeContext", "ChangeRule", "rule_findings"]

ChangeRule = Callable[[Change, ChangeContext], Sequence[Finding]]

#: Every rule run on each change, in this order.
CHANGE_RULES: tuple[ChangeRule, ...] = (
    location_findings,
    persistence_findings,
    tampering_findings,
)


def rule_findings(change: Change, context: ChangeContext) -> list[Finding]:
    """The findings of every registered rule on ``change``."""
    return [finding for rule in CHANGE_RULES for finding in rule(change, context)]
