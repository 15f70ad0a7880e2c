"""The stored image index answers like the merge it was written from, and is never
trusted when its bytes are not the ones written."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from drifttools import _native
from drifttools.baseline.cache import LayerCache
from drifttools.baseline.index import BaselineStore, IndexedEntries, chain_id, database_candidates
from drifttools.models import ImageIndex
from tests.baselines import merged_baseline
from tests.tarbuild import directory, file, hardlink, layer_stacks, layer_tar, symlink, whiteout

HEADER_LEN = 128


def stored(cache_dir: Path, layers: list[bytes]) -> tuple[BaselineStore, list[str], ImageIndex]:
    """Cache ``layers`` as verified and write their image index; and the baseline of this
    run's merge of them (its own index, not kept)."""
    cache = LayerCache(cache_dir)
    indexes = [_native.read_layer(io.BytesIO(layer)) for layer in layers]
    diff_ids = [f"sha256:{index.uncompressed_sha256}" for index in indexes]
    for diff_id, index in zip(diff_ids, indexes, strict=True):
        cache.put(diff_id, index)
    trees = [index.entries for index in indexes]
    merged = _native.MergedLayers(trees)
    BaselineStore(cache).write(diff_ids, indexes, merged, database_candidates(trees))
    return BaselineStore(cache), diff_ids, merged_baseline(trees)


def opened(store: BaselineStore, diff_ids: list[str]) -> IndexedEntries:
    found = store.open(diff_ids)
    assert found is not None
    return found.entries


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_stacks())
def test_lookups_and_subtrees_equal_the_merged_tree(layers: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as work:
        store, diff_ids, merged = stored(Path(work), layers)
        found = store.open(diff_ids)
        assert found is not None
        entries = found.entries
        assert len(entries) == len(merged.entries)
        for path, want in merged.entries.items():
            got = entries[path]
            assert (got.layer, got.facts) == (want.layer, want.facts)
            assert path in entries
            subtree = sorted(
                (p for p in merged.entries if p.startswith(path.rstrip("/") + "/")),
                key=str.encode,
            )
            assert entries.below(path) == subtree
        assert entries.get("/no/such/path") is None and "/no/such/path" not in entries
        assert entries.below("/") == sorted(merged.entries, key=str.encode)
        assert found.links == merged.links and found.errors == merged.errors
        assert entries.scans == 0 and not entries.rebuilt


def test_the_index_is_keyed_by_the_layer_chain(tmp_path: Path) -> None:
    bottom = layer_tar([directory("etc"), file("etc/motd", b"hi")])
    top = layer_tar([whiteout("etc/motd"), file("etc/issue", b"x")])
    store, diff_ids, _ = stored(tmp_path, [bottom, top])
    assert chain_id(diff_ids[:1]) == diff_ids[0]
    assert chain_id(diff_ids) != chain_id(diff_ids[::-1])
    assert store.open(diff_ids[:1]) is None  # the bottom layer alone is another image
    entries = opened(store, diff_ids)
    assert "/etc/motd" not in entries and entries["/etc/issue"].layer == 1


def many_files() -> list[bytes]:
    members = [directory("d")]
    members += [file(f"d/f{i:05d}", str(i).encode()) for i in range(3000)]
    members += [symlink("d/link", "f00001"), hardlink("d/hard", "d/f00002")]
    return [layer_tar(members)]


def test_a_corrupt_block_is_found_on_first_read_and_the_index_rebuilt(tmp_path: Path) -> None:
    store, diff_ids, merged = stored(tmp_path, many_files())
    path = store._path(diff_ids)
    data = bytearray(path.read_bytes())
    data[HEADER_LEN + 1] ^= 0x20  # inside the first path: the first block
    path.write_bytes(bytes(data))
    entries = opened(store, diff_ids)  # the header and block table still check out
    first = min(merged.entries, key=str.encode)
    assert entries[first].facts == merged.entries[first].facts
    assert entries.rebuilt
    assert path.read_bytes() != bytes(data)  # written again
    assert not opened(store, diff_ids).rebuilt
    checked, blocks = entries.native.blocks_checked
    assert 0 < checked < blocks


@pytest.mark.parametrize("damage", ["truncate", "header", "block table", "extend"])
def test_a_damaged_index_is_refused_at_open_and_removed(tmp_path: Path, damage: str) -> None:
    store, diff_ids, _ = stored(tmp_path, many_files())
    path = store._path(diff_ids)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "header":
        data[40] ^= 1
    elif damage == "block table":
        data[-3] ^= 1
    else:
        data += b"\0"
    path.write_bytes(bytes(data))
    assert store.open(diff_ids) is None
    assert not path.exists()


def test_an_index_of_another_chain_under_this_name_is_refused(tmp_path: Path) -> None:
    store, diff_ids, _ = stored(tmp_path, many_files())
    other = [f"sha256:{hashlib.sha256(b'other').hexdigest()}"]
    store._path(diff_ids).rename(store._path(other))
    assert store.open(other) is None


def test_the_package_readers_paths_are_recorded_and_an_older_index_is_rebuilt(
    tmp_path: Path,
) -> None:
    databases = ["var/lib/dpkg/status", "usr/lib/python3/dist-packages/a-1.dist-info/RECORD"]
    gone = "var/lib/dpkg/info/old.list"
    layers = [
        layer_tar([file(path, b"x") for path in [*databases, gone, "usr/bin/tool"]]),
        layer_tar([whiteout(gone)]),
    ]
    store, diff_ids, _ = stored(tmp_path, layers)
    found = store.open(diff_ids)
    assert found is not None
    assert found.database_paths == {f"/{path}" for path in databases}
    assert found.entries.scans == 0

    path = store._path(diff_ids)
    meta = json.loads(_native.BaselineIndex.open(path).meta())
    del meta["database_paths"]
    meta["format"] = 1  # written before the index recorded them
    trees = [_native.read_layer(io.BytesIO(layer)).entries for layer in layers]
    _native.MergedLayers(trees).write(str(path), json.dumps(meta).encode())
    assert store.open(diff_ids) is None and not path.exists()
