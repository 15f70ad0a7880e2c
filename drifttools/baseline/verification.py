"""Whether a cached layer is verified for *this* input, not only for the one it was cached from.

The layer cache holds indexes whose diff_id was checked when they were stored. A later run
that finds the diff_id there has not yet checked its own input. What is cheap is re-checked:

* an image archive's (or layout's, or stream's) layer blob is hashed as it is now and must be
  the bytes the cached index was made from (:attr:`LayerIndex.compressed_sha256`);
* an engine's unpacked layer directory (Docker's lower dir) is fingerprinted by a stat walk
  (name, mode, inode, size, owner, mtime and ctime of every entry; no file opened) and must
  equal the fingerprint recorded when the layer was verified from that directory (a record
  of another form, or none, does not: the layer is read and verified again);
* a content store blob is hashed like an archive's.

A layer that passes is ``source: "cache"``, verified. One that fails is read and verified
again. One that cannot be re-checked here (the runtime gives no layer to compare: a remote
engine, a snapshot lower dir never verified) is ``source: "verified-by-cache"``, **not**
verified, with ``verified_at`` the date the cache verified it.

When a layer was verified is recorded beside the cache (``<cache>/layers/verified-v1/<hex>``,
JSON: ``verified_at``, and for a directory its path and fingerprint), apart from the index
entries themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from drifttools import _native
from drifttools.atomic import atomic_write
from drifttools.baseline.cache import LayerCache
from drifttools.clock import now_rfc3339
from drifttools.errors import CacheError
from drifttools.models import Layer

#: ``Layer.source`` of a cached layer re-checked against this input.
CACHE = "cache"
#: ``Layer.source`` of a cached layer this run could not re-check (not verified).
BY_CACHE = "verified-by-cache"

_CHUNK = 1 << 20


def directory_fingerprint(directory: Path) -> str:
    """SHA-256 (hex) over a stat walk of ``directory``: name, mode, inode, size, owner,
    mtime and ctime of every entry, streamed, no file opened
    (:func:`drifttools._native.stat_fingerprint`). Any write, rename, chmod, chown, xattr
    change or replacement below it changes the ctime or inode of some entry, and so this
    value; reading changes nothing."""
    return _native.stat_fingerprint(directory)


def blob_sha256(source: str | Path | BinaryIO, offset: int = 0, length: int | None = None) -> str:
    """SHA-256 (hex) of a blob as it is now: a file (or a byte range of it) or a stream."""
    digest = hashlib.sha256()
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            handle.seek(offset)
            _hash_into(digest, handle, length)
    else:
        _hash_into(digest, source, length)
    return digest.hexdigest()


def _hash_into(digest: Any, handle: Any, length: int | None) -> None:
    left = length
    while left is None or left > 0:
        chunk = handle.read(_CHUNK if left is None else min(_CHUNK, left))
        if not chunk:
            break
        digest.update(chunk)
        if left is not None:
            left -= len(chunk)


class VerificationRecords:
    """When each cached layer was verified, and the fingerprint of the directory it was
    verified from (if it was). Beside the cache's index entries, never inside them."""

    def __init__(self, cache: LayerCache) -> None:
        self.directory = cache.directory.parent / "verified-v1"

    def _path(self, diff_id: str) -> Path:
        return self.directory / diff_id.removeprefix("sha256:")

    def get(self, diff_id: str) -> dict[str, Any]:
        """The record of ``diff_id`` (empty when none or unreadable)."""
        try:
            record = json.loads(self._path(diff_id).read_bytes())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def put(self, diff_id: str, directory: tuple[Path, str] | None = None) -> None:
        """Record that ``diff_id`` was verified now (from ``directory``: its path and its
        fingerprint before the read, so that a change made while it was read is a change)."""
        record: dict[str, Any] = {"verified_at": now_rfc3339()}
        if directory is not None:
            record |= {"directory": str(directory[0]), "fingerprint": directory[1]}
        try:
            os.makedirs(self.directory, exist_ok=True)
            atomic_write(self._path(diff_id), json.dumps(record).encode())
        except OSError as exc:
            raise CacheError(f"cannot write layer cache {self.directory}: {exc}") from exc


def remember(
    cache: LayerCache,
    diff_id: str,
    index: _native.LayerIndex,
    directory: tuple[Path, str] | None = None,
) -> None:
    """Cache a verified layer's index, and when it was verified (and from which directory,
    with that directory's fingerprint taken *before* it was read)."""
    cache.put(diff_id, index)
    VerificationRecords(cache).put(diff_id, directory)


def directory_unchanged(cache: LayerCache, diff_id: str, directory: Path) -> bool:
    """Whether ``directory`` is, by its fingerprint, the one ``diff_id`` was verified from."""
    record = VerificationRecords(cache).get(diff_id)
    if record.get("directory") != str(directory) or "fingerprint" not in record:
        return False
    try:
        return bool(record["fingerprint"] == directory_fingerprint(directory))
    except OSError:
        return False


def from_cache(layer: Layer, cache: LayerCache, *, rechecked: bool) -> Layer:
    """``layer`` (read from the cache) as the report gives it: ``cache`` and verified when
    this input was re-checked, else ``verified-by-cache`` and not verified; with the date
    the cache verified it."""
    verified_at = VerificationRecords(cache).get(layer.diff_id).get("verified_at")
    if rechecked:
        return replace(layer, source=CACHE, verified_at=verified_at)
    return replace(layer, source=BY_CACHE, verified=False, verified_at=verified_at)
