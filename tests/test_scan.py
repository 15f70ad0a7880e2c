"""``scan`` on one node: the machine's Docker Engine, replicas of the busybox test image.

The pure parts (replica comparison, filters, pod templates, the fsspec store, reading
records back) are tested without the engine; the rest with real containers drifted by
``docker exec`` (the test is the actor; drifttools never execs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import drifttools
from drifttools import ContainerResult, ScanFilter, Severity, Summary
from drifttools.errors import OutputError
from drifttools.fleet.records import read_records, summarize_results
from drifttools.fleet.replicas import Member, compare, raised
from drifttools.fleet.select import PodRef, pod_template
from drifttools.fleet.store import ObjectStore, placeholders
from drifttools.models import Change, ChangeKind, DriftReport, Target
from drifttools.options import BaselineOptions
from drifttools.pipeline import RunOptions
from drifttools.scan import ImageBaselines
from tests.command import EXE, one_clear_line
from tests.engine import Engine, docker, unique
from tests.reports import assert_valid_report

# pure


def _report(*paths: tuple[str, Severity]) -> DriftReport:
    changes = tuple(
        Change(path, ChangeKind.ADDED, None, None, severity=level) for path, level in paths
    )
    return DriftReport(Target("docker", "x"), "2026-01-01T00:00:00Z", (), changes)


def test_replicas_share_common_drift_and_the_odd_one_is_raised() -> None:
    common = ("/tmp/cache", Severity.LOW)
    members = [
        Member("a", "web", _report(common)),
        Member("b", "web", _report(common)),
        Member("c", "web", _report(common, ("/etc/cron.d/x", Severity.MEDIUM))),
        Member("d", "db", _report(("/tmp/alone", Severity.LOW))),
        Member("e", "web", None),  # not scanned: not compared
    ]
    groups, standings = compare(members)
    assert [(g.key, g.members) for g in groups] == [("web", ("a", "b", "c"))]
    assert groups[0].common == (("/", "/tmp/cache", "added"),)
    assert standings["c"].outliers == (("/", "/etc/cron.d/x", "added"),)
    assert standings["c"].severity is Severity.HIGH  # medium, raised: only it has it
    assert standings["a"].outliers == () and standings["a"].severity is Severity.LOW
    assert standings["d"].outliers == ()  # alone in its group: nothing to compare with
    assert "e" not in standings
    assert raised(Severity.CRITICAL) is Severity.CRITICAL


def test_filters_and_pod_templates() -> None:
    assert pod_template(PodRef("prod", "web-7d4b9c-x2x9q", "app")) == "web-7d4b9c"
    assert pod_template(PodRef("p", "web-7d4b9c-x2x9q", "a"), {"pod-template-hash": "7d4b9c"}) == (
        "web@7d4b9c"
    )
    with pytest.raises(ValueError, match="unknown runtime"):
        ScanFilter(runtimes=("podman",))


def test_one_baseline_per_image_even_when_asked_at_once() -> None:
    baselines = ImageBaselines()
    made = []

    def make() -> object:
        made.append(1)
        time.sleep(0.2)
        return object()

    got: list[object] = []
    threads = [
        threading.Thread(target=lambda: got.append(baselines.get(("img",), make)))  # type: ignore[arg-type]
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and len({id(g) for g in got}) == 1


def test_store_writes_whole_objects_only(tmp_path: Path) -> None:
    assert placeholders("s3://b/{node}/{container}.jsonl") == {"node", "container"}
    with pytest.raises(OutputError, match="unknown placeholder"):
        placeholders("file:///x/{pod}.jsonl")
    store = ObjectStore(f"file://{tmp_path}/{{node}}/scan.jsonl", "node/1")
    store.check()
    url = store.write_lines(store.url(), ["a", "b"])
    assert Path(url.removeprefix("file://")).read_text() == "a\nb\n"
    assert url.endswith("/node_1/scan.jsonl")

    def broken() -> Iterator[str]:
        yield "a"
        raise RuntimeError("the scan died mid-write")

    with pytest.raises(RuntimeError):
        store.write_lines(f"file://{tmp_path}/half.jsonl", broken())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node_1"]
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        ObjectStore(f"file://{tmp_path}/file/{{node}}.jsonl", "n").check()


def test_records_read_back_and_bad_ones_are_named() -> None:
    with pytest.raises(ValueError, match=r"x\.jsonl:2"):
        list(
            read_records(
                [
                    '{"schema": "drifttools.scan/v1", "record": "summary", "nodes": []}',
                    '{"nope": 1}',
                ],
                "x.jsonl",
            )
        )


# one node, the real engine


@pytest.fixture(scope="module")
def replicas(busybox_image: dict, engine: Engine) -> Iterator[dict]:
    """Three replicas of the busybox image (one drifted more), a stopped one, a lone one."""
    prefix = unique("scan")
    names = [f"{prefix}-web-{i}" for i in range(3)]
    for name in names:
        docker("run", "-d", "--name", name, "--label", f"{prefix}=web", busybox_image["tag"])
        docker("exec", name, "sh", "-c", "echo cache > /tmp/cache && echo 1 > /opt/app/a")
    docker(
        "exec", names[2], "sh", "-c", "mkdir -p /root/.ssh && echo k > /root/.ssh/authorized_keys"
    )
    stopped = f"{prefix}-stopped"
    docker("run", "--name", stopped, busybox_image["tag"], "sh", "-c", "echo x > /tmp/x")
    try:
        yield {"prefix": prefix, "names": names, "stopped": stopped}
    finally:
        docker("rm", "-f", *names, stopped, check=False)


def _scan(
    pattern: str, tmp_path: Path, stopped: bool = False
) -> tuple[list[ContainerResult], Summary]:
    items = list(
        drifttools.scan(
            select=ScanFilter(runtimes=("docker",), names=(pattern,), stopped=stopped),
            options=RunOptions(baseline=BaselineOptions(cache=drifttools.LayerCache(tmp_path))),
        )
    )
    summary = items[-1]
    assert isinstance(summary, Summary)
    return [i for i in items if isinstance(i, ContainerResult)], summary


def test_scan_compares_replicas(replicas: dict, tmp_path: Path) -> None:
    results, summary = _scan(f"{replicas['prefix']}-web-*", tmp_path)
    assert sorted(r.container.name for r in results) == replicas["names"]
    running, _ = _scan(f"{replicas['prefix']}-*", tmp_path)
    assert len(running) == 3  # running only: the stopped one is left out
    for result in results:
        assert result.error is None and result.report is not None
        assert_valid_report(result.report.to_dict())
    [group] = summary.groups
    assert len(group.members) == 3
    assert ("/", "/tmp/cache", "added") in group.common
    assert ("/", "/opt/app/a", "modified") in group.common
    odd = next(r for r in summary.rows if r.container.name == replicas["names"][2])
    assert ("/", "/root/.ssh/authorized_keys", "added") in odd.outliers
    assert summary.rows[0] is odd  # most severe first
    own = next(r for r in results if r.container.name == odd.container.name)
    assert own.report is not None and odd.severity is not None
    assert odd.severity.rank == raised(own.report.highest_severity).rank
    assert summary.drifted and not summary.interrupted
    [docker_engine] = summary.nodes[0].engines
    assert docker_engine.error is None and docker_engine.listed >= 3
    again = summarize_results(results, summary.nodes)
    assert again.groups == summary.groups


def test_scan_all_takes_stopped_containers(replicas: dict, tmp_path: Path) -> None:
    results, _ = _scan(replicas["stopped"], tmp_path, stopped=True)
    [stopped] = results
    assert stopped.report is not None, stopped.error
    assert "/tmp/x" in {c.path for c in stopped.report.changes}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_cli_scan_output_and_summarize(replicas: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = _cli(
        "scan",
        "--name",
        f"{replicas['prefix']}-*",
        "--address",
        str(tmp_path / "no-containerd.sock"),  # unreachable: recorded, Docker still scanned
        "--format",
        "jsonl",
        "--output",
        f"file://{out}/{{node}}/scan.jsonl",
        "--node",
        "node-a",
        env=env,
    )
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["record"] for line in lines] == ["container"] * 3 + ["summary"]
    engines = {e["name"]: e for e in lines[-1]["nodes"][0]["engines"]}
    assert "no containerd socket" in engines["containerd"]["error"]
    written = out / "node-a" / "scan.jsonl"
    assert written.read_text().splitlines()[-1] == result.stdout.splitlines()[-1]
    table = _cli("summarize", str(written))
    assert table.returncode == 1, table.stderr
    assert "OUTLIER" in table.stdout and "common drift" in table.stdout
    frame = drifttools.summarize(f"file://{out}/*/scan.jsonl").to_pandas()
    assert len(frame) == 3 and set(frame["node"]) == {"node-a"}


def test_cli_bad_input_fails_before_any_scan(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    started = time.monotonic()
    result = _cli("scan", "--output", f"{tmp_path}/file/{{node}}.jsonl")
    one_clear_line(result, "cannot write")
    result = _cli("scan", "--output", f"{tmp_path}/{{pod}}.jsonl")
    one_clear_line(result, "unknown placeholder")
    assert time.monotonic() - started < 60
    one_clear_line(_cli("summarize", str(tmp_path / "none.jsonl")), "none.jsonl")
    (tmp_path / "bad.jsonl").write_text("not json\n")
    one_clear_line(_cli("summarize", str(tmp_path / "bad.jsonl")), "bad.jsonl:1")
    nothing = _cli("scan", "--runtime", "containerd", "--address", str(tmp_path / "gone.sock"))
    assert nothing.returncode == 2 and "containerd" in nothing.stdout


@pytest.mark.parametrize("as_url", [False, True], ids=["directory", "fsspec-url"])
def test_cli_bundles_what_reaches_the_threshold(
    replicas: dict, tmp_path: Path, as_url: bool
) -> None:
    where = f"file://{tmp_path}/b/{{node}}" if as_url else str(tmp_path / "b" / "node-a")
    result = _cli(
        "scan",
        "--runtime",
        "docker",
        "--name",
        f"{replicas['prefix']}-web-*",
        "--bundle-dir",
        where,
        "--bundle-if",
        "medium",
        "--format",
        "json",
        "--node",
        "node-a",
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    bundled = {}
    for record in document["containers"]:
        level = Severity(_highest(record["report"]))
        assert (record["bundle"] is not None) == (level.rank >= Severity.MEDIUM.rank), record
        if record["bundle"]:
            bundled[record["container"]["name"]] = record["bundle"].removeprefix("file://")
    assert replicas["names"][2] in bundled
    for path in bundled.values():
        assert drifttools.verify_bundle(path).ok
        assert Path(path + ".sha256").is_file()
        with drifttools.open_bundle(path) as opened:
            scan = opened.acquisition["scan"]
        assert scan["node"] == "node-a" and len(scan["containers"]) == 3
    assert not list((tmp_path / "b").rglob("*.part"))


def _highest(report: dict) -> str:
    levels = [c["severity"] for c in report["changes"]] + [
        p["severity"] for p in report["processes"]
    ]
    levels += [p["severity"] for p in report["packages"]]
    return max(levels, key=lambda s: Severity(s).rank, default="info")


def test_ctrl_c_stops_cleanly_and_prints_what_was_done(replicas: dict, tmp_path: Path) -> None:
    scan = subprocess.Popen(
        [
            EXE,
            "scan",
            "--runtime",
            "docker",
            "--name",
            f"{replicas['prefix']}-web-*",
            "--jobs",
            "1",
            "--format",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert scan.stdout is not None
    first = scan.stdout.readline()  # one container done: stop the rest
    scan.send_signal(signal.SIGINT)
    rest, errors = scan.communicate(timeout=120)
    assert scan.returncode == 130, errors
    records = [json.loads(line) for line in [first, *rest.splitlines()]]
    assert records[-1]["record"] == "summary" and records[-1]["interrupted"]
    done = [r for r in records if r["record"] == "container"]
    assert 1 <= len(done) < 3 and all(r["error"] is None for r in done)
    assert "interrupted" in errors and "Traceback" not in errors
