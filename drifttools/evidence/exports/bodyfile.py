"""Sleuth Kit bodyfile (TSK 3+).

Each line: ``MD5|name|inode|mode_as_string|UID|GID|size|atime|mtime|ctime|crtime``.

Read by ``mactime``, Plaso and Timesketch. One line per drifted path, with the
container's facts (the image's for a deletion, the name suffixed `` (deleted)``
as ``fls`` does). Symlinks are written ``path -> target``. Times are whole
seconds since the epoch, 0 when unknown; ``crtime`` is the statx birth time.

The MD5 column is the file's MD5, read with its SHA-256 (the report, the Timesketch and
the CASE exports carry both, and SHA-1); ``0`` ("not hashed", the TSK convention) when
the path is not a regular file, was not hashed, or the run was ``--sha256-only``.

Names are escaped so that no line can be split or forged: on top of the path
rule (non-UTF-8 bytes ``\\xNN``, a backslash ``\\\\``), control and bidi
characters become ``\\xNN``/``\\uNNNN``, ``|`` becomes ``\\x7c`` and ``%``
``\\x25`` (``mactime`` decodes ``%XX`` in every field).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Mapping
from typing import Any

from drifttools.models import ChangeKind, DriftReport, FileFacts
from drifttools.text import printable

_TYPES = {
    "file": ("r", stat.S_IFREG),
    "dir": ("d", stat.S_IFDIR),
    "symlink": ("l", stat.S_IFLNK),
    "char": ("c", stat.S_IFCHR),
    "block": ("b", stat.S_IFBLK),
    "fifo": ("p", stat.S_IFIFO),
    "socket": ("s", stat.S_IFSOCK),
}


def escape(text: str) -> str:
    """A name for one bodyfile field: printable, and without ``|`` or ``%``."""
    return printable(text).replace("|", "\\x7c").replace("%", "\\x25")


def mode_string(facts: FileFacts) -> str:
    """TSK's ``mode_as_string``: ``r/rrwxr-xr-x`` (name type / meta type and permissions)."""
    letter, bits = _TYPES.get(facts.kind, ("-", 0))
    return f"{letter}/{letter}{stat.filemode(bits | facts.mode)[1:]}"


def _seconds(ns: int | None) -> int:
    return 0 if ns is None else ns // 1_000_000_000


def lines(report: DriftReport, acquisition: Mapping[str, Any] | None = None) -> Iterator[str]:
    """One bodyfile line per change of ``report``."""
    for change in report.changes:
        facts = change.facts
        name = escape(change.path)
        if facts.kind == "symlink" and facts.target is not None:
            name += " -> " + escape(facts.target)
        if change.change is ChangeKind.DELETED:
            name += " (deleted)"
        fields = (
            facts.md5 or "0",
            name,
            str(facts.inode or 0),
            mode_string(facts),
            str(facts.uid),
            str(facts.gid),
            str(facts.size),
            str(_seconds(facts.atime_ns)),
            str(_seconds(facts.mtime_ns)),
            str(_seconds(facts.ctime_ns)),
            str(_seconds(facts.btime_ns)),
        )
        yield "|".join(fields)
