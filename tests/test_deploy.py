"""The Kubernetes manifests and the drifttools image.

The manifests validate against the Kubernetes schemas (``kubernetes-validate``) and keep
the least privilege they document. The image is built by the real engine from
``deploy/Dockerfile`` on a base made by ``deploy/image/base.sh`` (both cached: the base by
the script's hash, the image by the engine's layer cache, so an unchanged tree rebuilds in
seconds and a Python-only change does not compile Rust again), and ``drifttools scan`` runs
in it against the host's engine with exactly the privileges and mounts the manifest
declares: that they are enough is what the test proves. The same against a standalone
containerd the test starts (its socket and root in place of the node's, mounted as the
DaemonSet mounts them, read-only, with hostPID), for the containerd nodes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.containerd_daemon import Daemon, daemon_at
from tests.engine import Engine, docker, unique

ROOT = Path(__file__).parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE_SCRIPT = ROOT / "deploy" / "image" / "base.sh"
BASE_TAG = (
    f"drifttools-test/drifttools-base:{hashlib.sha256(BASE_SCRIPT.read_bytes()).hexdigest()[:16]}"
)
IMAGE_TAG = "drifttools-test/drifttools:latest"
K8S_VERSION = "1.30"
CAPABILITIES = ["DAC_READ_SEARCH", "SYS_PTRACE"]
#: The machine's trust store, for the image's build stage (a TLS-inspecting proxy here)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _with_docker(daemonset: dict[str, Any]) -> dict[str, Any]:
    """The DaemonSet as ``kubectl apply -k deploy/kubernetes/docker`` makes it (the patch's
    lists merged by name, as a strategic merge does)."""
    [patch] = _documents(KUBERNETES / "docker" / "docker-mounts.yaml")
    merged = copy.deepcopy(daemonset)
    spec, extra = merged["spec"]["template"]["spec"], patch["spec"]["template"]["spec"]
    spec["containers"][0]["volumeMounts"] += extra["containers"][0]["volumeMounts"]
    spec["volumes"] += extra["volumes"]
    return merged


def _workloads() -> dict[str, dict[str, Any]]:
    [daemonset] = _documents(KUBERNETES / "daemonset.yaml")
    [job] = _documents(KUBERNETES / "job.yaml")
    return {"daemonset": daemonset, "job": job, "daemonset+docker": _with_docker(daemonset)}


def test_manifests_validate_and_keep_least_privilege() -> None:
    kinds = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in _documents(path):
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)
            kinds.append(document["kind"])
    assert sorted(kinds) == ["DaemonSet", "Job", "Namespace", "ServiceAccount"]
    for name, workload in _workloads().items():
        kubernetes_validate.validate(workload, K8S_VERSION, strict=True)
        pod = workload["spec"]["template"]["spec"]
        assert pod["hostPID"] and not pod.get("hostNetwork") and not pod.get("hostIPC"), name
        assert pod["automountServiceAccountToken"] is False
        assert pod["tolerations"] == [{"operator": "Exists"}]
        [container] = pod["containers"]
        security = container["securityContext"]
        assert security["capabilities"] == {"drop": ["ALL"], "add": CAPABILITIES}
        assert not security["privileged"] and not security["allowPrivilegeEscalation"]
        assert security["readOnlyRootFilesystem"]
        assert {"requests", "limits"} <= set(container["resources"])
        host_paths = {v["name"] for v in pod["volumes"] if "hostPath" in v}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert host_paths and all(mounts[v].get("readOnly") for v in host_paths), name
        assert "{node}" in next(e["value"] for e in container["env"] if e["name"] == "SCAN_OUTPUT")


def _docker_run_flags(
    workload: dict[str, Any], instead: Mapping[str, tuple[str, str]] | None = None
) -> list[str]:
    """The pod's privileges and mounts as ``docker run`` flags, nothing added; a hostPath
    this host lacks (a containerd socket on a Docker-only host) is left out, as the
    kubelet would for a node without that engine. ``instead`` mounts, for a volume (by
    name), another host path at another path in the container."""
    instead = instead or {}
    pod = workload["spec"]["template"]["spec"]
    [container] = pod["containers"]
    security = container["securityContext"]
    flags = ["--pid=host" if pod["hostPID"] else "--pid=private"]
    flags += ["--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    flags += ["--cap-drop", "ALL"] + [f"--cap-add={c}" for c in security["capabilities"]["add"]]
    flags += (
        ["--security-opt", "no-new-privileges"] if not security["allowPrivilegeEscalation"] else []
    )
    flags += ["--read-only"] if security["readOnlyRootFilesystem"] else []
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            flags += ["--tmpfs", mount["mountPath"]]
        else:
            declared = (volume["hostPath"]["path"], mount["mountPath"])
            host, inside = instead.get(mount["name"], declared)
            if Path(host).exists():
                mode = "ro" if mount.get("readOnly") else "rw"
                flags += ["-v", f"{host}:{inside}:{mode}"]
    return flags


def _timed(*args: str) -> float:
    started = time.monotonic()
    subprocess.run(args, check=True, capture_output=True, timeout=3600)
    return time.monotonic() - started


@pytest.fixture(scope="session")
def drifttools_image(engine: Engine) -> str:
    """The drifttools image, built from this tree (base: by the script, once per version)."""
    present = subprocess.run(["docker", "image", "inspect", BASE_TAG], capture_output=True)
    if present.returncode != 0:
        seconds = _timed(
            "env", f"DRIFTTOOLS_CA_BUNDLE={CA_BUNDLE}", "bash", str(BASE_SCRIPT), BASE_TAG
        )
        print(f"base image made in {seconds:.0f} s")
    seconds = _timed(
        "docker",
        "build",
        "-q",
        "-f",
        str(ROOT / "deploy" / "Dockerfile"),
        "--build-arg",
        f"BASE={BASE_TAG}",
        "-t",
        IMAGE_TAG,
        str(ROOT),
    )
    print(f"drifttools image built in {seconds:.0f} s")
    return IMAGE_TAG


@pytest.fixture
def drifted(busybox_image: dict) -> Iterator[str]:
    name = unique("scan-image")
    docker("run", "-d", "--name", name, busybox_image["tag"])
    docker("exec", name, "sh", "-c", "mkdir -p /root/.ssh && echo k > /root/.ssh/authorized_keys")
    yield name
    docker("rm", "-f", name, check=False)


def test_image_scans_the_host_with_the_manifest_privileges(
    drifttools_image: str, drifted: str
) -> None:
    flags = _docker_run_flags(_workloads()["daemonset+docker"])
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            *flags,
            "-e",
            "NODE_NAME=node-in-pod",
            drifttools_image,
            "scan",
            "--runtime",
            "docker",
            "--name",
            drifted,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    [record] = document["containers"]
    assert record["error"] is None and record["container"]["node"] == "node-in-pod"
    report = record["report"]
    assert report["baseline"]["verified"]
    assert "/root/.ssh/authorized_keys" in {c["path"] for c in report["changes"]}
    [process] = report["processes"]  # hostPID and SYS_PTRACE: the container's /proc read
    assert process["exe_sha256"] and process["exe_state"] == "present"


@pytest.fixture
def containerd_node(containerd_image_tar: Path, tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    """A standalone containerd with one drifted CRI-style container (the test's own)."""
    with daemon_at(tmp_path / "containerd", containerd_image_tar) as daemon:
        container_id = daemon.run("web-0")
        daemon.exec(container_id, "mkdir -p /root/.ssh && echo k > /root/.ssh/authorized_keys")
        yield daemon, container_id


def test_image_scans_containerd_with_the_manifest_privileges(
    drifttools_image: str, containerd_node: tuple[Daemon, str]
) -> None:
    daemon, container_id = containerd_node
    daemonset = _workloads()["daemonset"]
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    # the root is mounted where it is on the node (the snapshot dirs containerd names are
    # valid paths in the pod), so ours is mounted at its own path; the socket where the
    # manifest puts it ($CONTAINERD_ADDRESS)
    assert mounts["containerd-root"]["mountPath"] == volumes["containerd-root"]["hostPath"]["path"]
    socket_path = mounts["containerd-sock"]["mountPath"]
    root = str(daemon.root)
    ours = {"containerd-sock": (daemon.socket, socket_path), "containerd-root": (root, root)}
    flags = _docker_run_flags(daemonset, ours)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["CONTAINERD_ADDRESS"] == mounts["containerd-sock"]["mountPath"]
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            *flags,
            "-e",
            f"CONTAINERD_ADDRESS={env['CONTAINERD_ADDRESS']}",
            "-e",
            "NODE_NAME=containerd-node",
            drifttools_image,
            "scan",
            "--runtime",
            "containerd",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 1, result.stderr + result.stdout
    document = json.loads(result.stdout)
    [record] = document["containers"]
    assert record["error"] is None and record["container"]["node"] == "containerd-node"
    assert record["container"]["id"] == container_id
    assert record["container"]["pod"]["pod"] == "web-0"
    report = record["report"]
    assert report["baseline"]["verified"]  # layer blobs read from the read-only content store
    assert "/root/.ssh/authorized_keys" in {c["path"] for c in report["changes"]}
    [process] = report["processes"]  # hostPID and SYS_PTRACE: the task's /proc read
    assert process["exe_sha256"] and process["exe_state"] == "present"
