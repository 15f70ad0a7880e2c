"""A small read-only reader of bbolt databases (containerd's ``meta.db``, its snapshotters').

bbolt (go.etcd.io/bbolt) is a copy-on-write B+tree in fixed-size pages. Two meta
pages (0 and 1) each name the root bucket; the valid one with the higher
transaction id is current. A bucket value is a 16-byte header (root page id,
sequence) followed, when the root page id is 0, by an inline page. Branch pages
hold (pos, ksize, pgid) elements; leaf pages (flags, pos, ksize, vsize), where
flag 1 marks a nested bucket. Pages may overflow into the following pages.

The file is opened read-only and read with ``pread``; no lock is taken and nothing
is written, so a database on evidence media stays as it was. Only what a forensic
reader needs: walk buckets, get values.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

from drifttools.errors import BoltError

MAGIC = 0xED0CDAED
_PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_META = struct.Struct(
    "<IIIIQQQQQQ"
)  # magic version pagesize flags root seq freelist pgid txid csum
_BRANCH = struct.Struct("<IIQ")  # pos ksize pgid
_LEAF = struct.Struct("<IIII")  # flags pos ksize vsize
_BUCKET = struct.Struct("<QQ")  # root, sequence
BRANCH_PAGE, LEAF_PAGE, META_PAGE = 0x01, 0x02, 0x04
BUCKET_LEAF = 0x01
_FNV_OFFSET, _FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def _fnv64a(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


class Bucket:
    """A bucket: its keys map to values (bytes) or to nested buckets."""

    def __init__(self, db: BoltDB, root: int, inline: bytes | None) -> None:
        self._db = db
        self._root = root
        self._inline = inline

    def items(self) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """Every key, sorted, with its value or nested bucket."""
        if self._inline is not None:
            yield from self._db._leaf_items(self._inline, 0)
        else:
            yield from self._db._page_items(self._root, depth=0)

    def get(self, key: bytes | str) -> bytes | Bucket | None:
        wanted = key.encode() if isinstance(key, str) else key
        for name, value in self.items():
            if name == wanted:
                return value
        return None

    def bucket(self, *path: bytes | str) -> Bucket | None:
        """The nested bucket at ``path``, or None."""
        current: Bucket | None = self
        for key in path:
            value = current.get(key) if current is not None else None
            current = value if isinstance(value, Bucket) else None
        return current

    def value(self, key: bytes | str) -> bytes | None:
        value = self.get(key)
        return value if isinstance(value, bytes) else None

    def text(self, key: bytes | str) -> str | None:
        value = self.value(key)
        return value.decode("utf-8", "replace") if value is not None else None

    def buckets(self) -> Iterator[tuple[str, Bucket]]:
        for name, value in self.items():
            if isinstance(value, Bucket):
                yield name.decode("utf-8", "replace"), value

    def to_dict(self) -> dict[str, object]:
        """The bucket as nested dicts of text keys to bytes (for evidence records)."""
        return {
            name.decode("utf-8", "replace"): value.to_dict() if isinstance(value, Bucket) else value
            for name, value in self.items()
        }


class BoltDB:
    """A bbolt file opened read-only. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise BoltError(f"cannot open bbolt database {self.path}: {exc}") from exc
        try:
            self._size = os.fstat(self._fd).st_size
            self.page_size, root, self.txid = self._meta()
        except BaseException:
            os.close(self._fd)
            raise
        self.root = Bucket(self, root, None)

    def __enter__(self) -> BoltDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _read(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise BoltError(f"{self.path}: truncated at offset {offset}")
        return data

    def _meta(self) -> tuple[int, int, int]:
        best = None
        page_size = 4096
        head = os.pread(self._fd, _PAGE_HEADER.size + _META.size, 0)
        if len(head) == _PAGE_HEADER.size + _META.size:
            found = _META.unpack_from(head, _PAGE_HEADER.size)
            if found[0] == MAGIC and found[2] >= 512:
                page_size = found[2]
        for number in (0, 1):
            raw = os.pread(self._fd, _PAGE_HEADER.size + _META.size, number * page_size)
            if len(raw) < _PAGE_HEADER.size + _META.size:
                continue
            _, flags, _, _ = _PAGE_HEADER.unpack_from(raw)
            meta = _META.unpack_from(raw, _PAGE_HEADER.size)
            magic, version, size, _, root, _, _, _, txid, checksum = meta
            body = raw[_PAGE_HEADER.size : _PAGE_HEADER.size + _META.size - 8]
            if not flags & META_PAGE or magic != MAGIC or version != 2 or size != page_size:
                continue
            if _fnv64a(body) != checksum:
                continue
            if best is None or txid > best[2]:
                best = (size, root, txid)
        if best is None:
            raise BoltError(f"{self.path}: not a bbolt database (no valid meta page)")
        return best

    def _page(self, pgid: int) -> bytes:
        offset = pgid * self.page_size
        if pgid < 2 or offset + self.page_size > self._size:
            raise BoltError(f"{self.path}: page {pgid} out of range")
        first = self._read(offset, self.page_size)
        overflow = _PAGE_HEADER.unpack_from(first)[3]
        if overflow:
            if offset + (overflow + 1) * self.page_size > self._size:
                raise BoltError(f"{self.path}: page {pgid} overflows the file")
            return first + self._read(offset + self.page_size, overflow * self.page_size)
        return first

    def _page_items(self, pgid: int, depth: int) -> Iterator[tuple[bytes, bytes | Bucket]]:
        if depth > 64:
            raise BoltError(f"{self.path}: B+tree deeper than 64 (a page cycle?)")
        page = self._page(pgid)
        _, flags, count, _ = _PAGE_HEADER.unpack_from(page)
        if flags & BRANCH_PAGE:
            for i in range(count):
                at = _PAGE_HEADER.size + i * _BRANCH.size
                _, _, child = _BRANCH.unpack_from(page, at)
                yield from self._page_items(child, depth + 1)
        elif flags & LEAF_PAGE:
            yield from self._leaf_items(page, 0)
        else:
            raise BoltError(f"{self.path}: page {pgid} is neither branch nor leaf")

    def _leaf_items(self, page: bytes, base: int) -> Iterator[tuple[bytes, bytes | Bucket]]:
        _, flags, count, _ = _PAGE_HEADER.unpack_from(page, base)
        if count and not flags & LEAF_PAGE:
            raise BoltError(f"{self.path}: inline bucket page is not a leaf")
        for i in range(count):
            at = base + _PAGE_HEADER.size + i * _LEAF.size
            if at + _LEAF.size > len(page):
                raise BoltError(f"{self.path}: leaf element beyond its page")
            element_flags, pos, ksize, vsize = _LEAF.unpack_from(page, at)
            start = at + pos
            if start + ksize + vsize > len(page):
                raise BoltError(f"{self.path}: leaf key/value beyond its page")
            key = page[start : start + ksize]
            value = page[start + ksize : start + ksize + vsize]
            if element_flags & BUCKET_LEAF:
                if len(value) < _BUCKET.size:
                    raise BoltError(f"{self.path}: bucket header too short for {key!r}")
                root, _ = _BUCKET.unpack_from(value)
                inline = value[_BUCKET.size :] if root == 0 else None
                yield key, Bucket(self, root, inline)
            else:
                yield key, value
