"""Image layers read from the Docker Engine's own store, without ``docker save``.

The overlay-family storage drivers keep each layer unpacked in
``<data_root>/<driver>/<cache-id>/diff`` and, in the layer database
``<data_root>/image/<driver>/layerdb/sha256/<chain-id>/``, the layer's
``diff`` (its diff_id), ``cache-id`` and ``tar-split.json.gz``: the layer
tar's headers and padding, from which the native reader rebuilds the exact
original tar (:func:`drifttools._native.read_tar_split`).

Nothing here trusts the store: :func:`read_stored_layer` returns the index
of what the store holds now, and whoever uses it compares
``uncompressed_sha256`` with the diff_id; a file of the layer directory that
was changed, removed or replaced carries an ``error`` starting
``"stored layer: "``.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drifttools import _native
from drifttools.errors import ImageNotFound, LayerCorrupt, LayerStoreError, LayerStoreMismatch

#: Drivers whose layers live in ``<data_root>/<driver>/<cache-id>/diff`` with a tar-split record.
SUPPORTED_DRIVERS = ("overlay2", "fuse-overlayfs")

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CACHE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


@dataclass(frozen=True)
class StoredLayer:
    """One image layer in the engine's store."""

    diff_id: str
    chain_id: str
    tar_split: Path
    directory: Path  # the unpacked layer: <data_root>/<driver>/<cache-id>/diff


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Chain ids of a layer stack: ``chain(L0) = diff_id(L0)``,
    ``chain(Ln) = sha256(chain(Ln-1) + " " + diff_id(Ln))``."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(text).hexdigest())
    return chains


def _read_record(path: Path, what: str, layer: str) -> str:
    """A small text file of the layer database, never following a final
    symlink, never blocking on a FIFO."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageNotFound(f"{layer} is not in the engine's store: no {what} ({path})") from None
    except OSError as exc:
        raise LayerStoreError(f"{layer}: cannot read the store's {what} ({path}): {exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LayerStoreError(f"{layer}: the store's {what} is not a regular file ({path})")
        data = os.read(fd, 4097)
    finally:
        os.close(fd)
    if len(data) > 4096:
        raise LayerStoreError(f"{layer}: the store's {what} is too large ({path})")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise LayerStoreError(f"{layer}: the store's {what} is not text ({path})") from None


def engine_layers(
    diff_ids: Sequence[str],
    *,
    data_root: Path = Path("/var/lib/docker"),
    driver: str,
) -> list[StoredLayer]:
    """Locate each layer of an image (bottom first) in the engine's own store.

    For layer n with chain id C: ``<data_root>/image/<driver>/layerdb/sha256/<C hex>/``
    must hold ``diff`` (equal to the expected diff_id), ``cache-id`` and
    ``tar-split.json.gz``, and ``<data_root>/<driver>/<cache-id>/diff`` must be a
    directory.

    Raises :class:`~drifttools.errors.ImageNotFound` (a ``FileNotFoundError``) when a
    record, the tar-split file or the layer directory is missing;
    :class:`LayerStoreMismatch` (a :class:`~drifttools.errors.DigestMismatch` and
    ``ValueError``) when the layerdb ``diff`` names another diff_id;
    :class:`LayerStoreError` (an :class:`~drifttools.errors.ImageError` and
    ``ValueError``) for an unsupported driver, a malformed diff_id or cache-id, or a
    record that is not a small regular text file.
    """
    if driver not in SUPPORTED_DRIVERS:
        raise LayerStoreError(
            f"the engine's layer store can be read for the {' and '.join(SUPPORTED_DRIVERS)} "
            f"storage drivers, not {driver!r}"
        )
    for diff_id in diff_ids:
        if not _DIGEST.fullmatch(diff_id):
            raise LayerStoreError(f"malformed diff_id {diff_id!r} (expected sha256:<64 hex>)")
    data_root = Path(data_root)
    layerdb = data_root / "image" / driver / "layerdb" / "sha256"
    total = len(diff_ids)
    layers: list[StoredLayer] = []
    for position, (diff_id, chain_id) in enumerate(zip(diff_ids, chain_ids(diff_ids), strict=True)):
        name = f"layer {position + 1}/{total} ({diff_id})"
        record = layerdb / chain_id.removeprefix("sha256:")
        if not record.is_dir():
            raise ImageNotFound(
                f"{name} is not in the engine's store: no layerdb entry {record} "
                f"(chain id {chain_id})"
            )
        stored_diff = _read_record(record / "diff", "diff record", name)
        if stored_diff != diff_id:
            raise LayerStoreMismatch(
                f"{name}: the engine's layerdb entry {record} holds diff_id "
                f"{stored_diff!r}, not {diff_id}"
            )
        cache_id = _read_record(record / "cache-id", "cache-id record", name)
        if not _CACHE_ID.fullmatch(cache_id) or ".." in cache_id:
            raise LayerStoreError(f"{name}: malformed cache-id {cache_id!r} in {record}")
        tar_split = record / "tar-split.json.gz"
        if not tar_split.is_file():
            raise ImageNotFound(f"{name} is not in the engine's store: no {tar_split}")
        directory = data_root / driver / cache_id / "diff"
        if not directory.is_dir():
            raise ImageNotFound(
                f"{name} is not in the engine's store: no layer directory {directory}"
            )
        layers.append(
            StoredLayer(
                diff_id=diff_id, chain_id=chain_id, tar_split=tar_split, directory=directory
            )
        )
    return layers


def read_stored_layer(layer: StoredLayer) -> _native.LayerIndex:
    """Rebuild and index one layer from the store (tar-split + layer directory).

    The result is what the store holds now: compare its ``uncompressed_sha256`` with
    ``layer.diff_id`` before trusting it (entries of files that no longer match carry
    an ``error`` starting ``"stored layer: "``).

    Raises :class:`~drifttools.errors.ImageNotFound` when the tar-split file or the
    layer directory has gone, :class:`~drifttools.errors.LayerCorrupt` when the
    tar-split record or the rebuilt tar is unreadable or over a cap, ``OSError`` for
    other failures to open them.
    """
    try:
        return _native.read_tar_split(str(layer.tar_split), str(layer.directory))
    except FileNotFoundError as exc:
        raise ImageNotFound(
            f"layer {layer.diff_id} is no longer in the engine's store: {exc}"
        ) from exc
    except LayerCorrupt as exc:
        raise LayerCorrupt(f"engine store: layer {layer.diff_id}: {exc}") from exc
