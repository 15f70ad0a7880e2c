"""Where a scan's records and bundles go: any fsspec URL (``file://``, ``s3://`` with s3fs,
``memory://`` ...), one object at a time, never half-written under its final name.

A URL may hold ``{node}`` and ``{container}`` placeholders. How an object appears whole:

- on an object store (S3 and the stores like it, :data:`WHOLE_OBJECT_PROTOCOLS`) an
  object is visible only once its one ``PUT`` completes, or its multipart upload is
  completed, which s3fs does last (and aborts on failure): each object is written once,
  under its final name, from bytes already complete. fsspec's ``mv`` there would be a
  copy and a delete, twice the bytes and a temporary object a reader could list.
- on anything else (a file system, ``memory://``) an object is written under a temporary
  name beside its final one, then renamed (``fs.mv``).

:meth:`ObjectStore.check` writes and removes a probe object first: an unwritable
destination (a missing bucket, a read-only directory) fails before any container is
read. Nothing is created on an object store but the objects (no bucket).
"""

from __future__ import annotations

import posixpath
import re
import string
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import fsspec

from drifttools.errors import OutputError

PLACEHOLDERS = ("node", "container")
#: fsspec protocols of object stores, where an object's single upload is atomic.
WHOLE_OBJECT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "oss"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def placeholders(template: str) -> set[str]:
    """The placeholders ``template`` uses; OutputError for any other, or a malformed one."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise OutputError(f"{template}: {exc}") from exc
    unknown = fields - set(PLACEHOLDERS)
    if unknown:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise OutputError(f"{template}: unknown placeholder {{{sorted(unknown)[0]}}} ({known})")
    return fields


class ObjectStore:
    """Objects named by a URL template, for one node."""

    def __init__(self, template: str, node: str) -> None:
        self.template = template
        self.node = _UNSAFE.sub("_", node)
        self.per_container = "container" in placeholders(template)

    def url(self, container: str = "summary") -> str:
        """The URL of one object (``container``: a container's key, or ``summary``)."""
        return self.template.format(node=self.node, container=container)

    def _fs(self, url: str) -> tuple[Any, str]:
        try:
            return fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise OutputError(f"{url}: {exc}") from exc

    def check(self) -> None:
        """Write and remove a probe where the objects will go (OutputError if it fails)."""
        url = self.url("probe")
        fs, path = self._fs(url)
        parent = posixpath.dirname(path)
        probe = posixpath.join(parent, f".drifttools-probe-{uuid.uuid4().hex}")
        try:
            if parent and not _whole_objects(fs):
                fs.makedirs(parent, exist_ok=True)
            fs.pipe_file(probe, b"")
            fs.rm(probe)
        except (OSError, ValueError, PermissionError) as exc:
            raise OutputError(f"cannot write to {url}: {exc}") from exc

    def write_lines(self, url: str, lines: Iterable[str]) -> str:
        """Write ``lines`` (newline-terminated) as one object at ``url``; its URL."""
        fs, path = self._fs(url)
        data = "".join(line + "\n" for line in lines).encode()  # whole before any write
        self._atomic(fs, path, lambda target: fs.pipe_file(target, data))
        return url

    def put_file(self, local: Path, url: str) -> str:
        """Copy the local file ``local`` to ``url`` as one object; its URL."""
        fs, path = self._fs(url)
        self._atomic(fs, path, lambda target: fs.put_file(str(local), target))
        return url

    def _atomic(self, fs: Any, path: str, write: Callable[[str], object]) -> None:
        if _whole_objects(fs):
            try:
                write(path)
            except OSError as exc:
                raise OutputError(f"cannot write {path}: {exc}") from exc
            return
        parent, name = posixpath.split(path)
        temporary = posixpath.join(parent, f".{name}.{uuid.uuid4().hex[:12]}.part")
        try:
            if parent:
                fs.makedirs(parent, exist_ok=True)
            write(temporary)
            fs.mv(temporary, path)
        except BaseException as exc:
            try:
                if fs.exists(temporary):
                    fs.rm(temporary)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise OutputError(f"cannot write {path}: {exc}") from exc
            raise


def _whole_objects(fs: Any) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return not WHOLE_OBJECT_PROTOCOLS.isdisjoint(protocols)


def read_lines(urls: Iterable[str]) -> Iterable[tuple[str, list[str]]]:
    """Each object ``urls`` name (globs expanded) as ``(url, lines)``; OutputError for a URL
    that names nothing or cannot be read."""
    for url in urls:
        try:
            files = fsspec.open_files(url, "rt", encoding="utf-8")
        except (ImportError, ValueError, OSError) as exc:
            raise OutputError(f"{url}: {exc}") from exc
        if not files:
            raise OutputError(f"{url}: no such object")
        for opened in files:
            try:
                with opened as handle:
                    yield opened.full_name, handle.read().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise OutputError(f"{opened.full_name}: cannot read: {exc}") from exc
