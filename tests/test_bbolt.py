"""The read-only bbolt reader, on a real containerd ``meta.db`` (ctr is the oracle)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from drifttools.acquisition.runtimes.bbolt import BoltDB, BoltError, Bucket
from drifttools.acquisition.runtimes.containerd_root import META_DB
from tests.containerd_daemon import cleanup_daemon, start_daemon

LABELS = {f"drifttools.test/key-{n:04d}": f"value-{n}" * 3 for n in range(600)}


@pytest.fixture(scope="module")
def database(
    containerd_image_tar: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """A stopped containerd's root: a namespace with 600 labels (many leaf pages under a
    branch page), a container (its spec spans pages), and what ctr said about them."""
    daemon = start_daemon(tmp_path_factory.mktemp("bbolt"), containerd_image_tar)
    try:
        daemon.ctr("namespaces", "create", "labelled")
        daemon.ctr("namespaces", "label", "labelled", *(f"{k}={v}" for k, v in LABELS.items()))
        container_id = daemon.run("pod", extra=("--env", "BIG=" + "x" * 9000))
        info = json.loads(daemon.ctr("containers", "info", container_id))
        namespaces = daemon.ctr("namespaces", "ls", "-q").split()
        daemon.stop(container_id)
        daemon.shutdown()
        yield {
            "path": daemon.root / META_DB,
            "container": container_id,
            "info": info,
            "namespaces": namespaces,
        }
    finally:
        cleanup_daemon(daemon)


def test_reads_what_ctr_reports(database: dict) -> None:
    before = database["path"].stat()
    with BoltDB(database["path"]) as db:
        v1 = db.root.bucket("v1")
        assert isinstance(v1, Bucket)
        assert sorted(name for name, _ in v1.buckets()) == sorted(database["namespaces"])
        labels = v1.bucket("labelled", "labels")
        assert labels is not None
        assert {k.decode(): v for k, v in labels.items()} == {
            k: v.encode() for k, v in LABELS.items()
        }
        record = v1.bucket("k8s.io", "containers", database["container"])
        assert record is not None
        assert record.text("image") == database["info"]["Image"]
        assert record.text("snapshotKey") == database["info"]["SnapshotKey"]
        assert record.bucket("labels").to_dict()["io.kubernetes.pod.name"] == b"pod"
        spec = record.value("spec")
        assert spec is not None and len(spec) > db.page_size  # read across overflow pages
        from google.protobuf import any_pb2

        assert json.loads(any_pb2.Any.FromString(spec).value) == database["info"]["Spec"]
    after = database["path"].stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


def test_falls_back_to_the_other_meta_page(database: dict, tmp_path: Path) -> None:
    copy = tmp_path / "meta.db"
    copy.write_bytes(database["path"].read_bytes())
    with BoltDB(copy) as db:
        page_size, txid = db.page_size, db.txid
    data = bytearray(copy.read_bytes())
    newest = 0 if int.from_bytes(data[16 + 48 : 16 + 56], "little") == txid else 1
    data[newest * page_size + 16 + 20] ^= 0xFF  # break the newest meta's checksum
    copy.write_bytes(bytes(data))
    with BoltDB(copy) as db:
        assert db.txid == txid - 1
        assert db.root.bucket("v1") is not None


@pytest.mark.parametrize(
    "damage",
    ["empty", "not-bolt", "truncated", "both-metas"],
)
def test_corrupt_files_raise_bolt_error(database: dict, tmp_path: Path, damage: str) -> None:
    original = database["path"].read_bytes()
    copy = tmp_path / "meta.db"
    if damage == "empty":
        copy.write_bytes(b"")
    elif damage == "not-bolt":
        copy.write_bytes(b"SQLite format 3\x00" + bytes(8192))
    elif damage == "truncated":
        copy.write_bytes(original[: 3 * 4096 + 100])
    else:
        data = bytearray(original)
        data[16] ^= 0xFF
        data[4096 + 16] ^= 0xFF
        copy.write_bytes(bytes(data))
    with pytest.raises(BoltError), BoltDB(copy) as db:
        list(db.root.bucket("v1", "labelled", "labels").items())


def test_opens_read_only(database: dict) -> None:
    with BoltDB(database["path"]) as db:
        flags = os.readlink(f"/proc/self/fd/{db._fd}")
        assert flags == str(database["path"])
        assert os.get_inheritable(db._fd) is False
        with open(f"/proc/self/fdinfo/{db._fd}") as info:
            mode = int(next(line for line in info if line.startswith("flags:")).split()[1], 8)
        assert mode & os.O_ACCMODE == os.O_RDONLY
