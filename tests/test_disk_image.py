"""Disk images as the source: a stopped container's Docker data root on an ext4 filesystem made
by mkfs.ext4 (no mount), as raw, QCOW2 and VMDK (qemu-img) and E01 (ewfacquire), read through
dissect.target. Each diff must equal the `docker-root://` diff of the same copied root, and
no image file may change. The same for a containerd root: our standalone containerd's, with a
drifted CRI-style container, stopped and copied (QCOW2), against `containerd-root://`."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from drifttools_cli.main import cli

import drifttools
from drifttools.options import BaselineOptions
from tests import containerd_daemon
from tests.containerd_daemon import cleanup_daemon, start_daemon
from tests.engine import copy_docker_container, docker, unique
from tests.reports import assert_valid_report

MUTATIONS = (
    "echo added > /tmp/new; echo changed > /opt/app/a; rm /opt/app/sub/c;"
    " chmod 4755 /bin/busybox; ln -s /etc/passwd /tmp/link; echo stolen > /data/loot;"
    " echo log-line"
)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=300)


def _ext4(tree: Path, raw: Path) -> None:
    """An ext4 filesystem holding ``tree``, in the file ``raw`` (mkfs.ext4 -d: no mount)."""
    used = sum(p.lstat().st_size for p in tree.rglob("*"))
    _run("truncate", "-s", str(used * 2 + (32 << 20)), str(raw))
    _run("mkfs.ext4", "-q", "-F", "-d", str(tree), str(raw))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def images(busybox_image: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("disk-images")
    name = unique("investigate-disk")
    volume = f"{name}-data"  # a named volume: read as a mount with no baseline
    docker("run", "--name", name, "-v", f"{volume}:/data", busybox_image["tag"], "sh", "-c",
           MUTATIONS)  # fmt: skip
    try:
        root = copy_docker_container(name, work / "copy")
        data = json.loads(docker("volume", "inspect", volume))[0]["Mountpoint"]
        (root / "volumes" / volume).mkdir(parents=True)
        _run("cp", "-a", data, str(root / "volumes" / volume / "_data"))
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)
    tree = work / "fs"
    (tree / "var/lib").mkdir(parents=True)
    shutil.move(root, tree / "var/lib/docker")
    raw = work / "node1.img"
    _ext4(tree, raw)
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
    [loot] = [c for c in report.changes if c.path == "/data/loot"]  # the named volume
    assert loot.mount == "/data" and loot.change is drifttools.ChangeKind.ADDED
    assert loot.after is not None and loot.after.size == len("stolen\n")
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
    assert bad.exit_code == 2 and "no Docker data root and no containerd root" in bad.stderr
    docker_only = f"disk://{images['images']['raw']}#k8s://default/db-0"
    bad = CliRunner().invoke(cli, ["diff", docker_only])
    assert bad.exit_code == 2 and "no containerd root" in bad.stderr


#: A CRI log line of the pod, written where the kubelet writes them (the test's own
#: standalone containerd has no CRI plugin).
CRI_LOG = "2026-12-03T10:00:00.000000001Z stdout F started\n"


@pytest.fixture(scope="module")
def containerd_disk(containerd_image_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A drifted CRI-style container of our own containerd, the daemon stopped and its root
    copied to ``var/lib/containerd`` of an ext4 filesystem in a QCOW2 image."""
    work = tmp_path_factory.mktemp("containerd-disk")
    tree = work / "fs"
    daemon = start_daemon(work / "containerd", containerd_image_tar)
    # a pod volume where the kubelet keeps them: read as a mount with no baseline
    volume = work / "kubelet/pods/0f3c/volumes/kubernetes.io~empty-dir/cache"
    volume.mkdir(parents=True)
    try:
        mount = f"type=bind,src={volume},dst=/cache,options=rbind:rw"
        container_id = daemon.run("db-0", extra=("--mount", mount))
        daemon.exec(container_id, containerd_daemon.MUTATIONS + " && echo stolen > /cache/loot")
        daemon.stop(container_id)  # its record and snapshot stay, as on a host that died
        daemon.shutdown()
        (tree / "var/lib").mkdir(parents=True)
        _run("cp", "-a", str(daemon.root), str(tree / "var/lib/containerd"))
        (tree / volume.relative_to("/")).parent.mkdir(parents=True)
        _run("cp", "-a", str(volume), str(tree / volume.relative_to("/")))
    finally:
        cleanup_daemon(daemon)
    shutil.rmtree(volume)  # the dead host's path: only its copy on the disk may be read
    logs = tree / "var/log/pods/default_db-0_0f3c/app"
    logs.mkdir(parents=True)
    (logs / "0.log").write_text(CRI_LOG)
    raw = work / "node2.img"
    _ext4(tree, raw)
    qcow2 = work / "node2.qcow2"
    _run("qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2))
    raw.unlink()
    root = tree / "var/lib/containerd"
    return {"root": root, "image": qcow2, "cache": work / "c", "id": container_id}


def test_containerd_root_in_a_disk_image_diffs_as_the_root_itself(containerd_disk: dict) -> None:
    cache = BaselineOptions(cache=drifttools.LayerCache(containerd_disk["cache"]))
    fragment = "k8s://default/db-0"
    expected = drifttools.diff(f"containerd-root://{containerd_disk['root']}#{fragment}")
    image = containerd_disk["image"]
    before = _digest(image)
    report = drifttools.diff(f"disk://{image}#{fragment}", baseline=cache)
    assert _digest(image) == before  # read-only
    assert_valid_report(report.to_dict())
    assert _paths(report) == _paths(expected)
    assert {"/tmp/new", "/opt/app/a", "/var/log"} <= set(_paths(report))
    [loot] = [c for c in report.changes if c.path == "/cache/loot"]  # the pod's volume
    assert loot.mount == "/cache" and loot.change is drifttools.ChangeKind.ADDED
    assert report.verified and {layer.source for layer in report.baseline} == {"engine-store"}
    engine = report.target.details["engine"]
    assert engine["disk_image"] == str(image) and engine["root_format"] == "containerd-root"
    assert engine["containerd_root_in_image"] == "/var/lib/containerd"
    assert [(log.sha256, log.entries) for log in report.logs] == [
        (log.sha256, log.entries) for log in expected.logs
    ] and len(report.logs) == 1
    same = drifttools.diff(f"disk://{image}#{containerd_disk['id'][:12]}", baseline=cache)
    assert _paths(same) == _paths(report)  # a bare id: containerd's, the image has no Docker
