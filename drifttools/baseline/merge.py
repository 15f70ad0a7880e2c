"""Apply image layers in order, with OCI semantics, into one merged view.

Pure: takes the entries of each layer (already read and hashed by the native
core), returns every path of the image with the layer that gave it.

OCI rules applied here (image-spec, "Applying Changesets"):

* ``.wh..wh..opq`` in a directory hides everything lower layers put below it;
  it applies first, wherever it sits in the layer.
* ``.wh.<name>`` deletes ``<name>`` (and all below it) from lower layers.
* An entry replaces what lower layers had at its path; a directory over a
  directory keeps the children, anything else drops them.
* A hardlink takes the content of its target, in this layer or a lower one.

A member whose name (or hardlink target) would land outside the layer's root on extraction
(``..`` components, an absolute name) is kept out of the merged view, whiteouts included,
and listed in the errors: the layer's reader flags it (:data:`UNSAFE`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from drifttools import _native
from drifttools.models import BaselineEntry, ErrorRecord, FileFacts

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

#: How the layer reader's error for a member named outside the layer's root begins.
UNSAFE = ("unsafe path in archive: ", "unsafe hardlink target in archive: ")

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


class MergedTree:
    """A path-keyed tree that can drop whole subtrees in time proportional to their size.

    The child index that removal needs is built on the first removal only: an
    image whose layers never delete or replace anything is merged without it.
    """

    def __init__(self) -> None:
        self.entries: dict[str, BaselineEntry] = {}
        self.kinds: dict[str, str] = {}
        self.links: dict[str, set[str]] = {}  # path -> every path of its inode (one shared set)
        self._children: dict[str, set[str]] | None = None

    def link(self, path: str, target: str) -> None:
        """Record that ``path`` is a hardlink of ``target``."""
        group = self.links.setdefault(target, {target})
        group.add(path)
        self.links[path] = group

    def link_groups(self) -> dict[str, frozenset[str]]:
        """For each hardlinked path still in the tree, every path that shares its inode."""
        groups = {}
        for path, group in self.links.items():
            alive = frozenset(p for p in group if p in self.entries)
            if path in self.entries and len(alive) > 1:
                groups[path] = alive
        return groups

    def _child_index(self) -> dict[str, set[str]]:
        if self._children is None:
            children: dict[str, set[str]] = {"/": set()}
            for path, kind in self.kinds.items():
                children.setdefault(_parent(path), set()).add(path)
                if kind == "dir":
                    children.setdefault(path, set())
            self._children = children
        return self._children

    def remove(self, path: str) -> None:
        """Delete ``path`` and everything below it."""
        if path not in self.entries:
            return
        self.clear(path)
        del self.entries[path]
        del self.kinds[path]
        children = self._child_index()
        children.pop(path, None)
        children[_parent(path)].discard(path)

    def clear(self, path: str) -> None:
        """Delete everything below directory ``path``, keeping ``path`` itself."""
        for child in list(self._child_index().get(path, ())):
            self.remove(child)

    def put(self, path: str, kind: str, entry: BaselineEntry) -> None:
        """Set ``path``; parents that no layer named are created as plain directories."""
        kinds = self.kinds
        old = kinds.get(path)
        if old is not None and not (old == "dir" and kind == "dir"):
            self.remove(path)
        cut = path.rfind("/")  # 0: the parent is "/"
        if cut > 0 and kinds.get(path[:cut]) != "dir":
            self.put(path[:cut], "dir", BaselineEntry(entry.layer, IMPLICIT_DIR))
        self.entries[path] = entry
        kinds[path] = kind
        if self._children is not None:
            self._children[path[:cut] or "/"].add(path)
            if kind == "dir":
                self._children.setdefault(path, set())


def _parent(path: str) -> str:
    return path[: path.rfind("/")] or "/"


def apply_layer(
    tree: MergedTree, layer: _native.Tree, index: int, errors: list[ErrorRecord]
) -> None:
    """Apply one layer's entries on top of ``tree``; problems go to ``errors``."""
    paths, kinds = layer.paths(), layer.kinds()
    flagged: dict[int, str] = {}
    if layer.error_count:  # entries are only built when some carry an error
        flagged = {i: entry.error for i, entry in enumerate(layer) if entry.error}
    unsafe = {i for i, error in flagged.items() if error.startswith(UNSAFE)}
    for i in sorted(unsafe):
        errors.append(
            ErrorRecord(paths[i], f"layer {index}: {flagged[i]}; kept out of the baseline")
        )
    special = [i for i, path in enumerate(paths) if WHITEOUT_PREFIX in path and i not in unsafe]
    for i in special:
        if is_opaque_marker(paths[i]):
            tree.clear(posixpath.dirname(paths[i]))
    for i in special:
        target = whiteout_target(paths[i])
        if target is not None:
            tree.remove(target)
    skip = set(special) | unsafe
    unusual = skip | flagged.keys()
    put = tree.put
    for i, (path, kind) in enumerate(zip(paths, kinds, strict=True)):
        if i in unusual:
            if i in skip:
                continue
            errors.append(ErrorRecord(path, f"layer {index}: {flagged[i]}"))
        if kind == "hardlink":
            target = layer[i].target or ""
            linked = tree.entries.get(target)
            if linked is None:
                errors.append(
                    ErrorRecord(path, f"layer {index}: hardlink target missing: {target}")
                )
                continue
            # one inode, one set of facts: the target's entry (or its given facts)
            origin = linked.origin
            same = (
                BaselineEntry(index, linked.facts)
                if origin is None
                else BaselineEntry(index, source=origin[0], index=origin[1])
            )
            tree.put(path, tree.kinds[target], same)
            tree.link(path, target)
        else:
            put(path, kind, BaselineEntry(index, source=layer, index=i))


@dataclass(frozen=True)
class Merged:
    """The merged view of an image's layers."""

    entries: dict[str, BaselineEntry]
    links: dict[str, frozenset[str]]  # hardlinked path -> all paths of that inode
    errors: tuple[ErrorRecord, ...]


def merge_layers(layers: Sequence[_native.Tree]) -> Merged:
    """Apply ``layers`` bottom first; return the merged entries, hardlinks and what went wrong."""
    tree = MergedTree()
    errors: list[ErrorRecord] = []
    for index, layer in enumerate(layers):
        apply_layer(tree, layer, index, errors)
    return Merged(tree.entries, tree.link_groups(), tuple(errors))
