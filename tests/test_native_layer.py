"""The native layer reader on real tar streams: formats, hashes, caps, corruption."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drifttools import _native
from tests.tarbuild import Member, compress, directory, file, hardlink, layer_tar, symlink


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_compression_is_detected_by_magic_and_every_digest_matches_hashlib(
    tmp_path: Path, compression: str
) -> None:
    tar = layer_tar(
        [directory("etc"), file("etc/passwd", b"root:x:0:0\n"), symlink("sh", "/bin/busybox")]
    )
    blob = compress(tar, compression)
    path = tmp_path / "layer.bin"  # no telling extension on purpose
    path.write_bytes(blob)
    index = _native.read_layer(str(path))
    assert index.compression == compression
    assert index.uncompressed_sha256 == sha(tar)
    assert index.uncompressed_size == len(tar)
    assert index.compressed_sha256 == sha(blob)
    assert index.compressed_size == len(blob)
    entries = {e.path: e for e in index.entries}
    assert entries["/etc/passwd"].sha256 == sha(b"root:x:0:0\n")
    assert entries["/etc"].kind == "dir"
    assert entries["/sh"].target == "/bin/busybox"


def test_a_byte_range_of_an_outer_archive_and_a_file_object_read_the_same(tmp_path: Path) -> None:
    tar = layer_tar([file("a", b"A" * 5000)])
    blob = compress(tar, "gzip")
    outer = tmp_path / "outer.bin"
    outer.write_bytes(b"x" * 777 + blob + b"y" * 99)
    ranged = _native.read_layer(str(outer), offset=777, length=len(blob))
    streamed = _native.read_layer(io.BytesIO(blob))
    assert ranged.compressed_sha256 == streamed.compressed_sha256 == sha(blob)
    assert (
        [e.sha256 for e in ranged.entries]
        == [e.sha256 for e in streamed.entries]
        == [sha(b"A" * 5000)]
    )


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_every_tar_dialect(fmt: int) -> None:
    deep = "/".join(["d" * 40] * 3)
    members = [directory(deep.split("/")[0]), file(f"{deep}/{'n' * 60}", b"deep")]
    if fmt == tarfile.USTAR_FORMAT:
        members = [file(f"{'p' * 90}/{'n' * 90}", b"deep")]
    entries = list(_native.read_layer(io.BytesIO(layer_tar(members, fmt))).entries)
    expected = "/" + members[-1].path
    assert expected in {e.path for e in entries}


def test_hardlinks_devices_fifos_and_xattrs_are_described() -> None:
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00" + b"\x00" * 12
    members = [
        file("bin/tool", b"tool", 0o4755),
        hardlink("bin/alias", "bin/tool"),
        Member("pipe", "fifo"),
        Member("bin/ping", "file", b"ping", 0o755, xattrs=(("security.capability", cap),)),
    ]
    entries = {e.path: e for e in _native.read_layer(io.BytesIO(layer_tar(members))).entries}
    assert entries["/bin/alias"].kind == "hardlink" and entries["/bin/alias"].target == "/bin/tool"
    assert entries["/bin/tool"].mode == 0o4755
    assert entries["/pipe"].kind == "fifo"
    assert entries["/bin/ping"].xattrs["security.capability"] == cap


def test_a_truncated_layer_is_an_error_not_a_crash() -> None:
    tar = layer_tar([file("a", b"x" * 10000)])
    with pytest.raises(ValueError, match=r"corrupt|truncated"):
        _native.read_layer(io.BytesIO(tar[:3000]))


def test_a_bad_header_checksum_is_an_error() -> None:
    tar = bytearray(layer_tar([file("a", b"x")]))
    tar[148:156] = b"0000000\0"
    with pytest.raises(ValueError, match="corrupt"):
        _native.read_layer(io.BytesIO(bytes(tar)))


def test_caps_stop_tar_bombs() -> None:
    many = layer_tar([file(f"f{i}", b"") for i in range(50)])
    with pytest.raises(ValueError, match="cap"):
        _native.read_layer(io.BytesIO(many), max_entries=10)
    big = layer_tar([file("big", b"\0" * 100_000)])
    with pytest.raises(ValueError, match="cap"):
        _native.read_layer(io.BytesIO(compress(big, "gzip")), max_bytes=50_000)
    long_name = layer_tar([file("x" * 3000, b"")], tarfile.PAX_FORMAT)
    with pytest.raises(ValueError, match="cap"):
        _native.read_layer(io.BytesIO(long_name), max_path_len=1024)


def test_paths_escaping_the_root_are_clamped_and_flagged() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    [entry] = list(_native.read_layer(io.BytesIO(buffer.getvalue())).entries)
    assert entry.path == "/etc/evil"
    assert entry.error is not None and "unsafe path" in entry.error


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=3000), min_size=1, max_size=8),
    st.sampled_from(["none", "gzip", "zstd"]),
)
def test_member_digests_equal_hashlib(contents: list[bytes], compression: str) -> None:
    tar = layer_tar([file(f"f{i}", data) for i, data in enumerate(contents)])
    index = _native.read_layer(io.BytesIO(compress(tar, compression)))
    assert [e.sha256 for e in index.entries] == [sha(data) for data in contents]
    assert index.uncompressed_sha256 == sha(tar)


def test_layer_index_round_trips_and_detects_corruption() -> None:
    index = _native.read_layer(io.BytesIO(layer_tar([file("a", b"1"), directory("d")])))
    data = index.to_bytes()
    again = _native.LayerIndex.from_bytes(data)
    assert [(e.path, e.sha256) for e in again.entries] == [
        (e.path, e.sha256) for e in index.entries
    ]
    assert again.uncompressed_sha256 == index.uncompressed_sha256
    for broken in (
        data[:-1],
        data[: len(data) // 2],
        data[:10] + bytes([data[10] ^ 1]) + data[11:],
    ):
        with pytest.raises(ValueError):
            _native.LayerIndex.from_bytes(broken)


@given(st.binary(max_size=64))
def test_path_escaping_round_trips_any_bytes(raw: bytes) -> None:
    text = _native.escape_path(raw)
    assert _native.unescape_path(text) == raw
    if b"\\" not in raw:
        try:
            assert text == raw.decode("utf-8")
        except UnicodeDecodeError:
            assert "\\x" in text
