"""The names OCI layers delete with, and the facts of a directory no layer named.

Layers are applied natively (:class:`drifttools._native.MergedLayers`, ``rust/src/merge.rs``,
which states the rules: image-spec "Applying Changesets" for layer tars, overlay whiteouts for
unpacked lower dirs) straight into the image's index (:mod:`drifttools.baseline.index`):
no Python object per entry. What stays here is what Python code reads an overlay upper dir
with, and the facts the index gives an implicit directory.
"""

from __future__ import annotations

import posixpath

from drifttools.models import FileFacts

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

#: The facts of a directory no layer named, made for a path below it.
IMPLICIT_DIR = FileFacts(kind="dir", mode=0o755, uid=0, gid=0, size=0, mtime_ns=0)


def whiteout_target(path: str) -> str | None:
    """The path a ``.wh.<name>`` entry deletes, or None if ``path`` is no whiteout."""
    parent, name = posixpath.split(path)
    if not name.startswith(WHITEOUT_PREFIX) or name == OPAQUE_MARKER:
        return None
    return posixpath.join(parent, name[len(WHITEOUT_PREFIX) :])


def is_opaque_marker(path: str) -> bool:
    return posixpath.basename(path) == OPAQUE_MARKER
