"""An engine's files read from a disk: where an offline reference points, and small records.

Offline references name a directory or an archive, then what to pick in it:
``<scheme>:///mnt/disk/var/lib/docker#<container>``. Records (JSON, blobs of the content
store) are evidence of a possibly hostile host: a final symlink is never followed and a
FIFO never blocks the read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from drifttools.errors import ContainerNotFound, ImageError

_JSON_LIMIT = 64 << 20


def offline_location(reference: str) -> tuple[Path, str]:
    """``(root path, fragment)`` of ``docker-root:///path#ref`` style references."""
    parts = urlsplit(reference)
    if parts.netloc:
        raise ContainerNotFound(
            f"{reference!r}: write the path after three slashes, e.g. {parts.scheme}:///mnt/..."
        )
    return Path(unquote(parts.path)), unquote(parts.fragment)


def fragment_of(reference: str, scheme: str) -> str:
    """What a ``<scheme>:///path#<fragment>`` reference picks; any other reference as it is."""
    if reference.startswith(f"{scheme}://"):
        return offline_location(reference)[1]
    return reference


def read_small(path: Path, limit: int = _JSON_LIMIT) -> bytes:
    """A JSON-sized regular file, never following a final symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"{path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImageError(f"{path} is over {limit} bytes")
    return data
