"""The terminal table of a big drift is drawn for people (capped, the rest counted), and
the machine formats of the same report are whole and fast enough to be the way to see all."""

from __future__ import annotations

import gc
import io
import json
from dataclasses import replace

from drifttools_cli.render import draw_table
from rich.console import Console

from drifttools.evidence.report import report_to_dict, report_to_json, report_to_jsonl
from drifttools.models import DriftReport
from tests.reports import assert_valid_report, synthetic_report


def _drawn(report: DriftReport, rows: int = 50) -> str:
    console = Console(
        file=io.StringIO(), force_terminal=True, color_system=None, width=200, highlight=False
    )
    draw_table(report, console, rows=rows)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_a_big_drift_is_capped_highest_severity_first_and_the_rest_counted() -> None:
    report = synthetic_report(3000)
    text = _drawn(report)
    lines = text.splitlines()
    assert len(lines) < 70
    rows = [line.split()[0] for line in lines[2:52]]
    highs = sum(1 for c in report.changes if c.severity.value == "high")
    assert rows[:highs] == ["high"] * highs and rows[highs] == "medium"
    more = next(line for line in lines if line.startswith("... and"))
    assert "2,950 more changes" in more and "use --format json" in more
    assert "2,700 info" in more and "/app/node_modules 2,950" in more
    assert "1000 added" in text  # the summary still counts everything


def test_a_small_drift_is_drawn_whole() -> None:
    text = _drawn(synthetic_report(40))
    assert "more changes" not in text
    assert text.count("/app/node_modules/") == 40


def test_a_baseline_only_verified_by_the_cache_says_so() -> None:
    report = synthetic_report(1)
    by_cache = replace(report.baseline[0], verified=False, source="verified-by-cache")
    text = _drawn(replace(report, baseline=(by_cache,)))
    assert "verified by cache only" in text and "NOT VERIFIED" not in text
    broken = replace(by_cache, problems=("diff_id mismatch",))
    assert "NOT VERIFIED" in _drawn(replace(report, baseline=(broken,)))


def test_json_and_jsonl_of_a_big_report_are_the_whole_document() -> None:
    report = synthetic_report(5000)
    document = json.loads(report_to_json(report))
    assert document == json.loads(json.dumps(report_to_dict(report)))
    assert_valid_report(document)
    records = [json.loads(line) for line in report_to_jsonl(report)]
    assert len(records) == 5001 and records[1]["path"] == document["changes"][0]["path"]
    assert json.loads(report_to_json(report, indent=None)) == document
    assert gc.isenabled()  # paused while the document is built, never left off


def test_values_the_fast_encoder_refuses_are_still_written() -> None:
    report = synthetic_report(2)
    huge = replace(report.changes[0], content={"version": 2**70})  # from a hostile package file
    document = json.loads(report_to_json(replace(report, changes=(huge, report.changes[1]))))
    assert document["changes"][0]["content"] == {"version": 2**70}
    assert document["changes"][1]["path"] == report.changes[1].path
