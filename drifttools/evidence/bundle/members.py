"""Random access to the members of a bundle, a tar file or a directory, with the framing
problems found on the way (every tar header, padding and trailer byte must be canonical)."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from drifttools.errors import BundleCorrupt, BundleError
from drifttools.evidence.bundle.layout import CHUNK, files_under, tar_header


class Members:
    """Random access to the members of a bundle, a tar file or a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_dir = path.is_dir()
        self.problems: list[str] = []
        self.spans: dict[str, tuple[int, int]] = {}
        self._handle: BinaryIO | None = None
        if self.is_dir:
            for name in files_under(path):
                if not (path / name).is_file() or (path / name).is_symlink():
                    self.problems.append(f"{name}: not a regular file")
                else:
                    self.spans[name] = (0, (path / name).stat().st_size)
        else:
            self._handle = open(path, "rb")  # noqa: SIM115 - closed by close()
            self._scan_tar()

    def _scan_tar(self) -> None:
        assert self._handle is not None
        try:
            with tarfile.open(fileobj=self._handle, mode="r:") as archive:
                infos = archive.getmembers()
        except tarfile.TarError as exc:
            self.problems.append(f"not a readable tar: {exc}")
            return
        names = [info.name for info in infos]
        if names != sorted(set(names)):
            self.problems.append("members not in sorted order, or repeated")
        end = 0
        for info in infos:
            if not info.isreg():
                self.problems.append(f"{info.name}: not a regular file member")
                continue
            self.spans[info.name] = (info.offset_data, info.size)
            expected = tar_header(info.name, info.size)
            if info.offset != end or self._read(end, len(expected)) != expected:
                self.problems.append(f"{info.name}: tar header not in canonical form")
            end = info.offset_data + info.size
            padding = -info.size % tarfile.BLOCKSIZE
            if self._read(end, padding) != bytes(padding):
                self.problems.append(f"{info.name}: non-zero tar padding")
            end += padding
        trailer = end + 2 * tarfile.BLOCKSIZE
        trailer += -trailer % tarfile.RECORDSIZE
        size = os.fstat(self._handle.fileno()).st_size
        if size != trailer or any(self._read(end, trailer - end)):
            self.problems.append("tar trailer not in canonical form (bytes after the members)")

    def _read(self, offset: int, size: int) -> bytes:
        assert self._handle is not None
        self._handle.seek(offset)
        return self._handle.read(size)

    def read(self, name: str) -> bytes:
        offset, size = self.spans[name]
        if self.is_dir:
            return (self.path / name).read_bytes()
        return self._read(offset, size)

    def chunks(self, name: str) -> Iterator[bytes]:
        offset, size = self.spans[name]
        if self.is_dir:
            with open(self.path / name, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
            return
        done = 0
        while done < size:
            chunk = self._read(offset + done, min(CHUNK, size - done))
            if not chunk:
                raise BundleCorrupt(f"{name}: truncated")
            done += len(chunk)
            yield chunk

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(name):
            digest.update(chunk)
        return digest.hexdigest()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def open_members(path: Path) -> Members:
    """The members of the bundle at ``path``; :class:`BundleError` when it cannot be read."""
    if not path.exists():
        raise BundleError(f"{path}: no such bundle")
    try:
        return Members(path)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from exc
