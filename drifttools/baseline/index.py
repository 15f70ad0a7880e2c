"""The merged baseline of an image, stored once per image and looked up, not loaded.

An image's merged view is written under ``<cache>/images/v1/<hex of its chain id>`` (the
OCI ChainID of its diff_ids) as a :class:`drifttools._native.BaselineIndex`: records sorted
by path, memory-mapped, binary-searched; a subtree is a contiguous range. Its metadata names
the chain and each layer it was merged from (diff_id, blob digest, when it was verified),
its hardlink groups, the merge's errors and the paths the package readers read
(:func:`~drifttools.analysis.classifiers.packages.database.is_database_path`), so that a warm
run never lists the whole image to find them.

Integrity: the file carries a SHA-256 over its header and a table of SHA-256s of its 64 KiB
blocks; opening checks the header, each block is checked the first time it is read. A file
that fails (truncated, altered, another version, another chain) is removed and rebuilt from
the verified layer cache; no byte of it is used unchecked.

What the index does not decide is whether this run's layers are verified: the caller
re-checks every layer against this input as for the layer cache
(:mod:`drifttools.baseline.verification`) and uses the index only when each one passes. It is
written only from layers the cache holds, i.e. that were verified on this machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from drifttools import _native
from drifttools.analysis.classifiers.packages.database import is_database_path
from drifttools.baseline.cache import LayerCache
from drifttools.baseline.merge import IMPLICIT_DIR
from drifttools.baseline.verification import VerificationRecords
from drifttools.errors import CacheError, IndexCorrupt
from drifttools.models import BaselineEntry, ErrorRecord

_FORMAT = 2  # 2: database_paths in the metadata
_CHUNK = 1 << 16
_T = TypeVar("_T")


def chain_id(diff_ids: Sequence[str]) -> str:
    """The OCI ChainID of a layer stack: ``sha256(ChainID(below) + " " + diff_id)``."""
    chain = diff_ids[0] if diff_ids else "sha256:" + hashlib.sha256(b"").hexdigest()
    for diff_id in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


@dataclass(frozen=True)
class LayerRecord:
    """A layer the index was merged from, as the index recorded it."""

    diff_id: str
    compressed_sha256: str  # of the blob the layer was verified from (hex)
    verified_at: str | None


class IndexedEntries(Mapping[str, BaselineEntry]):
    """The merged view's entries, read from the index path by path.

    Model objects are made only for the paths asked (and kept); listing every path
    (iteration) is counted in :attr:`scans`. When a block fails its check, the index is
    rebuilt (``rebuild``) and the call made again on the new one.
    """

    def __init__(
        self, index: _native.BaselineIndex, rebuild: Callable[[], _native.BaselineIndex]
    ) -> None:
        self._index = index
        self._rebuild = rebuild
        self._made: dict[str, BaselineEntry | None] = {}
        self.scans = 0
        self.rebuilt = False

    @property
    def native(self) -> _native.BaselineIndex:
        """The index file in use (its :attr:`~drifttools._native.BaselineIndex.blocks_checked`
        says how much of it was read)."""
        return self._index

    def _call(self, operation: Callable[[_native.BaselineIndex], _T]) -> _T:
        try:
            return operation(self._index)
        except IndexCorrupt:
            self._index = self._rebuild()
            self.rebuilt = True
            return operation(self._index)

    def _entries(self, positions: Sequence[int]) -> list[BaselineEntry]:
        tree, origins = self._call(lambda index: index.entries(positions))
        return [_entry(tree, layer, at) for layer, at in origins]

    def __getitem__(self, path: str) -> BaselineEntry:
        if path in self._made:
            entry = self._made[path]
        else:
            position = self._call(lambda index: index.find(path))
            entry = None if position is None else self._entries([position])[0]
            self._made[path] = entry
        if entry is None:
            raise KeyError(path)
        return entry

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        if path in self._made:
            return self._made[path] is not None
        return self._call(lambda index: index.find(path)) is not None

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[str]:
        self.scans += 1
        for start in range(0, len(self._index), _CHUNK):
            chunk = partial(_native.BaselineIndex.paths, start=start, stop=start + _CHUNK)
            yield from self._call(chunk)

    def below(self, path: str) -> list[str]:
        """Every image path below directory ``path``, sorted by bytes."""
        prefix = path.rstrip("/") + "/"

        def subtree(index: _native.BaselineIndex) -> list[str]:
            start, stop = index.prefix_range(prefix)
            paths = index.paths(start, stop)
            tree, origins = index.entries(list(range(start, stop)))
            for below, (layer, at) in zip(paths, origins, strict=True):
                self._made[below] = _entry(tree, layer, at)
            return paths

        return self._call(subtree)

    def drift_join(self, tree: _native.Tree, mount: str) -> tuple[list[int], list[str]]:
        """The entries of ``tree`` (read at ``mount``) that must be compared in full, and the
        image paths it does not have (see :meth:`drifttools._native.BaselineIndex.drift_join`)."""

        def join(index: _native.BaselineIndex) -> tuple[list[int], list[str]]:
            unsettled, unseen = index.drift_join(tree, mount)
            return unsettled, [index.paths(p, p + 1)[0] for p in unseen]

        return self._call(join)


@dataclass(frozen=True)
class StoredBaseline:
    """An image's index, opened and matched to its chain: entries, hardlinks, merge errors."""

    entries: IndexedEntries
    layers: tuple[LayerRecord, ...]
    links: dict[str, frozenset[str]]
    errors: tuple[ErrorRecord, ...]
    database_paths: frozenset[str]  # recorded when written: a warm run lists no path


class BaselineStore:
    """Image indexes under ``<cache dir>/images/v1/<hex of the chain id>``."""

    def __init__(self, cache: LayerCache) -> None:
        self.cache = cache
        self.directory = cache.directory.parent.parent / "images" / "v1"

    def _path(self, diff_ids: Sequence[str]) -> Path:
        return self.directory / chain_id(diff_ids).removeprefix("sha256:")

    def open(self, diff_ids: Sequence[str]) -> StoredBaseline | None:
        """The index of the stack ``diff_ids``; None when absent, or corrupt or made from
        another chain (then removed)."""
        path = self._path(diff_ids)
        try:
            index = _native.BaselineIndex.open(path)
            meta = _meta(index, diff_ids)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read baseline index {path}: {exc}") from exc
        except IndexCorrupt:
            path.unlink(missing_ok=True)
            return None
        return _stored(index, meta, lambda: self.rebuild(diff_ids))

    def write(
        self,
        diff_ids: Sequence[str],
        layers: Sequence[_native.LayerIndex],
        merged: _native.MergedLayers,
        database_paths: Sequence[str],
    ) -> _native.BaselineIndex:
        """Store ``merged``, the merge of ``layers`` (verified, bottom first), with the
        layers' :func:`database_candidates`; the index."""
        records = VerificationRecords(self.cache)
        verified_at = [records.get(diff_id).get("verified_at") for diff_id in diff_ids]
        meta = {
            "format": _FORMAT,
            "chain_id": chain_id(diff_ids),
            "layers": [
                {"diff_id": d, "compressed_sha256": layer.compressed_sha256, "verified_at": at}
                for d, layer, at in zip(diff_ids, layers, verified_at, strict=True)
            ],
            "links": merged.links(),
            "errors": merged.errors(),
            "database_paths": list(database_paths),
        }
        target = self._path(diff_ids)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            os.close(fd)
            try:
                merged.write(temporary, json.dumps(meta).encode())
                os.replace(temporary, target)
            finally:
                Path(temporary).unlink(missing_ok=True)
            return _native.BaselineIndex.open(target)
        except (OSError, IndexCorrupt) as exc:
            raise CacheError(f"cannot write baseline index {target}: {exc}") from exc

    def rebuild(self, diff_ids: Sequence[str]) -> _native.BaselineIndex:
        """Write the index of ``diff_ids`` again from the layer cache (after a failed check)."""
        self._path(diff_ids).unlink(missing_ok=True)
        layers = [self.cache.get(diff_id) for diff_id in diff_ids]
        if any(layer is None for layer in layers):
            raise CacheError("baseline index corrupt and its layers gone from the cache: run again")
        verified = [layer for layer in layers if layer is not None]
        trees = [layer.entries for layer in verified]
        return self.write(
            diff_ids, verified, _native.MergedLayers(trees), database_candidates(trees)
        )


def database_candidates(trees: Sequence[_native.Tree]) -> list[str]:
    """The paths any of the layers ``trees`` holds that a package reader may read
    (:func:`is_database_path`); recorded with the index, so that no warm run lists the image."""
    return sorted({path for tree in trees for path in tree.paths() if is_database_path(path)})


def present(paths: Sequence[str], entries: IndexedEntries) -> frozenset[str]:
    """Those of ``paths`` the merged view holds (a later layer may have deleted one)."""
    return frozenset(path for path in paths if path in entries)


def scratch_index(merged: _native.MergedLayers) -> _native.BaselineIndex:
    """The index of ``merged`` in an unlinked temporary file: the baseline of one run, for
    layers the store does not keep (not all verified, or no cache)."""
    fd, temporary = tempfile.mkstemp(prefix="drifttools-baseline-")
    os.close(fd)
    try:
        merged.write(temporary, b"{}")
        return _native.BaselineIndex.open(temporary)
    except (OSError, IndexCorrupt) as exc:
        raise CacheError(f"cannot write a baseline index in {temporary}: {exc}") from exc
    finally:
        os.unlink(temporary)


def _entry(tree: _native.Tree, layer: int, at: int) -> BaselineEntry:
    """The model object of an index entry: ``at`` in ``tree``, or (-1) an implicit directory."""
    if at < 0:
        return BaselineEntry(layer, IMPLICIT_DIR)
    return BaselineEntry(layer, source=tree, index=at)


def _meta(index: _native.BaselineIndex, diff_ids: Sequence[str]) -> dict[str, Any]:
    """The index's metadata; IndexCorrupt when it is not of this format or chain."""
    try:
        meta = json.loads(index.meta())
    except ValueError as exc:
        raise IndexCorrupt(f"baseline index metadata unreadable: {exc}") from exc
    if (
        not isinstance(meta, dict)
        or meta.get("format") != _FORMAT
        or meta.get("chain_id") != chain_id(diff_ids)
        or [layer.get("diff_id") for layer in meta.get("layers", [])] != list(diff_ids)
    ):
        raise IndexCorrupt("baseline index made from another layer chain")
    return meta


def _stored(
    index: _native.BaselineIndex,
    meta: Mapping[str, Any],
    rebuild: Callable[[], _native.BaselineIndex],
) -> StoredBaseline:
    links = {path: frozenset(group) for group in meta["links"] for path in group}
    entries = IndexedEntries(index, rebuild)
    return StoredBaseline(
        entries=entries,
        layers=tuple(
            LayerRecord(layer["diff_id"], layer["compressed_sha256"], layer["verified_at"])
            for layer in meta["layers"]
        ),
        links=links,
        errors=tuple(ErrorRecord(path, reason) for path, reason in meta["errors"]),
        database_paths=present(meta["database_paths"], entries),
    )
