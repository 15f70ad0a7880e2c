"""libmagic, through python-magic, on a bounded prefix of a file (it parses attacker bytes)."""

from __future__ import annotations

import threading

import magic

#: libmagic never sees more than this many bytes of a file.
MAGIC_PREFIX = 64 * 1024

# A libmagic cookie is not thread safe: one per thread. ctypes releases the
# GIL while libmagic runs, so files are typed in parallel.
_COOKIES = threading.local()


def _describer() -> magic.Magic:
    describer = getattr(_COOKIES, "magic", None)
    if describer is None:
        describer = _COOKIES.magic = magic.Magic()
    return describer


def describe(data: bytes) -> str | None:
    """libmagic's description of the first :data:`MAGIC_PREFIX` bytes of ``data``."""
    if not data:
        return "empty"
    try:
        return _describer().from_buffer(data[:MAGIC_PREFIX])
    except magic.MagicException:
        return None
