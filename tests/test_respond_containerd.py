"""``drifttools respond`` on a real containerd of the test's own: isolation of a task in its
own network namespace proven by traffic over a veth link the test makes between two of its
tasks (nothing else is reached), freeze and terminate through containerd's own state."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import drifttools
from drifttools.acquisition.runtimes.containerd.runtime import ContainerdRuntime
from drifttools.errors import ResponseRefused
from drifttools.options import ResponseOptions
from drifttools.response import netns
from tests.containerd_daemon import Daemon, daemon_at
from tests.engine import unique
from tests.respond_scene import read_back

PORT = 8080
NS = "default"


@pytest.fixture(scope="module")
def ctd(containerd_image_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with daemon_at(tmp_path_factory.mktemp("respond-containerd"), containerd_image_tar) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def runtime(ctd: Daemon) -> Iterator[ContainerdRuntime]:
    found = ContainerdRuntime(ctd.socket)
    yield found
    found.close()


def _task(ctd: Daemon, container_id: str) -> tuple[str, int]:
    """(status, pid) as ``ctr task ls`` prints them: containerd's own state."""
    for line in ctd.ctr("task", "ls", namespace=NS).splitlines()[1:]:
        task, pid, status = line.split()
        if task == container_id:
            return status, int(pid)
    return "NONE", 0


def _sh(ctd: Daemon, container_id: str, script: str) -> bool:
    result = subprocess.run(
        ["ctr", "-a", ctd.socket, "-n", NS, "task", "exec", "--exec-id", unique("x"),
         container_id, "sh", "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode == 0 and "respond" in result.stdout


def _ip(*args: str, pid: int | None = None) -> None:
    prefix = ["nsenter", f"--net=/proc/{pid}/ns/net"] if pid else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=30)


def test_containerd_task_isolated_and_released(ctd: Daemon, runtime: ContainerdRuntime) -> None:
    client, server = (ctd.run("respond", namespace=NS, labels=False) for _ in range(2))
    (_, client_pid), (_, server_pid) = _task(ctd, client), _task(ctd, server)
    a, b = f"rsp{uuid.uuid4().hex[:8]}", f"rsp{uuid.uuid4().hex[:8]}"
    _ip("link", "add", a, "type", "veth", "peer", "name", b)  # a link of our own, moved
    _ip("link", "set", a, "netns", str(client_pid))  # into the two tasks' namespaces
    _ip("link", "set", b, "netns", str(server_pid))
    for pid, name, address in ((client_pid, a, "10.213.7.1/24"), (server_pid, b, "10.213.7.2/24")):
        _ip("addr", "add", address, "dev", name, pid=pid)
        _ip("link", "set", name, "up", pid=pid)
    ctd.exec(
        server,
        f"mkdir -p /www && echo respond > /www/index.html && httpd -p {PORT} -h /www",
        namespace=NS,
    )
    get = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 10.213.7.2 {PORT}"
    assert _sh(ctd, client, get)

    reference = f"containerd://{NS}/{client}"
    done = drifttools.respond(
        reference,
        options=ResponseOptions(isolate=True, preserve=False),
        yes=True,
        runtime=runtime,
    )
    assert done.ok, done.outcomes
    assert netns.holds(read_back(client_pid))
    assert not _sh(ctd, client, get)
    assert _sh(ctd, server, f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 {PORT}")
    released = drifttools.release(reference, yes=True, runtime=runtime)
    assert released.ok and released.outcomes[0].result["isolation_removed"] is True
    assert _sh(ctd, client, get)


def test_containerd_freeze_then_terminate_a_pod(ctd: Daemon, runtime: ContainerdRuntime) -> None:
    pod = unique("respond-pod")
    container_id = ctd.run(pod, namespace=NS)
    reference = f"containerd://{NS}/{container_id}"
    frozen = drifttools.respond(
        reference, options=ResponseOptions(freeze=True, preserve=False), yes=True, runtime=runtime
    )
    assert frozen.ok and _task(ctd, container_id)[0] == "PAUSED"
    assert frozen.outcomes[0].result == {"status_before": "running", "status_after": "paused"}

    options = ResponseOptions(terminate=True, preserve=False, restart_wait=0.5)
    planned = drifttools.respond(reference, options=options, runtime=runtime)
    assert "kubelet restarts container app" in planned.plan[0].notes[0]
    done = drifttools.respond(reference, options=options, yes=True, runtime=runtime)
    assert done.ok, done.outcomes
    assert _task(ctd, container_id)[0] == "NONE"  # killed (though paused) and deleted
    result = done.outcomes[0].result
    assert result["status_after"] == "stopped"
    assert result["restart"]["seen"] is False  # no kubelet here: recorded, not invented
    assert container_id in ctd.ctr("containers", "ls", "-q", namespace=NS)  # record kept


def test_containerd_host_network_task_refused(ctd: Daemon, runtime: ContainerdRuntime) -> None:
    container_id = ctd.run("respond", namespace=NS, labels=False, extra=("--net-host",))
    with pytest.raises(ResponseRefused, match="host's network"):
        drifttools.respond(
            f"containerd://{NS}/{container_id}",
            options=ResponseOptions(isolate=True),
            runtime=runtime,
        )


def test_a_pods_restart_by_its_kubelet_is_recorded(ctd: Daemon, runtime: ContainerdRuntime) -> None:
    pod = unique("respond-pod")
    first = ctd.run(pod)  # in k8s.io, with the CRI labels a kubelet sets
    replacement: list[str] = []

    def kubelet() -> None:  # the test plays the kubelet: a new attempt, same pod and name
        time.sleep(1)
        replacement.append(ctd.run(pod))

    restarter = threading.Thread(target=kubelet)
    restarter.start()
    try:
        done = drifttools.respond(
            f"k8s://default/{pod}/app",
            options=ResponseOptions(terminate=True, preserve=False, restart_wait=30),
            yes=True,
            runtime=runtime,
        )
    finally:
        restarter.join()
    assert done.ok and done.container.id == first, done.outcomes
    restart = done.outcomes[0].result["restart"]
    assert restart["seen"] is True and restart["id"] == replacement[0]
    ended = [json.loads(line) for line in done.log.splitlines()][-1]
    assert ended["detail"]["result"]["restart"]["id"] == replacement[0]
