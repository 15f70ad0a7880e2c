"""Native failures arrive as the library's own exception classes (mapped once in Rust),
still instances of the builtin they used to be, with the same messages."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from drifttools import _native
from drifttools.errors import (
    ContentUnavailable,
    DriftError,
    IndexCorrupt,
    LayerCorrupt,
    MalformedPath,
    NotRegularFile,
)
from tests.tarbuild import file, layer_tar


def test_a_corrupt_layer_is_layer_corrupt_from_a_stream_and_from_a_path(tmp_path: Path) -> None:
    tar = bytearray(layer_tar([file("a", b"x")]))
    tar[148:156] = b"0000000\0"
    path = tmp_path / "layer.tar"
    path.write_bytes(bytes(tar))
    for source in (io.BytesIO(bytes(tar)), str(path)):
        with pytest.raises(LayerCorrupt, match=r"^corrupt layer: .* at offset 0$") as caught:
            _native.read_layer(source)
        assert isinstance(caught.value, ValueError)


def test_a_cap_exceeded_is_layer_corrupt() -> None:
    many = layer_tar([file(f"f{i}", b"") for i in range(5)])
    with pytest.raises(LayerCorrupt, match=r"^layer exceeds cap: "):
        _native.read_layer(io.BytesIO(many), max_entries=2)


def test_a_corrupt_tar_split_is_layer_corrupt(tmp_path: Path) -> None:
    record = tmp_path / "tar-split.json"
    record.write_bytes(b"not json\n")
    (tmp_path / "diff").mkdir()
    with pytest.raises(LayerCorrupt, match=r"^corrupt layer: tar-split: "):
        _native.read_tar_split(record, tmp_path / "diff")


def test_damaged_stored_indexes_are_index_corrupt() -> None:
    tree = _native.read_layer(io.BytesIO(layer_tar([file("a", b"x")])))
    for cls, data, prefix in (
        (_native.Tree, tree.entries.to_bytes()[:-1], "corrupt tree: "),
        (_native.LayerIndex, tree.to_bytes()[:-1], "corrupt layer index: "),
    ):
        with pytest.raises(IndexCorrupt, match=f"^{prefix}") as caught:
            cls.from_bytes(data)
        assert isinstance(caught.value, ValueError)


def test_malformed_path_text_is_malformed_path(tmp_path: Path) -> None:
    with pytest.raises(MalformedPath, match="malformed escape"):
        _native.unescape_path("/a\\q")
    with pytest.raises(MalformedPath, match=r'^bad exclude path "/a\\\\q": '):
        _native.walk(tmp_path, exclude=["/a\\q"])
    with pytest.raises(MalformedPath, match=r'^bad subpath "/a\\\\q": '):
        _native.walk(tmp_path, subpath="/a\\q")
    with pytest.raises(MalformedPath) as caught:
        _native.read_file(str(tmp_path), "/a\\q")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, DriftError)


def test_read_file_of_a_fifo_is_not_regular_file_and_never_opens_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NotRegularFile) as caught:
        _native.read_file(str(tmp_path), "/pipe")
    assert str(caught.value) == f"not a regular file (never opened for reading): {tmp_path}/pipe"
    assert isinstance(caught.value, ContentUnavailable) and isinstance(caught.value, ValueError)


def test_os_failures_stay_builtin_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        _native.read_layer(tmp_path / "missing")
    assert not isinstance(caught.value, DriftError)
    assert caught.value.filename == str(tmp_path / "missing")
