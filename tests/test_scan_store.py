"""``scan --output`` and ``--bundle-dir`` through fsspec on a real S3-compatible server.

The server is moto's (``ThreadedMotoServer`` on 127.0.0.1), reached by s3fs as any S3
endpoint is (``AWS_ENDPOINT_URL``), by the library in this process and by the
``drifttools`` command in a child. The bucket keeps versions, so every object ever
written to it is listed afterwards: that is how the tests see that each record and
bundle was written once, whole, under its final name (no temporary object, no copy).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs
from moto.server import ThreadedMotoServer

import drifttools
from drifttools.errors import OutputError
from drifttools.fleet.store import ObjectStore, read_lines
from tests.command import EXE, one_clear_line
from tests.engine import docker

BUCKET = "drifttools-reports"


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """An S3 server on 127.0.0.1 with one versioned bucket; the environment that reaches it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "drifttools-test",
        "AWS_SECRET_ACCESS_KEY": "drifttools-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "NO_PROXY": "127.0.0.1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = _fs()
    fs.mkdir(BUCKET)
    fs.call_s3(
        "put_bucket_versioning", Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def _fs() -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(skip_instance_cache=True)


def _writes(prefix: str) -> dict[str, int]:
    """Every object ever written under ``prefix`` in the bucket (versions, deleted ones
    too), with how many times it was written."""
    reply = _fs().call_s3("list_object_versions", Bucket=BUCKET, Prefix=prefix)
    counts: dict[str, int] = {}
    for version in reply.get("Versions", []):
        counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def _broken() -> Iterator[str]:
    yield "a"
    raise RuntimeError("the scan died mid-write")


def test_store_writes_each_object_once_under_its_final_name(s3_env: dict[str, str]) -> None:
    store = ObjectStore(f"s3://{BUCKET}/lib/{{node}}/{{container}}.jsonl", "node/1")
    store.check()
    first = store.write_lines(store.url("docker-web-1"), ["a", "b"])
    store.write_lines(store.url(), ["summary"])
    assert first == f"s3://{BUCKET}/lib/node_1/docker-web-1.jsonl"
    assert dict(read_lines([f"s3://{BUCKET}/lib/*/*.jsonl"])) == {
        f"s3://{BUCKET}/lib/node_1/docker-web-1.jsonl": ["a", "b"],
        f"s3://{BUCKET}/lib/node_1/summary.jsonl": ["summary"],
    }

    with pytest.raises(RuntimeError):
        store.write_lines(store.url("half"), _broken())
    written = _writes("lib/")
    probes = [key for key in written if ".drifttools-probe-" in key]
    assert len(probes) == 1  # the check's probe, removed
    assert not _fs().exists(f"{BUCKET}/{probes[0]}")
    assert {k: n for k, n in written.items() if k not in probes} == {
        "lib/node_1/docker-web-1.jsonl": 1,
        "lib/node_1/summary.jsonl": 1,
    }
    with pytest.raises(OutputError, match="cannot write"):
        ObjectStore("s3://no-such-bucket/{node}.jsonl", "n").check()


def test_memory_store_renames_whole_objects_into_place() -> None:
    store = ObjectStore("memory://drifttools-test/{node}/{container}.jsonl", "n")
    store.check()
    store.write_lines(store.url("c"), ["x"])
    with pytest.raises(RuntimeError):
        store.write_lines(store.url("half"), _broken())
    assert dict(read_lines(["memory://drifttools-test/n/*"])) == {
        "memory:///drifttools-test/n/c.jsonl": ["x"]  # nothing else: no .part, no probe
    }


@pytest.fixture
def drifted(container, busybox_image: dict) -> str:
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", "mkdir -p /root/.ssh && echo k > /root/.ssh/authorized_keys")
    return name


def test_cli_scan_to_s3_and_summarize_it_back(
    s3_env: dict[str, str], drifted: str, tmp_path: Path
) -> None:
    env = {**os.environ, **s3_env, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EXE, *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )

    scanned = cli(
        "scan",
        "--runtime",
        "docker",
        "--name",
        drifted,
        "--node",
        "node-s3",
        "--format",
        "json",
        "--output",
        f"s3://{BUCKET}/cli/{{node}}/{{container}}.jsonl",
        "--bundle-dir",
        f"s3://{BUCKET}/cli/{{node}}/bundles",
        "--bundle-if",
        "low",
    )
    assert scanned.returncode == 1, scanned.stderr
    [record] = json.loads(scanned.stdout)["containers"]
    bundle = record["bundle"]
    key = bundle.removeprefix(f"s3://{BUCKET}/cli/node-s3/bundles/").removesuffix(".tar")
    assert key.startswith(f"docker-{drifted}-")  # {container}: runtime, name, short id
    written = {k: n for k, n in _writes("cli/").items() if ".drifttools-probe-" not in k}
    assert written == {
        f"cli/node-s3/{key}.jsonl": 1,
        "cli/node-s3/summary.jsonl": 1,
        f"cli/node-s3/bundles/{key}.tar": 1,
        f"cli/node-s3/bundles/{key}.tar.sha256": 1,
    }
    local = tmp_path / "bundle.tar"
    _fs().get_file(bundle.removeprefix("s3://"), str(local))
    assert drifttools.verify_bundle(local).ok
    digest = _fs().cat_file(f"{bundle.removeprefix('s3://')}.sha256").decode().split()[0]
    assert digest.removeprefix("sha256:") == drifttools.verify_bundle(local).sha256

    summarized = cli("summarize", f"s3://{BUCKET}/cli/*/*.jsonl", "--format", "json")
    assert summarized.returncode == 1, summarized.stderr
    summary = json.loads(summarized.stdout)
    assert [n["node"] for n in summary["nodes"]] == ["node-s3"]
    [row] = summary["containers"]
    assert row["container"]["name"] == drifted and row["bundle"] == bundle
    frame = drifttools.summarize(f"s3://{BUCKET}/cli/*/*.jsonl").to_pandas()
    assert list(frame["node"]) == ["node-s3"]

    # a bucket that is not there: one line, exit 2, before any container is read
    one_clear_line(cli("scan", "--output", "s3://no-such-bucket/{node}.jsonl"), "no-such-bucket")
