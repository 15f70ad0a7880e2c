"""containerd over our gRPC client: a standalone daemon started here, CRI-style containers.

The daemon (:mod:`tests.containerd_daemon`) has its own root, state and socket in a
temporary directory; containers are made with ``ctr run --label ...`` in the ``k8s.io``
namespace and drifted with ``ctr task exec``. The oracle is drifttools' own Docker path on
an equivalent Docker container with the same mutations: both engines must report the same
changes.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import drifttools
from drifttools import ChangeKind, ContainerNotFound, LayerCache
from drifttools.acquisition.runtime import runtime_for
from drifttools.acquisition.runtimes.containerd.records import parse_selector
from drifttools.acquisition.runtimes.containerd.runtime import ContainerdRuntime
from drifttools.errors import RuntimeUnavailable
from drifttools.options import BaselineOptions
from tests.command import EXE, one_clear_line
from tests.containerd_daemon import MUTATIONS, Daemon, cleanup_daemon, start_daemon
from tests.engine import docker
from tests.reports import assert_valid_report


@pytest.fixture(scope="module")
def ctd(containerd_image_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("containerd"), containerd_image_tar)
    try:
        yield daemon
    finally:
        cleanup_daemon(daemon)


@pytest.fixture(scope="module")
def runtime(ctd: Daemon) -> Iterator[ContainerdRuntime]:
    found = ContainerdRuntime(ctd.socket)
    yield found
    found.close()


def rootfs_changes(report: drifttools.DriftReport) -> dict[str, ChangeKind]:
    return {c.path: c.change for c in report.changes if c.mount == "/"}


def test_diff_matches_the_docker_path(
    ctd: Daemon, runtime: ContainerdRuntime, busybox_image: dict, container, tmp_path: Path
) -> None:
    cache = LayerCache(tmp_path / "cache")
    # what each engine itself puts into a fresh container (mount points, /etc/hosts ...)
    fresh_docker = container(busybox_image["tag"])
    ctd.run("fresh")
    plumbing = set(
        rootfs_changes(drifttools.diff(fresh_docker, baseline=BaselineOptions(cache=cache)))
    )
    plumbing |= set(rootfs_changes(drifttools.diff("k8s://default/fresh", runtime=runtime)))

    drifted_docker = container(busybox_image["tag"])
    docker("exec", drifted_docker, "sh", "-c", MUTATIONS)
    drifted_ctd = ctd.run("web-1")
    ctd.exec(drifted_ctd, MUTATIONS)

    via_docker = drifttools.diff(drifted_docker, baseline=BaselineOptions(cache=cache))
    via_grpc = drifttools.diff(
        "k8s://default/web-1", runtime=runtime, baseline=BaselineOptions(cache=cache)
    )
    assert_valid_report(via_grpc.to_dict())
    expected = {p: k for p, k in rootfs_changes(via_docker).items() if p not in plumbing}
    found = {p: k for p, k in rootfs_changes(via_grpc).items() if p not in plumbing}
    # the one true difference: fuse-overlayfs (this Docker) keeps the image's hardlink
    # /opt/app/hard -> /opt/app/a on copy-up, kernel overlayfs (containerd) breaks it; each
    # report says what its container really sees
    info = runtime.resolve("k8s://default/web-1")
    if expected.get("/opt/app/hard") and "/opt/app/hard" not in found:
        assert Path(f"/proc/{info.pid}/root/opt/app/hard").read_text() == "hello\n"
        del expected["/opt/app/hard"]
    assert found == expected
    assert found["/tmp/new"] is ChangeKind.ADDED
    assert found["/opt/app/a"] is ChangeKind.MODIFIED
    assert found["/bin/busybox"] is ChangeKind.METADATA
    assert found["/replaced"] is ChangeKind.DELETED
    assert found["/var/log"] is ChangeKind.DELETED
    # baseline: from the content store, every digest checked
    assert via_grpc.verified
    assert {layer.source for layer in via_grpc.baseline} <= {"engine-store", "cache"}
    # processes from Tasks.ListPids, read from the host's /proc
    assert info.raw["task"]["pids"] == [info.pid]
    assert [p.pid for p in via_grpc.processes] == [info.pid]
    assert via_grpc.processes[0].cmdline == ("sleep", "100000")  # exec sleep in entrypoint
    assert info.upper_dir and info.upper_dir.endswith("/fs")
    assert info.name == "default/web-1/app"
    # what the baseline reads back is typed on the record, not in its raw JSON
    assert info.namespace == "k8s.io" and len(info.lower_dirs) == 4
    assert info.image_manifest and info.image_manifest.config.digest == info.image_id


def test_baseline_reads_blobs_through_content_read(ctd: Daemon, tmp_path: Path) -> None:
    """Without host access to the content store, each layer streams through Content.Read."""
    container_id = ctd.run("streamed")
    remote = ContainerdRuntime(ctd.socket)
    remote.content_root = None  # as if the store were not readable here
    report = drifttools.diff(
        f"containerd://k8s.io/{container_id}",
        runtime=remote,
        baseline=BaselineOptions(cache=LayerCache(tmp_path / "cache")),
    )
    assert report.verified
    assert [layer.source for layer in report.baseline] == ["engine-store"] * 4
    assert_valid_report(report.to_dict())
    assert all(layer.digest and layer.digest.startswith("sha256:") for layer in report.baseline)
    remote.close()


def test_restarts_prefer_the_running_task_and_keep_history(
    ctd: Daemon, runtime: ContainerdRuntime
) -> None:
    first = ctd.run("restarted")
    ctd.stop(first)
    second = ctd.run("restarted")
    info = runtime.resolve("k8s://default/restarted/app")
    assert info.id == second and info.running
    assert {a["id"] for a in info.raw["attempts"]} == {first, second}
    assert {a["status"] for a in info.raw["attempts"] if a["id"] == first} <= {"stopped", "exited"}


def test_targets_and_listing_across_namespaces(ctd: Daemon, runtime: ContainerdRuntime) -> None:
    sidecar_pod = ctd.run("two", "main")
    ctd.run("two", "sidecar")
    plain = ctd.run("x", namespace="default", labels=False)
    with pytest.raises(ContainerNotFound, match="several containers"):
        runtime.resolve("k8s://default/two")
    assert runtime.resolve("k8s://default/two/main").id == sidecar_pod
    assert runtime.resolve(f"containerd://default/{plain}").raw["namespace"] == "default"
    assert runtime.resolve(f"containerd://{plain[:12]}").id == plain  # every namespace
    listed = {(i.raw["namespace"], i.id) for i in runtime.list_running()}
    assert ("default", plain) in listed and ("k8s.io", sidecar_pod) in listed
    assert parse_selector("k8s://prod/web/nginx").container == "nginx"
    assert isinstance(runtime_for("k8s://a/b", endpoint=ctd.socket), ContainerdRuntime)


def test_errors_are_typed(ctd: Daemon, runtime: ContainerdRuntime, tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match="no containerd socket"):
        ContainerdRuntime(str(tmp_path / "missing.sock"))
    with pytest.raises(ContainerNotFound, match="no namespace"):
        runtime.resolve("containerd://nope/abc")
    with pytest.raises(ContainerNotFound, match="no pod"):
        runtime.resolve("k8s://default/absent")
    with pytest.raises(ContainerNotFound, match="k8s://"):
        runtime.resolve("k8s://only-one-part")


def test_cli_errors_are_one_line_exit_2(ctd: Daemon, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / ".cache")}
    missing = {**env, "CONTAINERD_ADDRESS": str(tmp_path / "gone.sock")}
    result = subprocess.run(
        [EXE, "diff", "k8s://default/web-1"],
        capture_output=True,
        text=True,
        env=missing,
        timeout=120,
        check=False,
    )
    one_clear_line(result, "containerd")
    ours = {**env, "CONTAINERD_ADDRESS": ctd.socket}
    result = subprocess.run(
        [EXE, "diff", "k8s://default/no-such-pod"],
        capture_output=True,
        text=True,
        env=ours,
        timeout=120,
        check=False,
    )
    one_clear_line(result, "no-such-pod")


def test_runtime_flags_spelled_as_ctr_on_every_command(ctd: Daemon, tmp_path: Path) -> None:
    """``--address`` / ``--namespace`` (and their ``$CONTAINERD_*`` defaults) name the engine
    and namespace of a bare container id, as ``ctr`` and ``nerdctl`` take them."""
    container_id = ctd.run("flags", namespace="default", labels=False)
    elsewhere = ctd.run("flags-pod")  # in k8s.io
    ctd.exec(container_id, "echo added > /tmp/new", namespace="default")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "DOCKER_HOST"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / ".cache")

    def drifttools_cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EXE, *args],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=300,
            check=False,
        )

    flags = ("--address", ctd.socket, "--namespace", "default")
    result = drifttools_cli("diff", *flags, "--format", "json", "--no-yara", container_id)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert (report["target"]["runtime"], report["target"]["id"]) == ("containerd", container_id)
    assert "/tmp/new" in {c["path"] for c in report["changes"]}

    by_env = {"CONTAINERD_ADDRESS": ctd.socket, "CONTAINERD_NAMESPACE": "default"}
    result = drifttools_cli("ps", "--format", "json", container_id[:12], **by_env)
    assert result.returncode == 0, result.stderr
    assert [p["cmdline"] for p in json.loads(result.stdout)] == [["sleep", "100000"]]

    result = drifttools_cli("ls", "-a", ctd.socket, "-n", "default", "--format", "json")
    assert result.returncode == 0, result.stderr
    listed = {row["id"]: row for row in json.loads(result.stdout)}
    assert container_id[:12] in listed and listed[container_id[:12]]["upper_paths"]
    assert elsewhere[:12] not in listed

    result = drifttools_cli("show", "-a", ctd.socket, "-n", "default", container_id, "/tmp/new")
    assert result.returncode == 1 and "/tmp/new: added" in result.stdout, result.stderr
    # the namespace is a scope: the container is not in k8s.io
    result = drifttools_cli("ps", "-a", ctd.socket, "-n", "k8s.io", container_id)
    one_clear_line(result, container_id)
    # a bare id with Docker's and containerd's flags both: which engine is meant is unclear
    result = drifttools_cli("ps", "--host", "unix:///nowhere.sock", *flags, container_id)
    one_clear_line(result, "--host", "containerd://")
