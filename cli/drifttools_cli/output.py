"""The report's formats for machines (JSON, JSON Lines, CycloneDX): no rich here, so that a
``--format json`` run never loads the table renderer (:mod:`drifttools_cli.render`)."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum

from drifttools import DriftReport
from drifttools.evidence.report import report_json_chunks, report_to_jsonl


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    CYCLONEDX = "cyclonedx"  # the packages added, removed, upgraded: an SBOM


def machine_text(report: DriftReport, output: OutputFormat) -> Iterator[str]:
    """The report as JSON (one document) or JSON Lines, or its package changes as CycloneDX,
    in pieces to write as they come (a big report is never held as one string)."""
    if output is OutputFormat.JSON:
        yield from report_json_chunks(report)
        yield "\n"
    elif output is OutputFormat.CYCLONEDX:
        from drifttools.evidence.sbom import cyclonedx_json

        yield cyclonedx_json(report) + "\n"
    else:
        for line in report_to_jsonl(report):
            yield line + "\n"
