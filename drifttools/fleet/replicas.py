"""Replicas compared: what every container of a group has drifted, and what only one has.

Containers of the same image (and, for Kubernetes, of the same pod template and container
name: :func:`drifttools.fleet.select.replica_group`) are replicas. Drift is compared by
where it is and what happened there — ``(mount, path, change)``; the bytes are not part of
the key, so a log every replica writes is common drift even though its lines differ. Drift
that every scanned replica has is the group's *common drift*, shown once; drift that only
one replica of two or more has makes it an *outlier*: that drift is raised one severity
level, and so is the container's standing. Pure: reports in, comparison out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from drifttools.models import Change, DriftReport, Severity

#: Where a drift is and what happened there: ``(mount, path, change)``.
DriftKey = tuple[str, str, str]


def drift_key(change: Change) -> DriftKey:
    return (change.mount, change.path, change.change.value)


def raised(level: Severity) -> Severity:
    """One level up (critical stays critical)."""
    order = list(Severity)
    return order[min(order.index(level) + 1, len(order) - 1)]


@dataclass(frozen=True)
class Member:
    """One container to compare: its key (unique in the comparison), group and report."""

    key: str
    group: str
    report: DriftReport | None  # None: it could not be scanned (not compared)


@dataclass(frozen=True)
class ReplicaGroup:
    """The scanned replicas of one group and the drift they all share."""

    key: str
    members: tuple[str, ...]
    common: tuple[DriftKey, ...]


@dataclass(frozen=True)
class Standing:
    """A container among its replicas: the drift only it has and its severity, raised
    where that drift is."""

    outliers: tuple[DriftKey, ...]
    severity: Severity


def compare(members: Sequence[Member]) -> tuple[list[ReplicaGroup], dict[str, Standing]]:
    """Groups of two or more scanned replicas with their common drift, and each scanned
    container's standing (an ungrouped one keeps its report's severity)."""
    by_group: dict[str, list[Member]] = defaultdict(list)
    for member in members:
        if member.report is not None:
            by_group[member.group].append(member)
    groups: list[ReplicaGroup] = []
    standings: dict[str, Standing] = {}
    for key, replicas in sorted(by_group.items()):
        keys = {m.key: {drift_key(c): c for c in _drift(m.report)} for m in replicas}
        seen = Counter(k for found in keys.values() for k in found)
        if len(replicas) > 1:
            common = tuple(sorted(k for k, n in seen.items() if n == len(replicas)))
            groups.append(ReplicaGroup(key, tuple(sorted(keys)), common))
        for member in replicas:
            assert member.report is not None
            found = keys[member.key]
            unique = [] if len(replicas) < 2 else sorted(k for k in found if seen[k] == 1)
            levels = [member.report.highest_severity, *(raised(found[k].severity) for k in unique)]
            standings[member.key] = Standing(tuple(unique), max(levels, key=lambda s: s.rank))
    return groups, standings


def _drift(report: DriftReport | None) -> Iterable[Change]:
    return report.changes if report is not None else ()


def counts(report: DriftReport) -> Mapping[str, int]:
    """Changes by kind, and by severity, flat (``added``, ... ``high``, ...)."""
    summary = report.summary()
    found = {k: v for k, v in summary.items() if isinstance(v, int)}
    return {**found, **summary["by_severity"]}


def top_finding(report: DriftReport) -> str | None:
    """The most severe thing the report found, in a few words (None: nothing above info)."""
    best: tuple[int, str] | None = None
    for change in report.changes:
        words = change.findings[0].rule if change.findings else change.change.value
        candidate = (change.severity.rank, f"{words} {change.path}")
        if best is None or candidate[0] > best[0]:
            best = candidate
    for process in report.processes:
        words = process.findings[0].rule if process.findings else "process"
        candidate = (process.severity.rank, f"{words} pid {process.pid} {process.exe or ''}")
        if best is None or candidate[0] > best[0]:
            best = candidate
    if best is None or best[0] == Severity.INFO.rank:
        return None
    return best[1].strip()
