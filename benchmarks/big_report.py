"""Rendering a big drift: the terminal table and JSON for 200k changes.

    .venv/bin/python benchmarks/big_report.py [CHANGES]

A synthetic classified report (:func:`tests.reports.synthetic_report`, node_modules-sized
drift) is drawn as the terminal table (into a terminal-sized console, not a pipe) and
written as JSON and JSON Lines. Printed: wall and CPU seconds for each, and for comparison
``json.dumps`` of the same document with ``indent=2`` (what a user scripting it would
write). Not a test.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable

from drifttools_cli.render import draw_table
from rich.console import Console

from drifttools.evidence.report import report_to_dict, report_to_json, report_to_jsonl
from tests.reports import synthetic_report


def seconds(work: Callable[[], object]) -> str:
    """Wall and CPU seconds of ``work`` (the CPU figure holds on a busy machine too)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return f"{time.perf_counter() - wall:7.2f} s wall {time.process_time() - cpu:7.2f} s cpu"


def main() -> None:
    changes = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    report = synthetic_report(changes)
    console = Console(file=io.StringIO(), force_terminal=True, width=160, highlight=False)
    table = seconds(lambda: draw_table(report, console))
    lines = console.file.getvalue().count("\n")  # type: ignore[attr-defined]
    as_json = seconds(lambda: report_to_json(report))
    as_jsonl = seconds(lambda: list(report_to_jsonl(report)))
    plain = seconds(lambda: json.dumps(report_to_dict(report), indent=2, ensure_ascii=False))
    print(f"{changes} changes")
    print(f"table: {table}  ({lines} lines)")
    print(f"json:  {as_json}")
    print(f"jsonl: {as_jsonl}")
    print(f"json.dumps(report_to_dict(), indent=2), for comparison: {plain}")


if __name__ == "__main__":
    main()
