"""On-disk cache of layer indexes, keyed by diff_id: each layer is read once per machine.

Only layers whose uncompressed digest was checked equal to their diff_id are
stored. Entries carry their own checksum (native format); a corrupt or
truncated entry is detected on load, removed, and the layer read again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

from drifttools import _native
from drifttools.atomic import atomic_output
from drifttools.errors import CacheError, IndexCorrupt


def default_cache_dir() -> Path:
    """``$DRIFTTOOLS_CACHE_DIR``, else ``$XDG_CACHE_HOME/drifttools``, else ``~/.cache/...``."""
    explicit = os.environ.get("DRIFTTOOLS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "drifttools"


class LayerCache:
    """Layer indexes under ``<dir>/layers/v1/<hex of diff_id>``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or default_cache_dir()) / "layers" / "v1"

    def _path(self, diff_id: str) -> Path:
        algorithm, _, hexdigest = diff_id.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not hexdigest.isalnum():
            raise CacheError(f"not a sha256 diff_id: {diff_id!r}")
        return self.directory / hexdigest

    def get(self, diff_id: str) -> _native.LayerIndex | None:
        """The cached index, or None when absent or corrupt (a corrupt one is removed)."""
        path = self._path(diff_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read layer cache {path}: {exc}") from exc
        try:
            index = _native.LayerIndex.from_bytes(data)
        except IndexCorrupt:
            path.unlink(missing_ok=True)
            return None
        if f"sha256:{index.uncompressed_sha256}" != diff_id:
            path.unlink(missing_ok=True)
            return None
        return index

    def has(self, diff_id: str) -> bool:
        """Whether an entry for ``diff_id`` is stored (not read, not checked)."""
        return self._path(diff_id).is_file()

    def put(self, diff_id: str, index: _native.LayerIndex) -> None:
        """Store a verified index atomically (a crash never leaves a partial entry)."""
        if f"sha256:{index.uncompressed_sha256}" != diff_id:
            raise CacheError(f"refusing to cache an unverified layer as {diff_id}")
        path = self._path(diff_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as handle:
                index.write_to(handle.fileno())
        except OSError as exc:
            raise CacheError(f"cannot write layer cache {path}: {exc}") from exc


#: Passed as ``cache=`` to the live entry points: the user's default cache directory.
#: ``None`` there means no cache at all (``--no-cache``).
DEFAULT_CACHE: Final = "default"


def resolve_cache(cache: LayerCache | Literal["default"] | None) -> LayerCache | None:
    """The cache a ``cache=`` argument names."""
    return LayerCache() if cache == DEFAULT_CACHE else cache
