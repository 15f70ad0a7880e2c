"""Blobs in an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/``)."""

from __future__ import annotations

from pathlib import Path

from drifttools import _native
from drifttools.baseline.verification import blob_sha256
from drifttools.errors import ImageError, ImageNotFound


class DirectoryBlobs:
    """Reads files of an image layout directory; names never leave the directory."""

    def __init__(self, path: Path) -> None:
        self.location = str(path)
        self.source_kind = "archive"
        self._root = path.resolve()

    @staticmethod
    def accepts(path: Path) -> bool:
        """A directory: read as an image layout."""
        return path.is_dir()

    def exists(self, name: str) -> bool:
        return self._file(name).is_file()

    def read_bytes(self, name: str, limit: int = 64 << 20) -> bytes:
        path = self._existing(name)
        if path.stat().st_size > limit:
            raise ImageError(f"{self.location}: {name} is over {limit} bytes")
        return path.read_bytes()

    def read_layer(self, name: str) -> _native.LayerIndex:
        return _native.read_layer(str(self._existing(name)))

    def size(self, name: str) -> int:
        return self._existing(name).stat().st_size

    def blob_sha256(self, name: str) -> str:
        return blob_sha256(self._existing(name))

    def _file(self, name: str) -> Path:
        path = (self._root / name).resolve()
        if not path.is_relative_to(self._root):
            raise ImageError(f"{self.location}: blob name leaves the layout: {name}")
        return path

    def _existing(self, name: str) -> Path:
        path = self._file(name)
        if not path.is_file():
            raise ImageNotFound(f"{self.location}: no blob {name}")
        return path
