"""A container's log files, read from the host: Docker's json-file and local drivers (rotated
and compressed), and the CRI layout of /var/log/pods; `docker logs` is the oracle."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

import drifttools
from drifttools.acquisition.logs import cri_logs, docker_logs, host_root_of, read_logs
from drifttools.evidence.bundle.read import open_bundle
from drifttools.options import BaselineOptions
from tests.engine import docker, unique
from tests.reports import assert_valid_report

ID = "ab" * 32


def _json_line(n: int) -> bytes:
    stamp = f"2026-12-03T09:{n // 60:02d}:{n % 60:02d}.123456789Z"
    return json.dumps({"log": f"line {n}\x1b[31m\n", "stream": "stdout", "time": stamp}).encode()


def _frame(n: int) -> bytes:
    """A local-driver record: source=1 "stdout", time_nano=2, line=3."""
    nanos = 1_796_288_400_000_000_000 + n
    varint = bytearray()
    while True:
        byte, nanos = nanos & 0x7F, nanos >> 7
        varint.append(byte | (0x80 if nanos else 0))
        if not nanos:
            break
    line = f"entry {n}".encode()
    message = b"\x0a\x06stdout\x10" + bytes(varint) + b"\x1a" + bytes([len(line)]) + line
    size = len(message).to_bytes(4, "big")
    return size + message + size


def test_docker_log_files_current_rotated_and_compressed(tmp_path: Path) -> None:
    directory = tmp_path / ID
    (directory / "local-logs").mkdir(parents=True)
    current = b"\n".join(_json_line(n) for n in range(3, 6)) + b"\n"
    (directory / f"{ID}-json.log").write_bytes(current)
    (directory / f"{ID}-json.log.1").write_bytes(_json_line(2) + b"\n")
    (directory / f"{ID}-json.log.2.gz").write_bytes(
        gzip.compress(_json_line(0) + b"\n") + gzip.compress(_json_line(1) + b"\n")
    )
    (directory / "local-logs" / "container.log").write_bytes(_frame(1) + _frame(2) + _frame(3))
    (directory / "config.v2.json").write_text("{}")
    os.symlink("/etc/shadow", directory / f"{ID}-json.log.3")  # never followed

    sources = docker_logs(directory)
    names = [(Path(s.path).name, s.format) for s in sources]
    assert names == [
        (f"{ID}-json.log", "json-file"),
        (f"{ID}-json.log.1", "json-file"),
        (f"{ID}-json.log.2.gz", "json-file"),
        ("container.log", "local"),
    ]
    records = read_logs(sources)
    now, first, packed, local = records
    assert (now.rotated, now.compressed, now.entries) == (False, False, 3)
    assert now.sha256 == hashlib.sha256(current).hexdigest() and now.size == len(current)
    assert (now.first_at, now.last_at) == (
        "2026-12-03T09:00:03.123456789Z",
        "2026-12-03T09:00:05.123456789Z",
    )
    assert (first.rotated, first.entries) == (True, 1)
    gz = (directory / f"{ID}-json.log.2.gz").read_bytes()
    assert packed.compressed and packed.sha256 == hashlib.sha256(gz).hexdigest()
    assert (packed.entries, packed.first_at, packed.reason) == (
        2,
        "2026-12-03T09:00:00.123456789Z",
        None,
    )
    assert (local.entries, local.reason) == (3, None)
    assert (local.first_at, local.last_at) == (
        "2026-12-03T09:00:00.000000001Z",
        "2026-12-03T09:00:00.000000003Z",
    )


def test_cri_logs_under_a_dead_hosts_root_with_their_alias(tmp_path: Path) -> None:
    host = tmp_path / "disk"
    container_dir = host / "var/log/pods/default_web-1_u-1/app"
    container_dir.mkdir(parents=True)
    (container_dir / "0.log").write_bytes(
        b"2026-12-03T09:00:00.1Z stdout F hello\n2026-12-03T09:00:02.5Z stderr P part"
    )
    (container_dir / "0.log.20261203-085900.gz").write_bytes(
        gzip.compress(b"2026-12-03T08:59:00Z stdout F old\n")
    )
    links = host / "var/log/containers"
    links.mkdir(parents=True)
    link = links / f"web-1_default_app-{ID}.log"
    link.symlink_to("/var/log/pods/default_web-1_u-1/app/0.log")
    labels = {
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.name": "web-1",
        "io.kubernetes.pod.uid": "u-1",
        "io.kubernetes.container.name": "app",
    }
    assert host_root_of(host / "var/lib/containerd", "var/lib/containerd") == host
    sources = cri_logs(host, labels, ID)
    assert [(Path(s.path).name, s.aliases) for s in sources] == [
        ("0.log", (str(link),)),
        ("0.log.20261203-085900.gz", ()),
    ]
    current, rotated = read_logs(sources)
    assert (current.entries, current.first_at, current.last_at) == (
        2,
        "2026-12-03T09:00:00.1Z",
        "2026-12-03T09:00:02.5Z",
    )
    assert (rotated.rotated, rotated.entries, rotated.first_at) == (True, 1, "2026-12-03T08:59:00Z")
    assert cri_logs(host, {**labels, "io.kubernetes.pod.name": "../x"}, ID) == ()


def _wait_for_line(name: str, line: str) -> None:
    deadline = time.monotonic() + 30
    while line not in docker("logs", name):
        assert time.monotonic() < deadline, "the container did not log"
        time.sleep(0.2)


@pytest.mark.both_drivers
@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_live_container_logs_match_docker_logs(
    driver: str, busybox_image: dict, tmp_path: Path
) -> None:
    name = unique("investigate-logs")
    script = (
        "i=0; while [ $i -lt 300 ]; do echo line-$i-padding-padding; i=$((i+1)); done; sleep 600"
    )
    docker(
        "run", "-d", "--name", name, "--log-driver", driver,
        "--log-opt", "max-size=4k", "--log-opt", "max-file=3", "--log-opt", "compress=true",
        busybox_image["tag"], "sh", "-c", script,
    )  # fmt: skip
    try:
        _wait_for_line(name, "line-299-")
        time.sleep(0.5)  # the driver flushes and compresses its rotations
        cache = BaselineOptions(cache=drifttools.LayerCache(tmp_path / "cache"))
        report = drifttools.diff(name, baseline=cache, classification=None)
        assert_valid_report(report.to_dict())
        logs = report.logs
        assert {log.format for log in logs} == {driver}
        assert sum(not log.rotated for log in logs) == 1 and any(log.compressed for log in logs)
        for log in logs:
            assert log.size == os.lstat(log.path).st_size and log.reason is None
        # the engine's own reading (it reads the files we read) sees what the files hold
        assert sum(log.entries or 0 for log in logs) == len(docker("logs", name).splitlines())
        assert all(log.first_at and log.last_at and log.first_at <= log.last_at for log in logs)

        bundled = drifttools.bundle(
            name, tmp_path / "b.bundle", baseline=cache, classification=None
        )
        with open_bundle(bundled.path) as opened:
            stored = opened.evidence["logs"]
            assert len(stored) == len(logs)
            for item in stored:
                if item["path"].endswith(".gz") or ".log." in item["path"]:  # rotations stay put
                    blob = opened.blob(item["sha256"])
                    assert hashlib.sha256(blob).hexdigest() == item["sha256"]
                    assert blob == Path(item["path"]).read_bytes()
            assert [log.path for log in opened.report.logs] == [log.path for log in logs]
    finally:
        docker("rm", "-f", name, check=False)
