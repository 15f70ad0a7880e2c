"""Blobs of an image archive read once, as a stream (``docker save`` over the Engine API).

The stream is never written to disk: each layer is indexed and hashed by the
native reader while it passes; small JSON members are kept in memory. The
archive's manifest comes last in Docker's ``save`` output, so everything is
read before the image can be resolved.
"""

from __future__ import annotations

import io
import tarfile
from typing import IO, BinaryIO

from drifttools import _native
from drifttools.errors import ImageError, ImageNotFound, LayerCorrupt

_JSON_LIMIT = 64 << 20


class _Prefixed(io.RawIOBase):
    """A stream with some bytes already read put back in front of it."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            head = self._prefix if size < 0 else self._prefix[:size]
            self._prefix = self._prefix[len(head) :]
            return head
        return self._rest.read(size)


class StreamedBlobs:
    """Every member of an image archive stream, layers already indexed."""

    source_kind = "stream"

    def __init__(self, stream: BinaryIO, location: str) -> None:
        self.location = location
        self._json: dict[str, bytes] = {}
        self._layers: dict[str, _native.LayerIndex] = {}
        self._unreadable: dict[str, str] = {}  # members that are not readable layers, and why
        self._sizes: dict[str, int] = {}
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    if member.isfile():
                        self._take(member, archive.extractfile(member))
        except (tarfile.TarError, EOFError) as exc:
            raise ImageError(f"{location}: image stream is not a readable archive: {exc}") from exc

    def _take(self, member: tarfile.TarInfo, content: IO[bytes] | None) -> None:
        assert content is not None
        name = member.name.removeprefix("./")
        self._sizes[name] = member.size
        head = content.read(1)
        if head in (b"{", b"[") and member.size <= _JSON_LIMIT:
            self._json[name] = head + content.read()
            return
        try:
            self._layers[name] = _native.read_layer(_Prefixed(head, content))
        except LayerCorrupt as exc:  # a VERSION file, or a corrupt layer if the manifest names it
            self._unreadable[name] = str(exc)

    def exists(self, name: str) -> bool:
        return name in self._sizes

    def read_bytes(self, name: str, limit: int = _JSON_LIMIT) -> bytes:
        try:
            return self._json[name]
        except KeyError:
            raise ImageNotFound(f"{self.location}: no JSON member {name}") from None

    def read_layer(self, name: str) -> _native.LayerIndex:
        if name in self._unreadable:
            raise LayerCorrupt(f"{self.location}: {name}: {self._unreadable[name]}")
        try:
            return self._layers[name]
        except KeyError:
            raise ImageNotFound(f"{self.location}: no layer {name}") from None

    def size(self, name: str) -> int:
        return self._sizes[name]

    def blob_sha256(self, name: str) -> str:
        """Hashed as the stream passed (a member that is no layer has none: ``""``)."""
        layer = self._layers.get(name)
        return layer.compressed_sha256 if layer is not None else ""
