"""Disk images as the source: a stopped container's Docker data root on an ext4 filesystem made
by mkfs.ext4 (no mount), as raw, QCOW2 and VMDK (qemu-img) and E01 (ewfacquire), read through
dissect.target. Each diff must equal the `docker-root://` diff of the same copied root, and
no image file may change."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from drifttools_cli.main import cli

import drifttools
from drifttools.options import BaselineOptions
from tests.engine import copy_docker_container, docker, unique
from tests.reports import assert_valid_report

MUTATIONS = (
    "echo added > /tmp/new; echo changed > /opt/app/a; rm /opt/app/sub/c;"
    " chmod 4755 /bin/busybox; ln -s /etc/passwd /tmp/link; echo log-line"
)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=300)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def images(busybox_image: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("disk-images")
    name = unique("investigate-disk")
    docker("run", "--name", name, busybox_image["tag"], "sh", "-c", MUTATIONS)  # exits
    try:
        root = copy_docker_container(name, work / "copy")
    finally:
        docker("rm", "-f", name, check=False)
    tree = work / "fs"
    (tree / "var/lib").mkdir(parents=True)
    shutil.move(root, tree / "var/lib/docker")
    raw = work / "node1.img"
    used = sum(p.lstat().st_size for p in tree.rglob("*"))
    _run("truncate", "-s", str(used * 2 + (32 << 20)), str(raw))
    _run("mkfs.ext4", "-q", "-F", "-d", str(tree), str(raw))
    found = {"raw": raw}
    for fmt in ("qcow2", "vmdk"):
        found[fmt] = work / f"node1.{fmt}"
        _run("qemu-img", "convert", "-O", fmt, str(raw), str(found[fmt]))
    _run(
        "ewfacquire", "-u", "-t", str(work / "node1"), "-f", "encase6", "-c", "none",
        "-C", "IR-1", "-D", "test disk", "-E", "1", "-e", "tester", "-N", "made by the test",
        "-m", "fixed", "-M", "logical", str(raw),
    )  # fmt: skip
    found["e01"] = work / "node1.E01"
    return {"name": name, "root": tree / "var/lib/docker", "images": found, "cache": work / "c"}


def _paths(report: drifttools.DriftReport) -> dict[str, tuple]:
    return {
        c.path: (c.change, c.after.sha256 if c.after else None, c.after.mode if c.after else None)
        for c in report.changes
    }


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk", "e01"])
def test_disk_image_diff_equals_the_data_root_diff(images: dict, fmt: str) -> None:
    cache = BaselineOptions(cache=drifttools.LayerCache(images["cache"]))
    expected = drifttools.diff(f"docker-root://{images['root']}#{images['name']}", baseline=cache)
    image = images["images"][fmt]
    before = _digest(image)
    report = drifttools.diff(f"disk://{image}#{images['name']}", baseline=cache)
    assert _digest(image) == before  # read-only
    assert_valid_report(report.to_dict())
    assert _paths(report) == _paths(expected) and "/opt/app/a" in _paths(report)
    assert report.verified and report.target.details["engine"]["disk_image"] == str(image)
    [log] = report.logs
    assert log.format == "json-file" and log.entries == 1 and log.sha256 == expected.logs[0].sha256
    changed = next(c for c in report.changes if c.path == "/opt/app/a")
    assert changed.diff is not None and "+changed" in (changed.diff.unified or "")


def test_cli_diff_of_a_disk_image_and_bad_input(images: dict, tmp_path: Path) -> None:
    image = images["images"]["qcow2"]
    result = CliRunner().invoke(
        cli, ["diff", f"disk://{image}#{images['name']}", "--format", "json", "--no-yara"]
    )
    assert result.exit_code == 1, result.output
    for reference, message in (
        (f"disk://{tmp_path}/none.img#x", "no such disk image"),
        (f"disk://{images['images']['raw']}#nothing-here", "no container"),
    ):
        bad = CliRunner().invoke(cli, ["diff", reference])
        assert bad.exit_code == 2 and message in bad.stderr and "Traceback" not in bad.output
    empty = tmp_path / "empty.img"
    _run("truncate", "-s", "8M", str(empty))
    _run("mkfs.ext4", "-q", "-F", str(empty))
    bad = CliRunner().invoke(cli, ["diff", f"disk://{empty}#x"])
    assert bad.exit_code == 2 and "no Docker data root" in bad.stderr
