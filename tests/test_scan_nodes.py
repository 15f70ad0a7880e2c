"""``summarize`` over three "nodes" scanned for real: the machine's Docker Engine, a second
Docker Engine on kernel overlay2 (the ``overlay2_host`` fixture: the engine the other tests
share) and a standalone containerd with CRI-labelled pods. Replicas of one image on two engines are
one group; the drift only one of them has, on whichever node, makes it the outlier."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.command import EXE
from tests.containerd_daemon import cleanup_daemon, start_daemon
from tests.engine import docker, unique

COMMON = "echo cache > /tmp/cache"


def _on(host: str, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", "-H", host, *args], capture_output=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker -H {host} {' '.join(args)}: {result.stderr.decode()}")
    return result.stdout.decode()


@pytest.fixture(scope="module")
def three_nodes(
    busybox_image: dict,
    containerd_image_tar: Path,
    overlay2_host: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict]:
    prefix = unique("scan")
    tag = busybox_image["tag"]
    names = [f"{prefix}-web-{i}" for i in range(2)]
    for name in names:
        docker("run", "-d", "--name", name, tag)
        docker("exec", name, "sh", "-c", COMMON)
    host = overlay2_host
    _on(host, "load", "-i", str(busybox_image["save"]))
    odd = f"{prefix}-web-odd"
    _on(host, "run", "-d", "--name", odd, tag)
    _on(host, "exec", odd, "sh", "-c", f"{COMMON} && echo '* * * * * root sh' > /etc/crontab")
    ctd = start_daemon(tmp_path_factory.mktemp("scan-ctd"), containerd_image_tar)
    try:
        for pod in ("web-5f7c9-aaaaa", "web-5f7c9-bbbbb"):
            ctd.exec(ctd.run(pod), COMMON)
        yield {"prefix": prefix, "host": host, "ctd": ctd, "odd": odd, "names": names}
    finally:
        cleanup_daemon(ctd)
        docker("rm", "-f", *names, check=False)
        _on(host, "rm", "-f", odd, check=False)
        _on(host, "rmi", "-f", tag, check=False)


def _scan(node: str, out: Path, cache: Path, *args: str) -> dict:
    result = subprocess.run(
        [
            EXE,
            "scan",
            "--node",
            node,
            "--format",
            "json",
            "--output",
            f"{out}/{{node}}.jsonl",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_summarize_three_nodes(three_nodes: dict, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    prefix, ctd = three_nodes["prefix"], three_nodes["ctd"]
    a = _scan("node-a", out, cache, "--runtime", "docker", "--name", f"{prefix}-*")
    b = _scan(
        "node-b",
        out,
        cache,
        "--runtime",
        "docker",
        "--host",
        three_nodes["host"],
        "--name",
        f"{prefix}-*",
    )
    c = _scan("node-c", out, cache, "--runtime", "containerd", "--address", ctd.socket)
    assert [len(x["containers"]) for x in (a, b, c)] == [2, 1, 2]
    for node in (a, b, c):
        assert all(r["error"] is None for r in node["containers"]), node["containers"]
    pods = {r["container"]["label"] for r in c["containers"]}
    assert pods == {"default/web-5f7c9-aaaaa/app", "default/web-5f7c9-bbbbb/app"}
    result = subprocess.run(
        [EXE, "summarize", f"file://{out}/*.jsonl", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    view = json.loads(result.stdout)
    assert sorted(n["node"] for n in view["nodes"]) == ["node-a", "node-b", "node-c"]
    groups = {g["key"].split()[0]: g for g in view["groups"]}
    image = groups["image"]
    assert len(image["members"]) == 3  # two engines, one image: one group
    assert ["/", "/tmp/cache", "added"] in image["common"]
    pod = groups["pod"]
    assert pod["key"].startswith("pod default/web-5f7c9/app ")
    assert len(pod["members"]) == 2 and ["/", "/tmp/cache", "added"] in pod["common"]
    rows = {r["container"]["label"]: r for r in view["containers"]}
    odd = rows[three_nodes["odd"]]
    assert odd["container"]["node"] == "node-b"
    assert ["/", "/etc/crontab", "added"] in odd["outliers"] or [
        "/",
        "/etc/crontab",
        "modified",
    ] in odd["outliers"]
    assert view["containers"][0]["container"]["label"] == three_nodes["odd"]
    assert all(not rows[n]["outliers"] for n in three_nodes["names"])
    table = subprocess.run(
        [EXE, "summarize", *sorted(str(p) for p in out.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "node-b" in table.stdout and "OUTLIER" in table.stdout
