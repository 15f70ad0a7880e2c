"""Entries read by the native core, as the model sees them: facts with hardlinks resolved,
container paths, the extended attributes that count as drift.

The native core keeps a walked tree or a layer's entries compactly in Rust;
Python materialises facts one entry at a time
(:func:`~drifttools.models.facts_from_entry`), only where it needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from drifttools import _native
from drifttools.models import FileFacts, facts_from_entry

#: Extended attributes compared between image and container. SELinux labels
#: are kept as facts but not compared: the host policy assigns them.
COMPARED_XATTRS = (_native.DRIFT_XATTR,)  # the drift keys compare the same one


def iter_facts(
    tree: _native.Tree, only: Iterable[int] | None = None
) -> Iterator[tuple[str, FileFacts, str | None]]:
    """Yield ``(path, facts, error)`` for every entry (or those at ``only``), hardlinks
    resolved in the tree.

    A hardlink whose target is not in the tree yields facts of kind
    ``unknown`` and an error that says so: the record is kept.
    """
    links = []
    for i in range(len(tree)) if only is None else only:
        entry = tree[i]
        if entry.kind == "hardlink":
            links.append(entry)
        else:
            yield entry.path, facts_from_entry(entry), entry.error
    if not links:
        return
    kinds = tree.kinds()
    targets = {path: i for i, path in enumerate(tree.paths()) if kinds[i] != "hardlink"}
    for entry in links:
        target = targets.get(entry.target or "")
        if target is None:
            yield entry.path, _unresolved(entry), f"hardlink target missing: {entry.target}"
        else:  # same inode: same facts
            yield entry.path, facts_from_entry(tree[target]), entry.error


def _unresolved(entry: _native.Entry) -> FileFacts:
    return FileFacts(
        kind="unknown",
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        size=0,
        mtime_ns=entry.mtime_ns,
        target=entry.target,
    )


def join_mount(mount: str, path: str) -> str:
    """The container path of ``path`` read from a filesystem mounted at ``mount``."""
    return path if mount == "/" else mount.rstrip("/") + path


def compared_xattrs(xattrs: Mapping[str, bytes]) -> dict[str, bytes]:
    """The extended attributes whose change counts as drift."""
    return {name: xattrs[name] for name in COMPARED_XATTRS if name in xattrs}
