"""Blobs inside a ``docker save`` tar (legacy ``manifest.json`` or OCI layout)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from drifttools import _native
from drifttools.baseline.verification import blob_sha256
from drifttools.errors import ImageError, ImageNotFound


class ArchiveBlobs:
    """Reads members of an uncompressed image archive in place, never extracting it.

    Only the outer tar's headers are read here; each layer is then streamed by
    the native reader straight from its byte range in the archive.
    """

    @staticmethod
    def accepts(path: Path) -> bool:
        """A file: read as a ``docker save`` tar."""
        return path.is_file()

    def __init__(self, path: Path) -> None:
        self.location = str(path)
        self.source_kind = "archive"
        self._path = path
        try:
            with tarfile.open(path, mode="r:") as archive:
                self._members = {
                    member.name.removeprefix("./"): (member.offset_data, member.size)
                    for member in archive
                    if member.isfile()
                }
        except FileNotFoundError as exc:
            raise ImageNotFound(f"image archive not found: {path}") from exc
        except (tarfile.TarError, EOFError) as exc:
            raise ImageError(f"not a readable image archive: {path}: {exc}") from exc

    def exists(self, name: str) -> bool:
        return name in self._members

    def read_bytes(self, name: str, limit: int = 64 << 20) -> bytes:
        offset, size = self._locate(name)
        if size > limit:
            raise ImageError(f"{self.location}: {name} is {size} bytes, over {limit}")
        with self._path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
        if len(data) != size:
            raise ImageError(f"{self.location}: {name} is truncated")
        return data

    def read_layer(self, name: str) -> _native.LayerIndex:
        offset, size = self._locate(name)
        return _native.read_layer(str(self._path), offset=offset, length=size)

    def size(self, name: str) -> int:
        return self._locate(name)[1]

    def blob_sha256(self, name: str) -> str:
        offset, size = self._locate(name)
        return blob_sha256(self._path, offset, size)

    def _locate(self, name: str) -> tuple[int, int]:
        try:
            return self._members[name]
        except KeyError:
            raise ImageNotFound(f"{self.location}: no member {name}") from None
