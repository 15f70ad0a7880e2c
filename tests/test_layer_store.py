"""Layers rebuilt from the Docker Engine's own store (tar-split + layer directory),
checked against ``docker save`` of the same image; confined walks of a subpath.

The engine's store is only ever read: every tampering happens on copies in tmp_path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from drifttools import _native
from drifttools.baseline.images.layer_store import (
    StoredLayer,
    chain_ids,
    engine_layers,
    read_stored_layer,
)
from drifttools.errors import DigestMismatch, ImageNotFound, LayerStoreError, LayerStoreMismatch
from tests.engine import Engine, docker


def _diff_ids(tag: str) -> list[str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", tag))


def _saved_layers(save: Path) -> list[_native.LayerIndex]:
    """Each layer of a ``docker save`` tar (legacy layout), read in place."""
    with tarfile.open(save) as archive:
        offsets = {m.name: (m.offset_data, m.size) for m in archive if m.isfile()}
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    found = []
    for name in manifest[0]["Layers"]:
        offset, size = offsets[name]
        found.append(_native.read_layer(str(save), offset=offset, length=size))
    return found


def _facts(entry: _native.Entry) -> tuple:
    return (
        entry.path,
        entry.kind,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.size,
        entry.mtime_ns,
        entry.sha256,
        entry.target,
        entry.xattrs,
    )


@pytest.fixture(scope="module")
def stored(engine: Engine, busybox_image: dict) -> list[tuple[StoredLayer, _native.LayerIndex]]:
    """The busybox image's layers in the engine's store, with the ``docker save`` copies."""
    diff_ids = _diff_ids(busybox_image["tag"])
    layers = engine_layers(diff_ids, data_root=engine.data_root, driver=engine.driver)
    saved = _saved_layers(busybox_image["save"])
    assert len(layers) == len(saved) == 4
    return list(zip(layers, saved, strict=True))


@pytest.mark.both_drivers
def test_every_layer_rebuilt_from_the_store_is_the_docker_save_layer(stored: list) -> None:
    for layer, saved in stored:
        index = read_stored_layer(layer)
        assert f"sha256:{index.uncompressed_sha256}" == layer.diff_id
        assert index.uncompressed_sha256 == saved.uncompressed_sha256
        assert index.uncompressed_size == saved.uncompressed_size
        assert index.compression == "none"
        assert index.compressed_sha256 == index.uncompressed_sha256
        assert [_facts(e) for e in index.entries] == [_facts(e) for e in saved.entries]
        assert index.entries.error_count == 0
    paths = {e.path for layer, _ in stored for e in read_stored_layer(layer).entries}
    assert {"/bin/busybox", "/opt/app/a", "/opt/app/hard", "/entrypoint.sh"} <= paths


@pytest.mark.both_drivers
def test_layer_records_follow_the_chain_ids(stored: list, busybox_image: dict) -> None:
    diff_ids = _diff_ids(busybox_image["tag"])
    chains = chain_ids(diff_ids)
    assert chains[0] == diff_ids[0]
    expected = "sha256:" + hashlib.sha256(f"{chains[0]} {diff_ids[1]}".encode()).hexdigest()
    assert chains[1] == expected
    for (layer, _), chain in zip(stored, chains, strict=True):
        assert layer.chain_id == chain
        assert layer.tar_split.parent.name == chain.removeprefix("sha256:")
        assert (layer.tar_split.parent / "diff").read_text() == layer.diff_id
        assert layer.directory.is_dir() and layer.directory.name == "diff"


def _copy(layer: StoredLayer, tmp_path: Path) -> StoredLayer:
    """A copy of a stored layer (``cp -a``) that the test may change."""
    directory = tmp_path / "diff"
    subprocess.run(["cp", "-a", str(layer.directory), str(directory)], check=True)
    tar_split = tmp_path / "tar-split.json.gz"
    shutil.copy2(layer.tar_split, tar_split)
    return StoredLayer(layer.diff_id, layer.chain_id, tar_split, directory)


def _layer_with(stored: list, path: str) -> tuple[StoredLayer, _native.LayerIndex]:
    for layer, saved in stored:
        if any(e.path == path and e.kind == "file" for e in saved.entries):
            return layer, saved
    raise AssertionError(f"no layer holds {path}")


def _by_path(index: _native.LayerIndex) -> dict[str, _native.Entry]:
    return {e.path: e for e in index.entries}


def test_an_untouched_copy_still_rebuilds_the_layer(stored: list, tmp_path: Path) -> None:
    layer, saved = _layer_with(stored, "/entrypoint.sh")
    index = read_stored_layer(_copy(layer, tmp_path))
    assert index.uncompressed_sha256 == saved.uncompressed_sha256
    assert index.entries.error_count == 0


@pytest.mark.both_drivers
def test_a_same_size_change_in_a_lower_layer_is_pinned_to_its_file(
    stored: list, tmp_path: Path
) -> None:
    layer, saved = _layer_with(stored, "/entrypoint.sh")
    copy = _copy(layer, tmp_path)
    target = copy.directory / "entrypoint.sh"
    content = bytearray(target.read_bytes())
    content[-2] ^= 0x01  # same size, one byte differs
    target.write_bytes(bytes(content))

    index = read_stored_layer(copy)
    assert f"sha256:{index.uncompressed_sha256}" != layer.diff_id
    assert index.uncompressed_size == saved.uncompressed_size
    entries, expected = _by_path(index), _by_path(saved)
    changed = entries["/entrypoint.sh"]
    assert changed.error == (
        "stored layer: content differs from the checksum recorded in tar-split (crc64)"
    )
    assert changed.sha256 == hashlib.sha256(bytes(content)).hexdigest()
    assert changed.sha256 != expected["/entrypoint.sh"].sha256
    assert index.entries.error_count == 1
    for path, entry in entries.items():
        if path != "/entrypoint.sh":
            assert _facts(entry) == _facts(expected[path])


def test_a_deleted_file_does_not_stop_the_read(stored: list, tmp_path: Path) -> None:
    layer, saved = _layer_with(stored, "/opt/app/a")
    copy = _copy(layer, tmp_path)
    (copy.directory / "opt/app/a").unlink()

    index = read_stored_layer(copy)
    assert f"sha256:{index.uncompressed_sha256}" != layer.diff_id
    entries, expected = _by_path(index), _by_path(saved)
    assert set(entries) == set(expected)
    gone = entries["/opt/app/a"]
    assert gone.error == "stored layer: file missing"
    assert gone.sha256 is None
    assert index.entries.error_count == 1
    # the hardlink to it is a header only: untouched
    assert entries["/opt/app/hard"].error is None


def test_a_file_swapped_for_a_symlink_to_the_host_is_never_followed(
    stored: list, tmp_path: Path
) -> None:
    layer, _ = _layer_with(stored, "/bin/busybox")
    copy = _copy(layer, tmp_path)
    busybox = copy.directory / "bin/busybox"
    busybox.unlink()
    busybox.symlink_to("/bin/busybox")  # the host's, same content even

    index = read_stored_layer(copy)
    assert f"sha256:{index.uncompressed_sha256}" != layer.diff_id
    entry = _by_path(index)["/bin/busybox"]
    assert entry.error is not None and entry.error.startswith("stored layer: symlink")
    assert entry.sha256 is None

    # a parent directory swapped for a symlink: the same
    copy_dir = copy.directory / "bin"
    shutil.rmtree(copy_dir)
    copy_dir.symlink_to("/bin")
    entry = _by_path(read_stored_layer(copy))["/bin/busybox"]
    assert entry.error is not None and entry.error.startswith("stored layer: symlink")


def test_a_corrupt_tar_split_is_a_layer_error(tmp_path: Path) -> None:
    from drifttools.errors import LayerCorrupt

    diff_id = "sha256:" + hashlib.sha256(b"a layer").hexdigest()
    layer = StoredLayer(diff_id, diff_id, tmp_path / "tar-split.json.gz", tmp_path / "diff")
    layer.directory.mkdir()
    layer.tar_split.write_bytes(b'{"type":2,"payload":"not base64!","position":0}\n')
    with pytest.raises(LayerCorrupt, match="tar-split"):
        read_stored_layer(layer)
    layer.tar_split.unlink()
    with pytest.raises(ImageNotFound):
        read_stored_layer(layer)


def _fake_store(stored: list, root: Path, driver: str) -> list[StoredLayer]:
    """A copy of the image's layer records and directories under ``root``."""
    for layer, _ in stored:
        record = root / "image" / driver / "layerdb" / "sha256" / layer.tar_split.parent.name
        shutil.copytree(layer.tar_split.parent, record)
        cache_id = (record / "cache-id").read_text()
        target = root / driver / cache_id / "diff"
        target.parent.mkdir(parents=True)
        subprocess.run(["cp", "-a", str(layer.directory), str(target)], check=True)
    return [layer for layer, _ in stored]


@pytest.mark.both_drivers
def test_missing_or_mismatched_store_records(engine: Engine, stored: list, tmp_path: Path) -> None:
    driver = engine.driver
    diff_ids = [layer.diff_id for layer, _ in stored]
    _fake_store(stored, tmp_path, driver)
    copies = engine_layers(diff_ids, data_root=tmp_path, driver=driver)
    assert [read_stored_layer(c).uncompressed_sha256 for c in copies] == [
        d.removeprefix("sha256:") for d in diff_ids
    ]

    unknown = "sha256:" + hashlib.sha256(b"no such layer").hexdigest()
    with pytest.raises(ImageNotFound, match="layer 2/2"):
        engine_layers([diff_ids[0], unknown], data_root=tmp_path, driver=driver)
    with pytest.raises(FileNotFoundError):
        engine_layers([unknown], data_root=tmp_path, driver=driver)

    (copies[1].tar_split.parent / "diff").write_text(unknown)
    with pytest.raises(LayerStoreMismatch, match="holds diff_id") as caught:
        engine_layers(diff_ids, data_root=tmp_path, driver=driver)
    assert isinstance(caught.value, DigestMismatch) and isinstance(caught.value, ValueError)
    (copies[1].tar_split.parent / "diff").write_text(diff_ids[1])

    copies[2].tar_split.unlink()
    with pytest.raises(ImageNotFound, match="tar-split"):
        engine_layers(diff_ids, data_root=tmp_path, driver=driver)
    shutil.rmtree(copies[0].directory)
    with pytest.raises(ImageNotFound, match="layer directory"):
        engine_layers(diff_ids[:1], data_root=tmp_path, driver=driver)

    with pytest.raises(LayerStoreError, match="not 'vfs'"):
        engine_layers(diff_ids, data_root=tmp_path, driver="vfs")
    with pytest.raises(LayerStoreError, match="malformed diff_id"):
        engine_layers(["sha256:../../etc"], data_root=tmp_path, driver=driver)


# ---------------------------------------------------------------- walk(subpath=...)


def test_a_subpath_symlink_is_never_followed_to_host_content(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real/dir").mkdir(parents=True)
    (root / "real/dir/file").write_bytes(b"inside")
    (root / "plain").write_bytes(b"p")
    (root / "sub").symlink_to("/etc")
    (root / "rel").symlink_to("real")
    (root / "dev").mkdir()
    (root / "dev/shm").symlink_to("/etc")

    for subpath in ("sub", "/sub/ssl", "/rel", "/dev/shm"):
        with pytest.raises(OSError) as caught:
            _native.walk(str(root), subpath=subpath)
        assert caught.value.errno == errno.ELOOP, subpath
        assert "symbolic link" in str(caught.value)
    with pytest.raises(NotADirectoryError, match="not a directory"):
        _native.walk(str(root), subpath="/plain")
    with pytest.raises(FileNotFoundError):
        _native.walk(str(root), subpath="/missing")

    for subpath in ("/real", "real/", "/../../real"):
        tree = _native.walk(str(root), subpath=subpath)
        assert [(e.path, e.kind) for e in tree] == [("/dir", "dir"), ("/dir/file", "file")]
        assert tree[1].sha256 == hashlib.sha256(b"inside").hexdigest()
    # through the /proc/<pid>/root magic link, as for a container
    tree = _native.walk(f"/proc/{os.getpid()}/root{root}", subpath="/real/dir")
    assert [e.path for e in tree] == ["/file"]
    with pytest.raises(OSError) as caught:
        _native.walk(f"/proc/{os.getpid()}/root{root}", subpath="/dev/shm")
    assert caught.value.errno == errno.ELOOP


def test_a_container_subpath_is_walked_inside_its_root(busybox_image: dict, container) -> None:
    name = container(busybox_image["tag"])
    docker("exec", name, "/bin/sh", "-c", "echo shm > /dev/shm/note && ln -s /etc /tmp/evil")
    pid = docker("inspect", "--format", "{{.State.Pid}}", name).strip()
    root = f"/proc/{pid}/root"
    tree = _native.walk(root, subpath="/dev/shm")
    assert [(e.path, e.sha256) for e in tree] == [("/note", hashlib.sha256(b"shm\n").hexdigest())]
    with pytest.raises(OSError) as caught:
        _native.walk(root, subpath="/tmp/evil")  # /etc of the container, let alone the host
    assert caught.value.errno == errno.ELOOP
