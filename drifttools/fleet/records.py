"""What a scan says, as data and as JSON records (``drifttools.scan/v1``), and back.

A scan's JSON Lines are one ``container`` record per container (its identity, its full
report v1 or why it could not be scanned) and one ``summary`` record per node; many nodes'
lines read back (:func:`read_records`) give the same objects a live scan made, so the
cluster view (:mod:`drifttools.fleet.summarize`) is computed by the same code as a node's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from drifttools.evidence.report import report_to_dict
from drifttools.evidence.report_read import report_from_dict
from drifttools.fleet.replicas import DriftKey, Member, ReplicaGroup, compare, counts, top_finding
from drifttools.fleet.select import PodRef
from drifttools.models import DriftReport, Severity

SCHEMA = "drifttools.scan/v1"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ScannedContainer:
    """Which container a result is about, on which node."""

    node: str
    runtime: str
    id: str
    name: str
    image: str | None  # the reference it was started from
    image_id: str
    group: str  # its replica group (:func:`drifttools.fleet.select.replica_group`)
    namespace: str | None = None  # containerd's
    pod: PodRef | None = None

    @property
    def key(self) -> str:
        """A name for its objects (bundles, per-container records): safe in a path or URL."""
        space = f"{self.namespace}-" if self.namespace else ""
        stem = _UNSAFE.sub("_", f"{self.runtime}-{space}{self.name or 'unnamed'}").strip("_")
        return f"{stem[:100]}-{self.id[:12]}"

    @property
    def label(self) -> str:
        """What a person calls it: the pod's names, else the container's name."""
        if self.pod is not None:
            return f"{self.pod.namespace}/{self.pod.pod}/{self.pod.container}"
        return self.name or self.id[:12]


@dataclass(frozen=True)
class ContainerResult:
    """One container scanned: its report, or why there is none."""

    container: ScannedContainer
    report: DriftReport | None
    error: str | None = None  # it vanished, its engine failed, its image could not be read
    bundle: str | None = None  # where its sealed bundle was written
    seconds: float = 0.0

    def to_record(self) -> dict[str, Any]:
        """The ``container`` record of the scan's JSON Lines."""
        return {
            "record": "container",
            "schema": SCHEMA,
            "container": _container_dict(self.container),
            "error": self.error,
            "bundle": self.bundle,
            "seconds": round(self.seconds, 3),
            "report": report_to_dict(self.report) if self.report is not None else None,
        }


@dataclass(frozen=True)
class EngineState:
    """An engine a node's scan asked: where, how many it listed, or why it failed."""

    name: str
    endpoint: str | None
    error: str | None
    listed: int = 0
    duplicates: int = 0  # Docker's containers seen again in containerd's ``moby``


@dataclass(frozen=True)
class NodeRun:
    """One node's scan: when, the engines asked, whether it was cut short."""

    node: str
    started_at: str
    finished_at: str
    engines: tuple[EngineState, ...]
    selected: int  # containers the filters took
    interrupted: bool = False


@dataclass(frozen=True)
class Row:
    """One container's line: its counts, severity among its replicas, top finding."""

    container: ScannedContainer
    severity: Severity | None  # None: not scanned
    counts: Mapping[str, int] = field(default_factory=dict)
    top: str | None = None
    outliers: tuple[DriftKey, ...] = ()
    error: str | None = None
    bundle: str | None = None

    @property
    def drifted(self) -> bool:
        return bool(self.counts) and sum(self.counts.get(k, 0) for k in _KINDS) > 0


_KINDS = ("added", "modified", "metadata", "type", "deleted")


@dataclass(frozen=True)
class Summary:
    """Containers of one node (a scan) or of many (``summarize``), most severe first, with
    their replica groups."""

    nodes: tuple[NodeRun, ...]
    rows: tuple[Row, ...]
    groups: tuple[ReplicaGroup, ...]

    @property
    def interrupted(self) -> bool:
        return any(node.interrupted for node in self.nodes)

    @property
    def scanned(self) -> int:
        return sum(1 for row in self.rows if row.severity is not None)

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if row.severity is None)

    @property
    def drifted(self) -> bool:
        return any(row.drifted for row in self.rows)

    @property
    def highest_severity(self) -> Severity:
        levels = [row.severity for row in self.rows if row.severity is not None]
        return max(levels, key=lambda s: s.rank, default=Severity.INFO)

    def to_record(self) -> dict[str, Any]:
        """The ``summary`` record of the scan's JSON Lines."""
        return {
            "record": "summary",
            "schema": SCHEMA,
            "nodes": [asdict(node) for node in self.nodes],
            "scanned": self.scanned,
            "failed": self.failed,
            "interrupted": self.interrupted,
            "containers": [_row_dict(row) for row in self.rows],
            "groups": [
                {"key": g.key, "members": list(g.members), "common": [list(k) for k in g.common]}
                for g in self.groups
            ],
        }

    def to_pandas(self) -> Any:
        """One row per container (needs ``drifttools[pandas]``)."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "to_pandas() needs pandas: pip install 'drifttools[pandas]'"
            ) from None
        return pandas.DataFrame([_frame_row(row) for row in self.rows])


def summarize_results(results: Sequence[ContainerResult], nodes: Sequence[NodeRun]) -> Summary:
    """The summary of ``results``: replicas compared, rows most severe first."""
    members = [Member(_member_key(r.container), r.container.group, r.report) for r in results]
    groups, standings = compare(members)
    rows = []
    for result in results:
        standing = standings.get(_member_key(result.container))
        report = result.report
        rows.append(
            Row(
                result.container,
                standing.severity if standing else None,
                counts(report) if report is not None else {},
                top_finding(report) if report is not None else None,
                standing.outliers if standing else (),
                result.error,
                result.bundle,
            )
        )
    rows.sort(key=_severity_order)
    return Summary(tuple(nodes), tuple(rows), tuple(groups))


def _severity_order(row: Row) -> tuple[int, int, str, str]:
    rank = row.severity.rank if row.severity is not None else -1
    changed = sum(row.counts.get(k, 0) for k in _KINDS)
    return (-rank, -changed, row.container.node, row.container.label)


def _member_key(container: ScannedContainer) -> str:
    return f"{container.node}/{container.key}"


def _container_dict(container: ScannedContainer) -> dict[str, Any]:
    data = asdict(container)
    data["key"] = container.key
    data["label"] = container.label
    return data


def _row_dict(row: Row) -> dict[str, Any]:
    return {
        "container": _container_dict(row.container),
        "severity": row.severity.value if row.severity is not None else None,
        "counts": dict(row.counts),
        "top": row.top,
        "outliers": [list(k) for k in row.outliers],
        "error": row.error,
        "bundle": row.bundle,
    }


def _frame_row(row: Row) -> dict[str, Any]:
    c = row.container
    return {
        "node": c.node,
        "runtime": c.runtime,
        "container": c.label,
        "id": c.id,
        "image": c.image,
        "group": c.group,
        "severity": row.severity.value if row.severity is not None else None,
        **{k: row.counts.get(k, 0) for k in _KINDS},
        "outliers": len(row.outliers),
        "top": row.top,
        "error": row.error,
    }


def read_records(lines: Iterable[str], where: str) -> Iterator[ContainerResult | NodeRun]:
    """The results and node runs of a scan's JSON Lines; a line that is not one of its
    records raises ValueError naming ``where`` and the line number."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if data.get("schema") != SCHEMA:
                raise ValueError(f"not a {SCHEMA} record")
            if data["record"] == "container":
                yield _result_from(data)
            elif data["record"] == "summary":
                yield from (_node_from(node) for node in data["nodes"])
            else:
                raise ValueError(f"unknown record {data['record']!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where}:{number}: not a drifttools scan record: {exc}") from exc


def _result_from(data: Mapping[str, Any]) -> ContainerResult:
    c = dict(data["container"])
    pod = c.get("pod")
    container = ScannedContainer(
        node=c["node"],
        runtime=c["runtime"],
        id=c["id"],
        name=c["name"],
        image=c.get("image"),
        image_id=c.get("image_id", ""),
        group=c["group"],
        namespace=c.get("namespace"),
        pod=PodRef(pod["namespace"], pod["pod"], pod["container"]) if pod else None,
    )
    report = report_from_dict(data["report"]) if data.get("report") else None
    return ContainerResult(
        container, report, data.get("error"), data.get("bundle"), data.get("seconds", 0.0)
    )


def _node_from(data: Mapping[str, Any]) -> NodeRun:
    engines = tuple(EngineState(**engine) for engine in data["engines"])
    return NodeRun(
        data["node"],
        data["started_at"],
        data["finished_at"],
        engines,
        data["selected"],
        data.get("interrupted", False),
    )
