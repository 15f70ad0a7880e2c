"""A containerd of our own for tests, and the drift both engines get.

The daemon has its own root, state and socket in a temporary directory (overlayfs
snapshotter, CRI plugin off). Containers are made with ``ctr run --label ...`` in the
``k8s.io`` namespace and drifted with ``ctr task exec`` (the test's tools; drifttools
never execs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.engine import unique

#: The drift made in a container of the busybox test image, on Docker (``docker exec``) and
#: on containerd (``ctr task exec``): both engines must report the same changes.
MUTATIONS = (
    "echo added > /tmp/new"
    " && echo overwritten > /opt/app/a"
    " && chmod 4755 /bin/busybox"
    " && chown 1000:1000 /opt/app/sub/c"
    " && rm -f /replaced"
    " && rm -rf /var/log"
    " && mkdir -p /srv/d"
    " && ln -sf /etc/passwd /tmp/link"
)
CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
"""
#: The name the busybox test image has on our containerd.
IMAGE = "docker.io/library/drifttools-ctd:1"


@dataclass
class Daemon:
    """A containerd of our own, and what the tests made on it (all removed at the end)."""

    base: Path
    socket: str
    process: subprocess.Popen
    containers: list[tuple[str, str]] = field(default_factory=list)  # (namespace, id)

    @property
    def root(self) -> Path:
        return self.base / "root"

    def ctr(self, *args: str, namespace: str = "k8s.io", check: bool = True) -> str:
        result = subprocess.run(
            ["ctr", "-a", self.socket, "-n", namespace, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {result.stderr}")
        return result.stdout

    def run(
        self,
        pod: str,
        container: str = "app",
        *,
        namespace: str = "k8s.io",
        pod_namespace: str = "default",
        labels: bool = True,
        extra: tuple[str, ...] = (),
    ) -> str:
        container_id = unique("ctd")
        label_args: list[str] = []
        if labels:
            for key, value in (
                ("io.kubernetes.pod.name", pod),
                ("io.kubernetes.pod.namespace", pod_namespace),
                ("io.kubernetes.container.name", container),
                ("io.cri-containerd.kind", "container"),
            ):
                label_args += ["--label", f"{key}={value}"]
        self.ctr("run", "-d", *label_args, *extra, IMAGE, container_id, namespace=namespace)
        self.containers.append((namespace, container_id))
        return container_id

    def exec(self, container_id: str, script: str, namespace: str = "k8s.io") -> None:
        self.ctr(
            "task",
            "exec",
            "--exec-id",
            unique("x"),
            container_id,
            "sh",
            "-c",
            script,
            namespace=namespace,
        )

    def stop(self, container_id: str, namespace: str = "k8s.io") -> None:
        """Kill and delete the task (the container record and its snapshot stay)."""
        self.ctr("task", "kill", "-s", "KILL", container_id, namespace=namespace, check=False)
        for _ in range(50):
            if "STOPPED" in self.ctr("task", "ls", namespace=namespace) or not self.ctr(
                "task", "ls", "-q", namespace=namespace
            ).count(container_id):
                break
            time.sleep(0.1)
        self.ctr("task", "rm", "-f", container_id, namespace=namespace, check=False)

    def shutdown(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_daemon(base: Path, image_tar: Path) -> Daemon:
    """A containerd under ``base``, with ``image_tar`` in its k8s.io and default namespaces."""
    base.mkdir(parents=True, exist_ok=True)
    socket = str(base / "containerd.sock")
    config = base / "config.toml"
    config.write_text(CONFIG.format(root=base / "root", state=base / "state", socket=socket))
    with (base / "containerd.log").open("wb") as log:
        process = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=log, stderr=log, start_new_session=True
        )
    daemon = Daemon(base, socket, process)
    for _ in range(100):
        if (
            os.path.exists(socket)
            and subprocess.run(
                ["ctr", "-a", socket, "version"], capture_output=True, check=False
            ).returncode
            == 0
        ):
            break
        time.sleep(0.1)
    else:
        daemon.shutdown()
        raise AssertionError(f"containerd did not start: {(base / 'containerd.log').read_text()}")
    for namespace in ("k8s.io", "default"):
        daemon.ctr("images", "import", str(image_tar), namespace=namespace)
    return daemon


@contextmanager
def daemon_at(base: Path, image_tar: Path) -> Iterator[Daemon]:
    """:func:`start_daemon`, cleaned up (:func:`cleanup_daemon`) on the way out."""
    daemon = start_daemon(base, image_tar)
    try:
        yield daemon
    finally:
        cleanup_daemon(daemon)


def cleanup_daemon(daemon: Daemon) -> None:
    """Kill every task we started, stop the daemon, unmount what it left under our dir."""
    for namespace, container_id in daemon.containers:
        if daemon.process.poll() is None:
            daemon.stop(container_id, namespace)
            daemon.ctr("containers", "rm", container_id, namespace=namespace, check=False)
    daemon.shutdown()
    # shims outlive a stopped daemon: kill the ones serving our state dir
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and daemon.socket.encode() in cmdline:
            os.kill(int(pid), signal.SIGKILL)
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if str(daemon.base) in line]
    for target in reversed(targets):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
