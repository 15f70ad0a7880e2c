"""Timeline and interchange exports, read by the tools investigators use: mactime, case_validate.

The bundle comes from the scene of :mod:`tests.evidence_scene` (a fileless memfd process, a
dropped binary, a file with a hostile name); synthetic reports pin the escaping rules.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from drifttools_cli.evidence import export as export_command

from drifttools import AcquisitionOptions, bundle, diff, open_bundle
from drifttools.evidence.exports import export_lines
from drifttools.evidence.exports.bodyfile import escape, mode_string
from drifttools.models import Change, ChangeKind, DriftReport, FileFacts, Target
from drifttools.options import BaselineOptions, BundleOptions
from tests.engine import BUSYBOX_MD5, BUSYBOX_SHA1, BUSYBOX_SHA256
from tests.evidence_scene import HOSTILE

CASE_VALIDATE = shutil.which("case_validate") or str(
    Path(__file__).parents[1] / ".venv" / "bin" / "case_validate"
)
DROPPED = "/tmp/busybox.drop"
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def sealed_bundle(evidence_scene: dict) -> Path:
    target = evidence_scene["work"] / "exports.tar"
    bundle(
        evidence_scene["name"],
        target,
        baseline=BaselineOptions(cache=evidence_scene["cache"]),
        evidence=BundleOptions(operator="bob", case_id="IR-7"),
    )
    return target


def _export(source: str, fmt: str, out: Path) -> str:
    result = CliRunner().invoke(export_command, [source, "--to", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text()


def test_mactime_reads_the_bodyfile(sealed_bundle: Path, tmp_path: Path) -> None:
    body = _export(str(sealed_bundle), "bodyfile", tmp_path / "body.txt")
    lines = body.splitlines()
    assert all(len(line.split("|")) == 11 for line in lines)  # no name splits a line
    with open_bundle(sealed_bundle) as opened:
        dropped = next(c for c in opened.report.changes if c.path == DROPPED).after
    assert dropped is not None
    fields = next(line for line in lines if line.split("|")[1] == DROPPED).split("|")
    assert fields[0] == BUSYBOX_MD5 and fields[2] == str(dropped.inode)
    assert fields[3] == "r/rrwxr-xr-x" and fields[6] == str(dropped.size)
    assert int(fields[8]) == dropped.mtime_ns // SECOND
    assert int(fields[7]) == dropped.atime_ns // SECOND
    assert "/tmp/link -> /etc/passwd" in {line.split("|")[1] for line in lines}

    timeline = subprocess.run(
        ["mactime", "-b", str(tmp_path / "body.txt"), "-d", "-y", "-z", "UTC"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = list(csv.reader(io.StringIO(timeline)))
    assert rows[0][:3] == ["Date", "Size", "Type"]
    names = {row[7] for row in rows[1:]}
    assert DROPPED in names
    # the hostile name arrives escaped: no escape byte, no pipe, no percent decoding
    [hostile] = [name for name in names if name.startswith("/tmp/pi")]
    assert hostile == "/tmp/pi\\x7cpe\\x2541\\x1b[2J"
    assert "\x1b" not in timeline


def test_timesketch_lines(sealed_bundle: Path, tmp_path: Path) -> None:
    text = _export(str(sealed_bundle), "timesketch", tmp_path / "events.jsonl")
    events = [json.loads(line) for line in text.splitlines()]
    for event in events:
        assert {"message", "datetime", "timestamp_desc", "timestamp"} <= event.keys()
        assert "\x1b" not in event["message"]
    dropped = [e for e in events if e.get("path") == DROPPED]
    kinds = [e["timestamp_desc"] for e in dropped]
    modified, accessed = "Content Modification Time", "Last Access Time"
    changed = "Metadata Modification Time"
    assert {modified, accessed, changed} <= set(kinds)
    assert len(set(kinds)) == len(kinds) and all(e["sha256"] == BUSYBOX_SHA256 for e in dropped)
    assert all((e["md5"], e["sha1"]) == (BUSYBOX_MD5, BUSYBOX_SHA1) for e in dropped)
    started = [e for e in events if e.get("data_type") == "drifttools:process"]
    memfd = next(e for e in started if e["exe_state"] == "memfd")
    assert memfd["exe_sha256"] == BUSYBOX_SHA256 and memfd["timestamp_desc"] == "Start Time"
    assert (memfd["exe_md5"], memfd["exe_sha1"]) == (BUSYBOX_MD5, BUSYBOX_SHA1)
    hostile = next(e for e in events if e.get("path") == HOSTILE)
    assert "\\x1b[2J" in hostile["message"]


def test_case_validate_accepts_the_case_export(sealed_bundle: Path, tmp_path: Path) -> None:
    _export(str(sealed_bundle), "case", tmp_path / "case.jsonld")
    graph = json.loads((tmp_path / "case.jsonld").read_text())["@graph"]
    types = {node["@type"] for node in graph}
    assert {"uco-observable:File", "uco-observable:Process", "uco-tool:Tool"} <= types
    assert {"case-investigation:InvestigativeAction", "case-investigation:Investigation"} <= types
    hashes = {
        (h["uco-types:hashMethod"], h["uco-types:hashValue"]["@value"])
        for node in graph
        for facet in node.get("uco-core:hasFacet", ())
        for h in facet.get("uco-observable:hash", ())
    }
    assert {("MD5", BUSYBOX_MD5), ("SHA1", BUSYBOX_SHA1), ("SHA256", BUSYBOX_SHA256)} <= hashes
    result = subprocess.run(
        [CASE_VALIDATE, str(tmp_path / "case.jsonld")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Conforms: True" in result.stdout


def test_export_from_a_live_container(evidence_scene: dict, tmp_path: Path) -> None:
    body = _export(evidence_scene["name"], "bodyfile", tmp_path / "live.txt")
    assert DROPPED in {line.split("|")[1] for line in body.splitlines()}


def test_sha256_only_leaves_md5_and_sha1_out(evidence_scene: dict) -> None:
    both = diff(evidence_scene["name"], baseline=BaselineOptions(cache=evidence_scene["cache"]))
    fast = diff(
        evidence_scene["name"],
        acquisition=AcquisitionOptions(legacy_hashes=False),
        baseline=BaselineOptions(cache=evidence_scene["cache"]),
    )
    [with_md5] = [c.after for c in both.changes if c.path == DROPPED]
    [without] = [c.after for c in fast.changes if c.path == DROPPED]
    assert with_md5 and without and with_md5.sha256 == without.sha256 == BUSYBOX_SHA256
    assert (with_md5.md5, with_md5.sha1) == (BUSYBOX_MD5, BUSYBOX_SHA1)
    assert (without.md5, without.sha1) == (None, None)
    assert all(p.exe_md5 is None and p.exe_sha1 is None for p in fast.processes)
    assert {p.exe_md5 for p in both.processes if p.exe_sha256 == BUSYBOX_SHA256} == {BUSYBOX_MD5}
    body = {line.split("|")[1]: line.split("|")[0] for line in export_lines(fast, "bodyfile")}
    assert body[DROPPED] == "0"


def test_export_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(export_command, ["no-such-container-xyz", "--to", "case"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def _facts(kind: str, mode: int, **more: object) -> FileFacts:
    return FileFacts(kind, mode, 0, 0, 3, 5 * SECOND + 7, **more)  # type: ignore[arg-type]


def test_bodyfile_escaping_and_kinds() -> None:
    assert escape("a|b%41\\x01\x1b\n\u202e") == "a\\x7cb\\x2541\\x01\\x1b\\x0a\\u202e"
    assert mode_string(_facts("file", 0o4755)) == "r/rrwsr-xr-x"
    assert mode_string(_facts("dir", 0o1777)) == "d/drwxrwxrwt"
    assert mode_string(_facts("symlink", 0o777)) == "l/lrwxrwxrwx"
    changes = (
        Change("/x|y", ChangeKind.ADDED, None, _facts("file", 0o644, btime_ns=9 * SECOND)),
        Change("/l", ChangeKind.ADDED, None, _facts("symlink", 0o777, target="/a|\x1b")),
        Change("/gone", ChangeKind.DELETED, _facts("file", 0o600), None),
    )
    report = DriftReport(Target("offline", "x"), "2026-01-01T00:00:00Z", (), changes)
    assert list(export_lines(report, "bodyfile")) == [
        "0|/x\\x7cy|0|r/rrw-r--r--|0|0|3|0|5|0|9",
        "0|/l -> /a\\x7c\\x1b|0|l/lrwxrwxrwx|0|0|3|0|5|0|0",
        "0|/gone (deleted)|0|r/rrw-------|0|0|3|0|5|0|0",
    ]
