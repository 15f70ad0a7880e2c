"""libmagic, through python-magic, on a bounded prefix of a file (it parses attacker bytes)."""

from __future__ import annotations

import threading
from functools import cache

import magic

#: libmagic never sees more than this many bytes of a file.
MAGIC_PREFIX = 64 * 1024

_LOCK = threading.Lock()


@cache
def _describer() -> magic.Magic:
    return magic.Magic()


def describe(data: bytes) -> str | None:
    """libmagic's description of the first :data:`MAGIC_PREFIX` bytes of ``data``."""
    if not data:
        return "empty"
    with _LOCK:  # a libmagic cookie is not thread safe
        try:
            return _describer().from_buffer(data[:MAGIC_PREFIX])
        except magic.MagicException:
            return None
