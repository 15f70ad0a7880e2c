"""The cluster view: many nodes' scan records (from any fsspec URL) read back into one
:class:`~drifttools.fleet.records.Summary`, replicas compared across nodes.

The comparison is the node scan's own (:func:`~drifttools.fleet.records.summarize_results`):
a pod template's replicas on different nodes are one group, so drift that only one of them
has, on whichever node, is its outlier.
"""

from __future__ import annotations

from collections.abc import Iterable

from drifttools.errors import OutputError
from drifttools.fleet.records import (
    ContainerResult,
    NodeRun,
    Summary,
    read_records,
    summarize_results,
)
from drifttools.fleet.store import read_lines


def summarize(urls: Iterable[str] | str) -> Summary:
    """One view of the scan records at ``urls`` (files, objects, globs: ``s3://b/*/scan.jsonl``).

    Raises :class:`~drifttools.errors.OutputError` when a URL names nothing, cannot be read,
    or holds something else than scan records. ``.to_pandas()`` of the result is one row
    per container, for notebooks.
    """
    results: list[ContainerResult] = []
    nodes: list[NodeRun] = []
    for url, lines in read_lines([urls] if isinstance(urls, str) else urls):
        try:
            for record in read_records(lines, url):
                if isinstance(record, NodeRun):
                    nodes.append(record)
                else:
                    results.append(record)
        except ValueError as exc:
            raise OutputError(str(exc)) from exc
    return summarize_results(results, nodes)
