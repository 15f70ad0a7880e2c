"""Pure drift computation: Snapshot x ImageIndex -> DriftReport. No I/O here.

Two ways to read a filesystem's entries:

* ``merged``: the whole filesystem as the container sees it. A baseline path
  that is absent was deleted.
* ``upper``: an overlay upper directory. Only what the container changed is
  there; absent paths are unchanged. A char device 0/0 or a ``.wh.<name>``
  file is a deletion, an opaque directory (``trusted.overlay.opaque=y`` and
  the ``user.`` variants fuse-overlayfs uses, or a ``.wh..wh..opq`` file)
  hides everything the image had below it. A copied-up file whose bytes and
  metadata equal the image's is no change.

Only mode, owner and compared xattrs count as metadata drift; an mtime alone
does not (the content hash decides whether a file was modified).
"""

from __future__ import annotations

import bisect
import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING

from drifttools import _native
from drifttools.analysis.process_tags import tag_processes
from drifttools.baseline.index import IndexedEntries
from drifttools.baseline.merge import is_opaque_marker, whiteout_target
from drifttools.entries import compared_xattrs, iter_facts, join_mount
from drifttools.models import (
    BaselineEntry,
    Change,
    ChangeKind,
    DriftReport,
    ErrorRecord,
    Exclusion,
    FileFacts,
    FilesystemState,
    ImageIndex,
    Severity,
    Snapshot,
)

if TYPE_CHECKING:
    from drifttools._native import Tree

#: Left out of every diff, and listed as such in the report.
DEFAULT_EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion("/proc", "pseudo filesystem (procfs), mounted by the runtime"),
    Exclusion("/sys", "pseudo filesystem (sysfs), mounted by the runtime"),
    Exclusion(
        "/dev", "device filesystem mounted by the runtime; its tmpfs mounts are read as mounts"
    ),
    Exclusion("/.dockerenv", "marker written by the Docker engine", subtree=False),
    Exclusion("/etc/hostname", "written by the container engine", subtree=False),
    Exclusion("/etc/hosts", "written by the container engine", subtree=False),
    Exclusion("/etc/resolv.conf", "written by the container engine", subtree=False),
    Exclusion("/etc/mtab", "symlink written by the container engine", subtree=False),
)

#: Directories the container engine makes (Docker's init layer, runc's mount points) to hold
#: the files it writes there, when the image has none. In a merged view such a directory is
#: the engine's, not drift, as long as it is as the engine makes it (root's, 0755).
ENGINE_DIRECTORIES = frozenset({"/etc"})

#: Severity before classification: what the change kind alone suggests.
BASE_SEVERITY = {
    ChangeKind.ADDED: Severity.LOW,
    ChangeKind.MODIFIED: Severity.LOW,
    ChangeKind.TYPE: Severity.LOW,
    ChangeKind.METADATA: Severity.LOW,
    ChangeKind.DELETED: Severity.INFO,
}


def compare(before: FileFacts | None, after: FileFacts) -> ChangeKind | None:
    """How ``after`` differs from the image's ``before``, or None when it does not."""
    if before is None:
        return ChangeKind.ADDED
    if before.kind != after.kind:
        return ChangeKind.TYPE
    if after.kind == "file":
        if before.sha256 and after.sha256:
            if before.sha256 != after.sha256:
                return ChangeKind.MODIFIED
        elif before.size != after.size:
            return ChangeKind.MODIFIED
    elif before.target != after.target or before.rdev != after.rdev:
        return ChangeKind.MODIFIED
    if (
        before.mode != after.mode
        or before.uid != after.uid
        or before.gid != after.gid
        or compared_xattrs(before.xattrs) != compared_xattrs(after.xattrs)
    ):
        return ChangeKind.METADATA
    return None


def is_overlay_deletion(facts: FileFacts) -> bool:
    """An overlay whiteout: a char device numbered 0/0."""
    return facts.kind == "char" and facts.rdev == (0, 0)


def is_opaque_dir(facts: FileFacts) -> bool:
    return facts.kind == "dir" and any(
        facts.xattrs.get(name) == b"y" for name in _native.OPAQUE_XATTRS
    )


class _Baseline:
    """The image's entries, and the two questions a diff asks of all of them: which paths lie
    below a directory, and which live entries need comparing in full. An image index
    (:class:`~drifttools.baseline.index.IndexedEntries`) answers both from its sorted file;
    a plain mapping from a sorted key list (made when first needed) and native drift keys."""

    def __init__(self, entries: Mapping[str, BaselineEntry]) -> None:
        self.entries = entries
        self._keys: dict[int, tuple[Tree, list[bytes | None]]] = {}  # id(tree): tree, keys

    def drift_key(self, path: str) -> bytes | None:
        """The native drift key of the image's ``path``; None when it must be compared in full."""
        entry = self.entries.get(path)
        origin = entry.origin if entry is not None else None
        if origin is None:
            return None
        tree, index = origin
        known = self._keys.get(id(tree))
        if known is None:
            known = self._keys[id(tree)] = (tree, tree.drift_keys())
        return known[1][index]

    @cached_property
    def _sorted(self) -> list[str]:
        return sorted(self.entries)

    def below(self, path: str) -> Iterable[str]:
        if isinstance(self.entries, IndexedEntries):
            return self.entries.below(path)
        return self._below_sorted(path.rstrip("/") + "/")

    def _below_sorted(self, prefix: str) -> Iterator[str]:
        keys = self._sorted
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            if not keys[i].startswith(prefix):
                return
            yield keys[i]

    def unsettled(self, state: FilesystemState) -> tuple[list[int], list[str]]:
        """The entries of ``state`` whose drift key is not the image's (only those can have
        drifted: a 200,000-file view is mostly equal), and the image paths it lacks."""
        if isinstance(self.entries, IndexedEntries):
            return self.entries.drift_join(state.tree, state.prefix)
        seen: set[str] = set()
        unsettled = []
        keys = state.tree.drift_keys()
        for i, relative in enumerate(state.tree.paths()):
            path = join_mount(state.prefix, relative)
            seen.add(path)
            key = keys[i]
            if key is None or key != self.drift_key(path):
                unsettled.append(i)
        return unsettled, [path for path in self.entries if path not in seen]


class _Exclusions:
    def __init__(self, exclusions: Sequence[Exclusion]) -> None:
        self._exact = {e.path for e in exclusions if not e.subtree}
        self._trees = tuple(e.path.rstrip("/") for e in exclusions if e.subtree)

    def __contains__(self, path: str) -> bool:
        if path in self._exact:
            return True
        return any(path == top or path.startswith(top + "/") for top in self._trees)


class _Collector:
    """Accumulates changes and errors of one diff."""

    def __init__(self, baseline: _Baseline, excluded: _Exclusions) -> None:
        self.baseline = baseline
        self.excluded = excluded
        self.changes: dict[str, Change] = {}
        self.errors: list[ErrorRecord] = []

    def observe(self, path: str, after: FileFacts, state: FilesystemState) -> None:
        base = self.baseline.entries.get(path) if state.has_baseline else None
        kind = compare(base.facts if base else None, after)
        if kind is not None:
            self.add(path, kind, base, after, state.mount)

    def delete(self, path: str, subtree: bool = True) -> None:
        """``path`` (and, with ``subtree``, every image path below it) is gone."""
        for gone in (path, *self.baseline.below(path)) if subtree else (path,):
            base = self.baseline.entries.get(gone)
            if base is not None and gone not in self.excluded and gone not in self.changes:
                self.add(gone, ChangeKind.DELETED, base, None, "/")

    def add(
        self,
        path: str,
        kind: ChangeKind,
        base: BaselineEntry | None,
        after: FileFacts | None,
        mount: str,
    ) -> None:
        self.changes[path] = Change(
            path=path,
            change=kind,
            before=base.facts if base else None,
            after=after,
            layer=base.layer if base else None,
            mount=mount,
            severity=BASE_SEVERITY[kind],
        )

    def read(
        self, state: FilesystemState, only: Iterable[int] | None = None
    ) -> Iterable[tuple[str, FileFacts]]:
        """``(container path, facts)`` of ``state`` (its entries at ``only``) outside the
        exclusions; errors recorded."""
        for relative, facts, error in iter_facts(state.tree, only):
            path = join_mount(state.prefix, relative)
            if error is not None:
                self.errors.append(ErrorRecord(path, error))
            if state.has_baseline and path in self.excluded:
                continue
            yield path, facts


def _made_by_engine(path: str, facts: FileFacts, baseline: _Baseline) -> bool:
    return (
        path in ENGINE_DIRECTORIES
        and facts.kind == "dir"
        and (facts.mode, facts.uid, facts.gid) == (0o755, 0, 0)
        and path not in baseline.entries
    )


def _diff_merged(state: FilesystemState, out: _Collector) -> None:
    unsettled, unseen = out.baseline.unsettled(state)
    for path, facts in out.read(state, unsettled):
        if not _made_by_engine(path, facts, out.baseline):
            out.observe(path, facts, state)
    for path in unseen:
        if path not in out.excluded:
            out.delete(path, subtree=False)


def _diff_upper(state: FilesystemState, out: _Collector) -> None:
    present: set[str] = set()
    opaque: list[str] = []
    for path, facts in out.read(state):
        hidden = whiteout_target(path)
        if hidden is not None:
            out.delete(hidden)
        elif is_opaque_marker(path):
            opaque.append(posixpath.dirname(path))
        elif is_overlay_deletion(facts):
            out.delete(path)
        else:
            present.add(path)
            if is_opaque_dir(facts):
                opaque.append(path)
            out.observe(path, facts, state)
    for directory in opaque:
        for path in out.baseline.below(directory):
            if path not in present:
                out.delete(path)


def _diff_present(state: FilesystemState, out: _Collector) -> None:
    """Compare what is there; judge nothing absent (mounts without baseline, partial views)."""
    for path, facts in out.read(state):
        out.observe(path, facts, state)


def diff_snapshot(
    snapshot: Snapshot,
    baseline: ImageIndex,
    *,
    exclusions: Sequence[Exclusion] = DEFAULT_EXCLUSIONS,
) -> DriftReport:
    """Compare every filesystem of ``snapshot`` with the image ``baseline``.

    Pure: reads only the data it is given. Changes come sorted by path;
    entries that could not be read are in ``errors`` with their reason.
    """
    out = _Collector(_Baseline(baseline.entries), _Exclusions(exclusions))
    for state in snapshot.filesystems:
        if not state.has_baseline or state.view == "partial":
            _diff_present(state, out)
        elif state.view == "upper":
            _diff_upper(state, out)
        else:
            _diff_merged(state, out)
    target = snapshot.target
    if target.image is None:
        target = replace(target, image=baseline.image)
    return DriftReport(
        target=target,
        acquired_at=snapshot.acquired_at,
        baseline=baseline.layers,
        baseline_problems=baseline.problems,
        changes=tuple(out.changes[path] for path in sorted(out.changes)),
        errors=(*baseline.errors, *snapshot.errors, *out.errors),
        exclusions=tuple(exclusions),
        processes=tag_processes(snapshot.processes, baseline.entries),
        sockets=snapshot.sockets,
        mounts=snapshot.mounts,
        notes=snapshot.notes,
        logs=snapshot.logs,
    )
