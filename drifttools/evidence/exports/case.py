"""CASE/UCO JSON-LD (CASE 1.x, UCO 1.x): the acquisition as an investigative action.

The graph holds the tool, the operator (when named), one
``case-investigation:InvestigativeAction`` (start and end times, what it was
performed on, its results), a ``uco-observable:File`` per drifted path (file
facet with times, content facet with the SHA-256) and a ``uco-observable:Process``
per process, linked to its executable. It validates with ``case_validate`` from
NIST's ``case-utils``. Identifiers are UUIDv5 of the container id and the path
(or pid and start time), so the same evidence gives the same graph.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from drifttools.clock import rfc3339_ns
from drifttools.evidence.report_read import ns_from_rfc3339
from drifttools.models import ChangeKind, DriftReport, FileFacts, ProcessRecord
from drifttools.text import printable
from drifttools.version import __version__

CONTEXT = {
    "kb": "urn:drifttools:kb:",
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
_NAMESPACE = uuid.UUID("6f0a3c52-8a57-4d0e-9c55-5d1f0e7b2a10")


class _Graph:
    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.nodes: list[dict[str, Any]] = []

    def iri(self, kind: str, *key: object) -> str:
        name = "\0".join([self.scope, kind, *map(str, key)])
        return f"kb:{kind}-{uuid.uuid5(_NAMESPACE, name)}"


def _time(ns: int | None) -> dict[str, str] | None:
    text = rfc3339_ns(ns)
    return None if text is None else {"@type": "xsd:dateTime", "@value": text}


def _integer(value: int) -> dict[str, str]:
    return {"@type": "xsd:integer", "@value": str(value)}


def _file_node(graph: _Graph, key: tuple, path: str, facts: FileFacts | None, note: str) -> str:
    iri = graph.iri("file", *key)
    facet: dict[str, Any] = {
        "@id": graph.iri("file-facet", *key),
        "@type": "uco-observable:FileFacet",
        "uco-observable:fileName": printable(posixpath.basename(path) or path),
        "uco-observable:filePath": printable(path),
    }
    facets = [facet]
    if facts is not None:
        facet["uco-observable:isDirectory"] = facts.kind == "dir"
        facet["uco-observable:sizeInBytes"] = _integer(facts.size)
        for prop, ns in (
            ("modifiedTime", facts.mtime_ns),
            ("accessedTime", facts.atime_ns),
            ("metadataChangeTime", facts.ctime_ns),
            ("observableCreatedTime", facts.btime_ns),
        ):
            if (value := _time(ns)) is not None:
                facet[f"uco-observable:{prop}"] = value
        if facts.sha256 is not None:
            hashes = {"SHA256": facts.sha256, "MD5": facts.md5, "SHA1": facts.sha1}
            facets.append(_content_facet(graph, key, hashes, facts.size))
    graph.nodes.append(
        {
            "@id": iri,
            "@type": "uco-observable:File",
            "uco-core:description": note,
            "uco-core:hasFacet": facets,
        }
    )
    return iri


def _content_facet(
    graph: _Graph, key: tuple, hashes: Mapping[str, str | None], size: int | None
) -> dict[str, Any]:
    """The content facet with a ``Hash`` for each known digest, by UCO's method names
    (``SHA256``, ``MD5``, ``SHA1``)."""
    facet: dict[str, Any] = {
        "@id": graph.iri("content-facet", *key),
        "@type": "uco-observable:ContentDataFacet",
        "uco-observable:hash": [
            {
                "@id": graph.iri("hash", *key)
                if method == "SHA256"
                else graph.iri("hash", *key, method),
                "@type": "uco-types:Hash",
                "uco-types:hashMethod": method,
                "uco-types:hashValue": {"@type": "xsd:hexBinary", "@value": value},
            }
            for method, value in hashes.items()
            if value is not None
        ],
    }
    if size is not None:
        facet["uco-observable:sizeInBytes"] = _integer(size)
    return facet


def _exe_hashes(process: ProcessRecord) -> dict[str, str | None]:
    return {"SHA256": process.exe_sha256, "MD5": process.exe_md5, "SHA1": process.exe_sha1}


def _process_node(graph: _Graph, process: ProcessRecord) -> str:
    key = ("process", process.pid, process.start_ticks)
    facet: dict[str, Any] = {
        "@id": graph.iri("process-facet", *key),
        "@type": "uco-observable:ProcessFacet",
        "uco-observable:pid": _integer(process.pid),
        "uco-observable:arguments": [printable(arg) for arg in process.cmdline],
    }
    if (started := _time(ns_from_rfc3339(process.started_at))) is not None:
        facet["uco-observable:observableCreatedTime"] = started
    if process.exe is not None:
        exe_key = ("exe", process.pid, process.start_ticks)
        exe = _file_node(graph, exe_key, process.exe, None, f"executable ({process.exe_state})")
        if process.exe_sha256 is not None:
            node = graph.nodes[-1]
            node["uco-core:hasFacet"].append(
                _content_facet(graph, exe_key, _exe_hashes(process), process.exe_size)
            )
        facet["uco-observable:binary"] = {"@id": exe}
    iri = graph.iri("process", process.pid, process.start_ticks)
    graph.nodes.append(
        {
            "@id": iri,
            "@type": "uco-observable:Process",
            "uco-core:description": printable(f"{process.comm} (tags: {', '.join(process.tags)})"),
            "uco-core:hasFacet": [facet],
        }
    )
    return iri


def document(report: DriftReport, acquisition: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The CASE JSON-LD document of ``report`` (and of the bundle's acquisition record)."""
    acquisition = acquisition or {}
    graph = _Graph(report.target.id)
    tool = graph.iri("tool", "drifttools", __version__)
    graph.nodes.append(
        {
            "@id": tool,
            "@type": "uco-tool:Tool",
            "uco-core:name": "drifttools",
            "uco-tool:version": acquisition.get("tool", {}).get("version", __version__),
        }
    )
    results = []
    for change in report.changes:
        note = change.change.value
        if change.change is ChangeKind.DELETED:
            note += " (the image's facts)"
        if change.facts.kind == "symlink" and change.facts.target is not None:
            note += f"; symlink to {printable(change.facts.target)}"
        if change.tags:
            note += f"; tags: {', '.join(printable(t) for t in change.tags)}"
        results.append(_file_node(graph, ("path", change.path), change.path, change.facts, note))
    results += [_process_node(graph, process) for process in report.processes]

    name = printable(report.target.name or report.target.id)
    action: dict[str, Any] = {
        "@id": graph.iri("action", acquisition.get("started_at") or report.acquired_at),
        "@type": "case-investigation:InvestigativeAction",
        "uco-core:name": "drifttools acquisition",
        "uco-core:description": f"drift of {report.target.runtime} container {name}"
        f" ({report.target.id}) against its image",
        "uco-action:instrument": {"@id": tool},
        "uco-action:result": [{"@id": iri} for iri in results],
    }
    start = acquisition.get("started_at") or report.acquired_at
    action["uco-action:startTime"] = {"@type": "xsd:dateTime", "@value": start}
    if acquisition.get("finished_at"):
        action["uco-action:endTime"] = {
            "@type": "xsd:dateTime",
            "@value": acquisition["finished_at"],
        }
    if acquisition.get("operator"):
        operator = graph.iri("identity", acquisition["operator"])
        graph.nodes.append(
            {
                "@id": operator,
                "@type": "uco-identity:Identity",
                "uco-core:name": printable(acquisition["operator"]),
            }
        )
        action["uco-action:performer"] = {"@id": operator}
    graph.nodes.append(action)
    if acquisition.get("case_id"):
        graph.nodes.append(
            {
                "@id": graph.iri("investigation", acquisition["case_id"]),
                "@type": "case-investigation:Investigation",
                "uco-core:name": printable(acquisition["case_id"]),
                "uco-core:object": [{"@id": action["@id"]}],
            }
        )
    return {"@context": CONTEXT, "@graph": graph.nodes}


def lines(report: DriftReport, acquisition: Mapping[str, Any] | None = None) -> Iterator[str]:
    """The CASE document as JSON text, one line per line of its indented form."""
    yield from json.dumps(document(report, acquisition), indent=2, ensure_ascii=False).split("\n")
