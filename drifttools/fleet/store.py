"""Where a scan's records and bundles go: any fsspec URL (``file://``, ``s3://`` with s3fs,
``memory://`` ...), one object at a time, never half-written under its final name.

A URL may hold ``{node}`` and ``{container}`` placeholders. Each object is written under a
temporary name beside its final one and then renamed (``fs.mv``: a rename on a file
system, a server-side copy on an object store, where a ``PUT`` appears whole or not at
all), so a reader listing the store never sees part of one. :meth:`ObjectStore.check`
writes and removes a probe object first: an unwritable destination fails before any
container is read.
"""

from __future__ import annotations

import posixpath
import re
import string
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fsspec

from drifttools.errors import OutputError

PLACEHOLDERS = ("node", "container")
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
            if parent:
                fs.makedirs(parent, exist_ok=True)
            with fs.open(probe, "wb") as handle:
                handle.write(b"")
            fs.rm(probe)
        except (OSError, ValueError, PermissionError) as exc:
            raise OutputError(f"cannot write to {url}: {exc}") from exc

    def write_lines(self, url: str, lines: Iterable[str]) -> str:
        """Write ``lines`` (newline-terminated) as one object at ``url``; its URL."""
        fs, path = self._fs(url)
        data = "".join(line + "\n" for line in lines).encode()

        def write(temporary: str) -> None:
            with fs.open(temporary, "wb") as handle:
                handle.write(data)

        self._atomic(fs, path, write)
        return url

    def put_file(self, local: Path, url: str) -> str:
        """Copy the local file ``local`` to ``url`` as one object; its URL."""
        fs, path = self._fs(url)
        self._atomic(fs, path, lambda temporary: fs.put_file(str(local), temporary))
        return url

    def _atomic(self, fs: Any, path: str, write: Any) -> None:
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
