"""Turn entries read by the native core into the model's :class:`FileFacts`.

The native core keeps a walked tree or a layer's entries compactly in Rust;
Python materialises facts one entry at a time, only where it needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from drifttools import _native
from drifttools.models import NO_XATTRS, ErrorRecord, FileFacts

#: Extended attributes compared between image and container. SELinux labels
#: are kept as facts but not compared: the host policy assigns them.
COMPARED_XATTRS = (_native.DRIFT_XATTR,)  # the drift keys compare the same one


def facts_from_entry(entry: _native.Entry) -> FileFacts:
    """The facts of one native entry (a hardlink is resolved by the caller)."""
    rdev = (entry.rdev_major, entry.rdev_minor) if entry.kind in ("char", "block") else None
    xattrs = MappingProxyType(dict(entry.xattrs)) if entry.xattrs else NO_XATTRS
    return FileFacts(
        kind=entry.kind,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        sha256=entry.sha256,
        target=entry.target,
        xattrs=xattrs,
        rdev=rdev,
        atime_ns=entry.atime_ns,
        ctime_ns=entry.ctime_ns,
        btime_ns=entry.btime_ns,
        inode=entry.inode,
        nlink=entry.nlink,
    )


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


def tree_errors(tree: _native.Tree, mount: str = "/") -> tuple[ErrorRecord, ...]:
    """Every entry the native core could not read fully, with its reason."""
    if not tree.error_count:
        return ()
    return tuple(
        ErrorRecord(join_mount(mount, entry.path), entry.error)
        for entry in tree
        if entry.error is not None
    )


def join_mount(mount: str, path: str) -> str:
    """The container path of ``path`` read from a filesystem mounted at ``mount``."""
    return path if mount == "/" else mount.rstrip("/") + path


def compared_xattrs(xattrs: Mapping[str, bytes]) -> dict[str, bytes]:
    """The extended attributes whose change counts as drift."""
    return {name: xattrs[name] for name in COMPARED_XATTRS if name in xattrs}
