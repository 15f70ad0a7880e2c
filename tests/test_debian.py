"""Drift on a real Debian bookworm image (debootstrap, docker import, a pip-installed Python
application layer; see :mod:`tests.debian`), on the real engine, libmagic and YARA.

Pristine, a container is quiet; the operations people do every day in one stay below high
and name every package they installed or upgraded, with its purl; every step of an intruder
is high or above with its ATT&CK id, a trojan under a merged-/usr alias and one inside a
package installed at runtime included.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from drifttools_cli.render import draw_table
from packageurl import PackageURL
from rich.console import Console

import drifttools
from drifttools import LayerCache, RecordCheck, Severity
from drifttools.evidence.report_read import report_from_dict
from drifttools.options import BaselineOptions
from tests import debian
from tests.command import EXE
from tests.engine import Engine, docker, unique
from tests.reports import assert_valid_report


@pytest.fixture(scope="module")
def app_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tag = debian.build_app(tmp_path_factory.mktemp("debian-app"))
    yield tag
    docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> LayerCache:
    return LayerCache(tmp_path_factory.mktemp("debian-cache"))


@contextmanager
def _scenario(
    image: str, script: str | None, cache: LayerCache
) -> Iterator[tuple[str, drifttools.DriftReport]]:
    """A container of ``image`` drifted by ``script``, and its classified report."""
    name = unique("drifttools-debian")
    docker("run", "-d", "--name", name, image)
    try:
        if script:
            debian.drift(name, script)
        report = drifttools.diff(name, baseline=BaselineOptions(cache=cache))
        assert_valid_report(report.to_dict())
        yield name, report
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def pristine(app_image: str, cache: LayerCache) -> Iterator[drifttools.DriftReport]:
    with _scenario(app_image, None, cache) as (_, report):
        yield report


@pytest.fixture(scope="module")
def benign(app_image: str, cache: LayerCache) -> Iterator[tuple[str, drifttools.DriftReport]]:
    with _scenario(app_image, " && ".join(debian.BENIGN.values()), cache) as found:
        yield found


@pytest.fixture(scope="module")
def attacked(app_image: str, cache: LayerCache) -> Iterator[drifttools.DriftReport]:
    steps = " && ".join(step for step, _, _ in debian.ATTACKS.values())
    with _scenario(app_image, steps, cache) as (_, report):
        yield report


def _loud(report: drifttools.DriftReport, level: Severity) -> list[tuple]:
    """Every change, process and package at ``level`` or above, with why."""
    found = [(c.path, c.severity, [f.rule for f in c.findings]) for c in report.changes]
    found += [(p.exe, p.severity, list(p.tags)) for p in report.processes]
    found += [(p.name, p.severity, list(p.mismatched)) for p in report.packages]
    return [subject for subject in found if subject[1].rank >= level.rank]


def test_a_pristine_container_is_quiet(pristine: drifttools.DriftReport) -> None:
    assert _loud(pristine, Severity.MEDIUM) == []
    assert pristine.packages == () and pristine.processes  # the application runs


def test_everyday_operations_stay_below_high(benign: tuple[str, drifttools.DriftReport]) -> None:
    _, report = benign
    assert _loud(report, Severity.HIGH) == []
    assert report.changes and any(c.severity is Severity.MEDIUM for c in report.changes)
    document = report.to_dict()
    assert report_from_dict(json.loads(json.dumps(document))).to_dict() == document


def test_the_table_tells_runtime_package_drift_under_its_package(
    benign: tuple[str, drifttools.DriftReport],
) -> None:
    _, report = benign
    console = Console(width=400, record=True, file=io.StringIO())
    draw_table(report, console)
    text = console.export_text()
    procps = next(p for p in report.packages if p.name == "procps")
    [line] = [line for line in text.splitlines() if procps.purl in line]
    assert line.startswith("medium package dpkg procps added - -> ")
    assert "/usr/bin/ps " not in text and "/etc/init.d/procps " in text


def _deb_purl(fields: dict[str, str]) -> str:
    qualifiers = {"arch": fields["architecture"]}
    return PackageURL("deb", "debian", fields["name"], fields["version"], qualifiers).to_string()


def test_every_package_installed_or_upgraded_is_named_with_its_purl(
    benign: tuple[str, drifttools.DriftReport],
) -> None:
    _, report = benign
    records = {(p.manager, p.name): p for p in report.packages}
    inputs = debian.inputs()
    for change, directory in (("added", "install"), ("upgraded", "upgrade")):
        for fields in debian.deb_fields(inputs / "debs" / directory):
            record = records[("dpkg", fields["name"])]
            assert (record.change, record.after) == (change, fields["version"]), record
            assert (record.architecture, record.purl) == (fields["architecture"], _deb_purl(fields))
            if change == "upgraded":
                assert record.before is not None
                newer = ["dpkg", "--compare-versions", record.after, "gt", record.before]
                assert subprocess.run(newer, check=False).returncode == 0
            assert record.files and record.mismatched == ()
    six = records[("python", "six")]
    assert (six.change, six.before, six.after) == ("upgraded", "1.16.0", "1.17.0")
    assert (six.purl, six.location) == ("pkg:pypi/six@1.17.0", debian.SITE)
    charset = records[("python", "charset-normalizer")]
    assert (charset.change, charset.purl) == ("added", "pkg:pypi/charset-normalizer@3.3.2")
    assert not any(name == "procps:amd64" or ":" in name for _, name in records)


def test_runtime_package_files_are_its_own_and_capped(
    benign: tuple[str, drifttools.DriftReport],
) -> None:
    _, report = benign
    changes = {c.path: c for c in report.changes}
    for path in ("/usr/bin/ps", "/usr/bin/kill", "/usr/sbin/sysctl", "/usr/bin/top"):
        change = changes[path]
        assert change.provenance is not None and change.provenance.package is not None
        assert change.provenance.package.name == "procps" and change.provenance.runtime_drift
        assert "unowned" not in change.tags and "runtime-package" in change.tags
    init = changes["/etc/init.d/procps"]
    assert init.severity is Severity.MEDIUM and "T1543" in init.attack
    gai = changes["/etc/gai.conf"]
    assert gai.provenance is not None and gai.provenance.record is RecordCheck.CONFFILE_EDITED
    assert gai.severity is Severity.LOW
    normalizer = changes["/usr/local/bin/normalizer"].provenance
    assert normalizer is not None and normalizer.record is RecordCheck.MATCH
    assert normalizer.package is not None and normalizer.package.name == "charset-normalizer"
    processes = {p.exe: p for p in report.processes}
    top = processes["/usr/bin/top"]
    assert top.severity is Severity.MEDIUM and "runtime-package" in top.tags
    assert {f.rule for f in top.findings} == {
        "process.exe-not-in-image",
        "process.library-not-in-image",
    }


def test_every_attack_is_high_with_its_attack_id(attacked: drifttools.DriftReport) -> None:
    changes = {c.path: c for c in attacked.changes}
    for attack, (_, path, technique) in debian.ATTACKS.items():
        change = changes[path]
        assert change.severity.rank >= Severity.HIGH.rank, (attack, change.findings)
        assert technique in change.attack, (attack, change.attack)
    alias = changes["/usr/bin/ls"].provenance
    assert alias is not None and (alias.listed_as, alias.record) == (
        "/bin/ls",
        RecordCheck.MISMATCH,
    )
    library = changes["/usr/lib/x86_64-linux-gnu/libpam.so.0.85.1"].provenance
    assert library is not None and library.listed_as == "/lib/x86_64-linux-gnu/libpam.so.0.85.1"
    jq = changes["/usr/bin/jq"].provenance
    assert jq is not None and jq.runtime and jq.record is RecordCheck.MISMATCH
    [miner] = [p for p in attacked.processes if p.exe == "/tmp/kworkerd"]
    assert miner.severity is Severity.CRITICAL and "T1105" in miner.attack
    coreutils = next(p for p in attacked.packages if p.name == "coreutils")
    assert coreutils.change == "modified" and coreutils.severity is Severity.HIGH
    assert set(coreutils.mismatched) == {"/usr/bin/id", "/usr/bin/ls"}


def test_cyclonedx_lists_the_package_changes(
    benign: tuple[str, drifttools.DriftReport], tmp_path: Path
) -> None:
    name, report = benign
    out = tmp_path / "sbom.json"
    result = subprocess.run(
        [EXE, "diff", name, "--format", "cyclonedx", "-o", str(out), "--no-yara"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # drift
    text = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["metadata"]["component"]["type"] == "container"
    listed = {c["purl"]: c for c in bom["components"]}
    assert set(listed) == {p.purl for p in report.packages if p.change != "modified"}
    six = listed["pkg:pypi/six@1.17.0"]
    properties = {p["name"]: p["value"] for p in six["properties"]}
    assert properties["drifttools:change"] == "upgraded"
    assert properties["drifttools:before"] == "1.16.0"
