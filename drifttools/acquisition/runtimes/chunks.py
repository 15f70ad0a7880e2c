"""Streamed bodies of engine APIs (Docker's image export, containerd's ``Content.Read``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO


class ChunkStream(io.RawIOBase):
    """A file object over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def buffered(chunks: Iterator[bytes]) -> BinaryIO:
    """``chunks`` as a buffered binary stream, read 1 MiB at a time."""
    return io.BufferedReader(ChunkStream(chunks), 1 << 20)
