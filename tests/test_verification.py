"""A cached layer is verified for this input: a lower dir's stat fingerprint, a verified-by-cache
layer that says so. (Archives: tests/test_image.py; the engine's lower dirs: test_live_docker.)"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from drifttools import LayerCache, _native
from drifttools.baseline.verification import (
    BY_CACHE,
    VerificationRecords,
    directory_fingerprint,
    directory_unchanged,
    from_cache,
)
from drifttools.models import Layer

DIFF_ID = "sha256:" + "ab" * 32


def _restore_mtime(path: Path, change: Callable[[], None]) -> None:
    before = path.stat()
    change()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


TAMPERING: dict[str, Callable[[Path], None]] = {
    "same size, mtime put back": lambda d: _restore_mtime(
        d / "bin" / "ls", lambda: (d / "bin" / "ls").write_bytes(b"EVIL")
    ),
    "chmod": lambda d: (d / "bin" / "ls").chmod(0o4755),
    "file added": lambda d: (d / "bin" / "sh").write_bytes(b""),
    "file swapped by rename": lambda d: os.replace(d / "etc" / "motd", d / "bin" / "ls"),
}


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    directory = tmp_path / "diff"
    (directory / "bin").mkdir(parents=True)
    (directory / "etc").mkdir()
    (directory / "bin" / "ls").write_bytes(b"\x7fELF")
    (directory / "etc" / "motd").write_bytes(b"hi\n")
    return directory


@pytest.mark.parametrize("how", TAMPERING)
def test_a_lower_dir_changed_after_verification_is_noticed(
    lower: Path, tmp_path: Path, how: str
) -> None:
    cache = LayerCache(tmp_path / "cache")
    VerificationRecords(cache).put(DIFF_ID, lower)
    assert directory_unchanged(cache, DIFF_ID, lower)
    (lower / "etc" / "motd").read_bytes()  # reading changes nothing
    assert directory_unchanged(cache, DIFF_ID, lower)
    TAMPERING[how](lower)
    assert not directory_unchanged(cache, DIFF_ID, lower)


def test_no_record_or_another_directory_is_not_a_recheck(lower: Path, tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    assert not directory_unchanged(cache, DIFF_ID, lower)
    VerificationRecords(cache).put(DIFF_ID, lower)
    other = tmp_path / "other"
    lower.rename(other)
    assert not directory_unchanged(cache, DIFF_ID, other)


def test_a_layer_not_rechecked_is_verified_by_cache_not_verified(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    VerificationRecords(cache).put(DIFF_ID)
    layer = Layer(DIFF_ID, None, "application/vnd.oci.image.layer.v1.tar", 0, None, True, "cache")
    by_cache = from_cache(layer, cache, rechecked=False)
    assert (by_cache.source, by_cache.verified) == (BY_CACHE, False)
    assert by_cache.verified_at and by_cache.verified_at.endswith("Z")
    rechecked = from_cache(layer, cache, rechecked=True)
    assert rechecked.verified and rechecked.verified_at == by_cache.verified_at


def test_the_native_fingerprint_is_the_one_recorded_before_it_was_native(tmp_path: Path) -> None:
    """Records written by the Python form (json.dumps lines) still compare equal."""
    names = ["plain", 'quo"te', "back\\slash", "new\nline", "é😀", "del\x7f", "tab\t"]
    for name in names:
        (tmp_path / name).write_text(name)
    (tmp_path / "sub").mkdir()
    os.symlink("plain", tmp_path / "sub" / "link")
    os.mkfifo(tmp_path / "sub" / "fifo")
    (tmp_path / os.fsdecode(b"raw\xff")).write_bytes(b"x")
    digest = hashlib.sha256()
    for entry in _native.walk(str(tmp_path), hash_max_size=0):
        fields = (entry.path, entry.kind, entry.inode, entry.size, entry.mode, entry.uid)
        fields += (entry.gid, entry.mtime_ns, entry.ctime_ns, entry.error)
        digest.update(json.dumps(fields).encode() + b"\n")
    assert directory_fingerprint(tmp_path) == digest.hexdigest()
