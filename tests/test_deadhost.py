"""Dead hosts: a copy of a stopped engine's data root, diffed with no daemon at all.

Docker: a container is stopped (never the host's dockerd) and only what it needs is
copied: its container dir, its image config, the layerdb records of its layers and
mount, and those layer dirs. containerd: our own test daemon is stopped and its root
copied. Each offline diff must equal the live diff of the same container, and nothing
under the copied root may change.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import drifttools
from drifttools import LayerCache
from drifttools.acquisition.runtime import runtime_for
from drifttools.acquisition.runtimes.containerd.runtime import ContainerdRuntime
from drifttools.acquisition.runtimes.containerd_root import ContainerdRootRuntime
from drifttools.acquisition.runtimes.docker_root import DockerRootRuntime
from drifttools.errors import ContainerNotFound, DigestMismatch, RuntimeUnavailable
from drifttools.options import BaselineOptions
from tests.containerd_daemon import MUTATIONS, cleanup_daemon, start_daemon
from tests.engine import copy_docker_container, docker
from tests.reports import assert_valid_report


def rootfs_changes(report: drifttools.DriftReport) -> dict[str, tuple]:
    return {
        c.path: (c.change, c.after.sha256 if c.after else None, c.after.mode if c.after else None)
        for c in report.changes
        if c.mount == "/"
    }


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its type, size, mtime and content hash."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            info = path.lstat()
            digest = None
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return found


@pytest.mark.both_drivers
def test_docker_data_root_equals_live_diff(busybox_image: dict, container, tmp_path: Path) -> None:
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", MUTATIONS)
    docker("stop", "-t", "1", name)
    cache = LayerCache(tmp_path / "cache")
    live = drifttools.diff(name, baseline=BaselineOptions(cache=cache))
    root = copy_docker_container(name, tmp_path / "disk")
    before = fingerprint(root)

    reference = f"docker-root://{root}#{name}"
    runtime = runtime_for(reference)
    assert isinstance(runtime, DockerRootRuntime)
    offline = drifttools.diff(
        reference, runtime=runtime, baseline=BaselineOptions(cache=LayerCache(tmp_path / "c2"))
    )
    assert rootfs_changes(offline) == rootfs_changes(live)
    assert offline.verified and {layer.source for layer in offline.baseline} == {"engine-store"}
    assert offline.target.runtime == "offline" and offline.processes == ()
    assert offline.target.details["engine"]["format"] == "docker-root"
    assert_valid_report(offline.to_dict())
    assert fingerprint(root) == before  # nothing written under the evidence
    with pytest.raises(ContainerNotFound):
        runtime.resolve(f"docker-root://{root}#nope")
    with pytest.raises(RuntimeUnavailable, match="not a Docker data root"):
        DockerRootRuntime(tmp_path)


@pytest.fixture
def stopped_containerd(containerd_image_tar: Path, tmp_path: Path) -> Iterator[tuple[Path, dict]]:
    """A drifted CRI-style container, its live report, then the daemon stopped and its
    root copied; yields (copied root, live changes)."""
    daemon = start_daemon(tmp_path / "containerd", containerd_image_tar)
    try:
        container_id = daemon.run("db-0")
        daemon.exec(container_id, MUTATIONS)
        runtime = ContainerdRuntime(daemon.socket)
        live = drifttools.diff(
            "k8s://default/db-0",
            runtime=runtime,
            baseline=BaselineOptions(cache=LayerCache(tmp_path / "cache")),
        )
        runtime.close()
        daemon.stop(container_id)
        daemon.shutdown()
        copy = tmp_path / "disk" / "var-lib-containerd"
        copy.parent.mkdir()
        subprocess.run(["cp", "-a", str(daemon.root), str(copy)], check=True)
    finally:
        cleanup_daemon(daemon)
    yield copy, rootfs_changes(live)


def test_containerd_root_equals_live_diff(
    stopped_containerd: tuple[Path, dict], tmp_path: Path
) -> None:
    root, live = stopped_containerd
    before = fingerprint(root)
    reference = f"containerd-root://{root}#k8s://default/db-0"
    runtime = runtime_for(reference)
    assert isinstance(runtime, ContainerdRootRuntime)
    offline = drifttools.diff(
        reference, runtime=runtime, baseline=BaselineOptions(cache=LayerCache(tmp_path / "c2"))
    )
    assert rootfs_changes(offline) == live
    assert offline.verified and {layer.source for layer in offline.baseline} == {"engine-store"}
    assert_valid_report(offline.to_dict())
    info = runtime.resolve(reference)
    assert info.name == "default/db-0/app" and info.pid is None
    assert info.raw["container"]["labels"]["io.kubernetes.pod.name"] == "db-0"
    assert fingerprint(root) == before
    with pytest.raises(ContainerNotFound, match="no namespace"):
        runtime.resolve("nope/abc")


def test_garbage_collected_blobs_fall_back_to_lower_dirs(
    stopped_containerd: tuple[Path, dict], tmp_path: Path
) -> None:
    root, live = stopped_containerd
    blobs = root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    runtime = ContainerdRootRuntime(root)
    info = runtime.resolve("k8s://default/db-0")
    layer_digests = [
        json.loads((blobs / info.raw["image"]["manifest"][7:]).read_bytes())["layers"]
    ][0]
    for layer in layer_digests:  # what discard_unpacked_layers leaves behind
        (blobs / layer["digest"][7:]).unlink()
    with pytest.raises(DigestMismatch, match="garbage-collected"):
        drifttools.diff(
            "k8s://default/db-0",
            runtime=ContainerdRootRuntime(root),
            baseline=BaselineOptions(cache=LayerCache(tmp_path)),
        )
    report = drifttools.diff(
        "k8s://default/db-0",
        runtime=ContainerdRootRuntime(root),
        baseline=BaselineOptions(verify=False, cache=LayerCache(tmp_path)),
    )
    assert {layer.source for layer in report.baseline} == {"snapshot-lowerdir"}
    assert not report.verified
    assert all("lower dir" in layer.problems[0] for layer in report.baseline)
    changed = {path: value[0] for path, value in rootfs_changes(report).items()}
    assert changed == {path: value[0] for path, value in live.items()}
