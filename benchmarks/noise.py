"""The noise figure: what a responder is shown for everyday operations and for attacks.

    .venv/bin/python benchmarks/noise.py

On the Debian bookworm test image (:mod:`tests.debian`: debootstrap + docker import, a
pip-installed Python application layer), one fresh container a scenario: pristine, each
everyday operation, all of them together, each attack step, all of them together. Each row
counts what the classified report puts in front of a responder (changes, processes and
package records) by severity, and its highest. For attacks, "caught" says whether the
step's trace is high or above with its ATT&CK id. Printed as a Markdown table (quoted in
docs/severity.md). Not a test: no assertion.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import drifttools
from drifttools import LayerCache, Severity
from drifttools.options import BaselineOptions
from tests import debian
from tests.engine import docker, unique

LEVELS = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO]


def run(image: str, script: str | None, cache: LayerCache) -> drifttools.DriftReport:
    name = unique("drifttools-noise")
    docker("run", "-d", "--name", name, image)
    try:
        if script:
            debian.drift(name, script)
        return drifttools.diff(name, baseline=BaselineOptions(cache=cache))
    finally:
        docker("rm", "-f", name, check=False)


def counts(report: drifttools.DriftReport) -> dict[Severity, int]:
    subjects = [*report.changes, *report.processes, *report.packages]
    return {level: sum(1 for s in subjects if s.severity is level) for level in LEVELS}


def caught(report: drifttools.DriftReport, path: str, technique: str) -> str:
    change = next((c for c in report.changes if c.path == path), None)
    if change is None:
        return "no (not drifted)"
    if change.severity.rank >= Severity.HIGH.rank and technique in change.attack:
        return f"yes: {change.severity.value} {technique}"
    return f"NO: {change.severity.value} {','.join(change.attack) or '-'}"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="drifttools-noise-") as work:
        image = debian.build_app(Path(work) / "context")
        cache = LayerCache(Path(work) / "cache")
        attacks = {name: step for name, (step, _, _) in debian.ATTACKS.items()}
        scenarios: list[tuple[str, str, str | None]] = [("pristine", "pristine", None)]
        scenarios += [(name, "benign", script) for name, script in debian.BENIGN.items()]
        everyday = " && ".join(debian.BENIGN.values())
        scenarios += [("all of the above, in one container", "benign", everyday)]
        scenarios += [(name, "attack", step) for name, step in attacks.items()]
        scenarios += [("every attack, in one container", "attack", " && ".join(attacks.values()))]
        print("| scenario | kind | critical | high | medium | low | info | highest | caught |")
        print("|---|---|--:|--:|--:|--:|--:|---|---|")
        try:
            for name, kind, script in scenarios:
                report = run(image, script, cache)
                found = counts(report)
                verdict = ""
                if name in debian.ATTACKS:
                    _, path, technique = debian.ATTACKS[name]
                    verdict = caught(report, path, technique)
                cells = [name, kind, *(str(found[level]) for level in LEVELS)]
                cells += [report.highest_severity.value, verdict]
                print("| " + " | ".join(cells) + " |", flush=True)
        finally:
            docker("rmi", "-f", image, check=False)


if __name__ == "__main__":
    main()
