"""Package drift: which packages changed, which package owns each drifted path, and
whether the path's bytes are the ones that package recorded.

Each package manager's database is read twice, as the image has it and as the container
has it (:class:`~drifttools.analysis.classifiers.packages.database.Side`). Then:

* packages added, removed, upgraded or downgraded, and packages of the image's version
  whose files no longer match (``modified``): :class:`~drifttools.models.PackageRecord`,
  each with the drifted paths it owns;
* for every drifted path, its owner in the container and in the image, and its bytes
  against the owner's record (:class:`~drifttools.models.Provenance`). System managers
  (dpkg, rpm, apk) are asked first; a Python or npm package whose own metadata a system
  package owns is that system package's, reported once, under it;
* a symlink no package lists, which points at a file a package installed with the bytes it
  recorded, is that package's (``link``): maintainer scripts make them (``update-rc.d``,
  ``update-alternatives``, systemd's ``wants``).

A file a package added or changed at runtime put there with the bytes it recorded is
*runtime package drift*: real drift (the image should carry it), and no sign of an intruder
by itself: :meth:`PackageDrift.judge` caps what the record vouches for at medium.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from drifttools.analysis.classifiers.packages import apk, dpkg, npm, python, rpm
from drifttools.analysis.classifiers.packages.database import (
    Database,
    Diversion,
    Owned,
    Reader,
    Side,
    is_database_path,
)
from drifttools.analysis.classifiers.packages.versions import compare_versions
from drifttools.analysis.classifiers.severity import cap_runtime_package
from drifttools.models import (
    BaselineEntry,
    Change,
    ChangeKind,
    FileFacts,
    Finding,
    PackageRecord,
    PackageRef,
    Provenance,
    RecordCheck,
    Severity,
)

ReadDatabase = Callable[[Side, Collection[str]], Database | None]

#: The readers, system package managers first: their answer wins.
MANAGERS: tuple[ReadDatabase, ...] = (
    dpkg.read_database,
    rpm.read_database,
    apk.read_database,
    python.read_database,
    npm.read_database,
)
_SYSTEM = ("dpkg", "rpm", "apk")
#: The files whose change is a change of a package database.
DATABASE_FILES = (dpkg.STATUS, apk.INSTALLED, *rpm.DATABASES)


@dataclass(frozen=True, slots=True)
class _Owner:
    db: Database
    key: str | None  # None: a local diversion
    owned: tuple[Owned, ...] = ()
    metadata: bool = False
    diversion: Diversion | None = None

    @property
    def package(self) -> PackageRef | None:
        return self.db.packages.get(self.key) if self.key is not None else None


@dataclass
class PackageDrift:
    """What the package databases say of the drift."""

    records: list[PackageRecord] = field(default_factory=list)
    provenance: dict[str, Provenance] = field(default_factory=dict)  # by drifted path
    findings: dict[str, list[Finding]] = field(default_factory=dict)  # by drifted path
    known: bool = False  # a system package database was read: "unowned" means something
    notes: list[str] = field(default_factory=list)
    image_paths: Collection[str] = ()
    sha256: dict[str, str | None] = field(default_factory=dict)  # container's, by path

    def add(self, path: str, finding: Finding) -> None:
        self.findings.setdefault(path, []).append(finding)

    def mismatch(self, path: str, package: PackageRef, owned: Owned, binary: bool) -> None:
        """A file of ``package`` whose bytes are not the ones it recorded: a trojaned binary
        or library is high (T1554), other files medium (T1565.001)."""
        listed = f", listed as {owned.listed_as}" if owned.listed_as else ""
        algorithm = owned.digest[0] if owned.digest else "digest"
        self.add(
            path,
            Finding(
                "package.file-mismatch",
                Severity.HIGH if binary else Severity.MEDIUM,
                ("T1554",) if binary else ("T1565.001",),
                ("package-file-modified",),
                f"owned by {package.manager} package {package.name} {package.version}{listed}; "
                f"its {algorithm} does not match the package's record",
            ),
        )

    def diverted(self, path: str, diversion: Diversion) -> None:
        """A path a diversion made at runtime took from its package (``dpkg-divert``)."""
        by = f"by package {diversion.by}" if diversion.by else "local"
        self.add(
            path,
            Finding(
                "package.diverted",
                Severity.MEDIUM,
                ("T1554",),
                ("package-diverted",),
                f"dpkg diversion ({by}) made at runtime: the package's file is now "
                f"{diversion.to}; this one is checked against no package",
            ),
        )

    def judge(self, change: Change, findings: Sequence[Finding]) -> tuple[list[Finding], list[str]]:
        """The findings of ``change`` with the package ones added, capped when it is runtime
        package drift; and the tags provenance adds (``runtime-package``, ``unowned``)."""
        found = [*findings, *self.findings.get(change.path, ())]
        provenance = self.provenance.get(change.path)
        if provenance is not None and provenance.runtime_drift:
            return cap_runtime_package(found), ["runtime-package"]
        if (
            self.known
            and (provenance is None or provenance.package is None)
            and change.change is ChangeKind.ADDED
            and change.after is not None
            and change.after.kind == "file"
        ):
            return found, ["unowned"]
        return found, []

    def runtime_package(self, path: str, sha256: str | None = None) -> PackageRef | None:
        """The package added or changed at runtime that put ``path`` there with the bytes it
        recorded (and, given ``sha256``, only if those are the bytes)."""
        provenance = self.provenance.get(path)
        if provenance is None or not provenance.runtime_drift:
            return None
        if sha256 is not None and self.sha256.get(path) != sha256:
            return None
        return provenance.package

    def in_image(self, path: str) -> bool:
        return path in self.image_paths


def package_drift(
    changes: Mapping[str, Change],
    baseline: Mapping[str, BaselineEntry],
    before: Reader,
    after: Reader,
    binaries: Collection[str],
    database_paths: Collection[str] | None = None,
) -> PackageDrift:
    """Package records, provenance and findings of the drifted paths ``changes``.

    ``before`` reads a path of the image, ``after`` of the container (either answers None
    when it cannot); ``binaries`` are the drifted paths whose content is executable code.
    ``database_paths`` are the image's paths the readers read (:func:`is_database_path`)
    when known (an image index records them); else they are found by listing ``baseline``.
    """
    out = PackageDrift(image_paths=baseline.keys())
    out.sha256 = {p: c.after.sha256 for p, c in changes.items() if c.after is not None}
    if not changes:
        return out
    if database_paths is None:
        database_paths = [p for p in baseline if is_database_path(p)]
    image, container = _sides(changes, baseline, database_paths, before, after)
    olds: list[Database] = []
    news: list[Database] = []
    comparable: set[str] = set()
    for read in MANAGERS:
        noted = len(image.notes), len(container.notes)
        old, new = read(image, changes.keys()), read(container, changes.keys())
        either = old or new
        if either is None:
            continue
        manager = either.manager
        olds += [old] if old else []
        news += [new] if new else []
        if (len(image.notes), len(container.notes)) == noted:
            comparable.add(manager)
        else:
            out.notes.append(f"{manager}: the image's and container's versions not compared")
    _drop_system_owned(olds)
    _drop_system_owned(news)
    out.known = any(db.manager in _SYSTEM for db in news)
    keys = _provenance(changes, olds, news, container, binaries, out)
    _records(olds, news, comparable, keys, out)
    _database_findings(changes, out)
    out.notes += image.notes + container.notes
    return out


def _sides(
    changes: Mapping[str, Change],
    baseline: Mapping[str, BaselineEntry],
    image_paths: Collection[str],
    before: Reader,
    after: Reader,
) -> tuple[Side, Side]:
    gone = {p for p, c in changes.items() if c.after is None}
    container_paths = (set(image_paths) - gone) | {
        p for p, c in changes.items() if c.after is not None and is_database_path(p)
    }
    unchanged: dict[str, bytes | None] = {}

    def shared(path: str) -> bytes | None:  # an unchanged path has the same bytes on both
        if path not in unchanged:
            unchanged[path] = after(path)
        return unchanged[path]

    def image_facts(path: str) -> FileFacts | None:
        entry = baseline.get(path)
        return entry.facts if entry is not None else None

    def container_facts(path: str) -> FileFacts | None:
        return changes[path].after if path in changes else image_facts(path)

    image = Side(
        "image",
        image_paths,
        image_facts,
        lambda p: before(p) if p in changes else shared(p),
    )
    container = Side(
        "container",
        container_paths,
        container_facts,
        lambda p: after(p) if p in changes else shared(p),
    )
    return image, container


def _drop_system_owned(dbs: list[Database]) -> None:
    """Python and npm packages whose metadata a system package owns are that package's."""
    system = [db for db in dbs if db.manager in _SYSTEM]
    for db in dbs:
        if db.manager in _SYSTEM:
            continue
        dropped = {key for path, key in db.metadata.items() if any(path in s.files for s in system)}
        for key in dropped:
            del db.packages[key]
        db.metadata = {p: k for p, k in db.metadata.items() if k not in dropped}
        kept = {
            p: [o for o in owners if o.package not in dropped] for p, owners in db.files.items()
        }
        db.files = {path: owners for path, owners in kept.items() if owners}


def _owner(dbs: Sequence[Database], path: str) -> _Owner | None:
    for db in dbs:
        owned = db.files.get(path)
        if owned:
            return _Owner(db, owned[0].package, tuple(owned))
        if path in db.metadata:
            return _Owner(db, db.metadata[path], metadata=True)
        diversion = db.diversions.get(path)
        if diversion is not None:
            by = next((k for k, p in db.packages.items() if p.name == diversion.by), None)
            return _Owner(db, by, diversion=diversion)
    return None


def _digests(change: Change, container: Side, algorithms: set[str]) -> dict[str, str] | None:
    """The container file's digests in ``algorithms``; None when its bytes cannot be had."""
    assert change.after is not None
    have = {"sha256": change.after.sha256} if change.after.sha256 else {}
    missing = algorithms - have.keys()
    if missing:
        data = container.read(change.path)
        if data is None:
            return None
        for algorithm in missing:
            try:
                have[algorithm] = hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()
            except ValueError:
                continue
    return have


def _file_record(
    change: Change, owner: _Owner, container: Side
) -> tuple[RecordCheck, Owned | None]:
    """The container's bytes of ``change`` against ``owner``'s record of them."""
    if owner.metadata:
        return RecordCheck.METADATA, None
    if owner.diversion is not None:
        return RecordCheck.DIVERTED, None
    first = owner.owned[0]
    if change.after is None:
        return RecordCheck.MISSING, first
    if change.after.kind == "dir":
        return RecordCheck.MATCH, first  # a directory it lists: nothing more to compare
    recorded = [o for o in owner.owned if o.digest is not None]
    if change.after.kind != "file" or not recorded:
        return RecordCheck.UNCHECKED, first
    have = _digests(change, container, {o.digest[0] for o in recorded if o.digest})
    if have is None:
        return RecordCheck.UNCHECKED, first
    for owned in recorded:
        assert owned.digest is not None
        if have.get(owned.digest[0]) == owned.digest[1]:
            return RecordCheck.MATCH, owned
    edited = RecordCheck.CONFFILE_EDITED if recorded[0].conffile else RecordCheck.MISMATCH
    return edited, recorded[0]


def _provenance(
    changes: Mapping[str, Change],
    olds: Sequence[Database],
    news: Sequence[Database],
    container: Side,
    binaries: Collection[str],
    out: PackageDrift,
) -> dict[str, tuple[str, str]]:
    """Fill ``out.provenance`` and the mismatch findings; return each owned path's
    (manager, package key): its owner in the container, or in the image when none."""
    keys: dict[str, tuple[str, str]] = {}
    links: list[tuple[str, _Owner | None, _Owner | None]] = []
    for path, change in changes.items():
        new, old = _owner(news, path), _owner(olds, path)
        if change.after is not None and change.after.kind == "symlink":
            links.append((path, new, old))
        if new is None and old is None:
            continue
        record, owned = _file_record(change, new, container) if new else (None, None)
        out.provenance[path] = Provenance(
            new.package if new else None,
            old.package if old else None,
            record,
            runtime=new is not None and _runtime(new, olds),
            listed_as=owned.listed_as if owned else None,
        )
        owner = new if new is not None and new.key is not None else old
        if owner is not None and owner.key is not None:
            keys[path] = (owner.db.manager, owner.key)
        if record is RecordCheck.MISMATCH and new is not None and new.package is not None:
            assert owned is not None
            out.mismatch(path, new.package, owned, path in binaries)
        elif (
            record is RecordCheck.DIVERTED
            and new is not None
            and new.diversion is not None
            and (old is None or old.diversion != new.diversion)
        ):
            out.diverted(path, new.diversion)
    for path, new, old in links:
        _link(path, new, old, container, keys, out)
    return keys


def _runtime(owner: _Owner, olds: Sequence[Database]) -> bool:
    """Whether the owning package is not in the image as it is in the container."""
    now = owner.package
    if now is None:
        return False
    manager, key = owner.db.manager, owner.key or ""
    then = next((db.packages.get(key) for db in olds if db.manager == manager), None)
    return then is None or (then.version, then.architecture) != (now.version, now.architecture)


def _link(
    path: str,
    new: _Owner | None,
    old: _Owner | None,
    container: Side,
    keys: dict[str, tuple[str, str]],
    out: PackageDrift,
) -> None:
    """A symlink to a file a package installed with the bytes it recorded is that package's
    (when a package lists the symlink, only if it is the same package)."""
    target = container.resolve(path)
    found = out.provenance.get(target) if target else None
    if (
        target is None
        or found is None
        or found.record is not RecordCheck.MATCH
        or target not in keys
    ):
        return
    if new is not None and keys.get(path) != keys[target]:
        return
    out.provenance[path] = Provenance(
        found.package, old.package if old else None, RecordCheck.LINK, runtime=found.runtime
    )
    keys[path] = keys[target]


def _records(
    olds: Sequence[Database],
    news: Sequence[Database],
    comparable: Collection[str],
    keys: Mapping[str, tuple[str, str]],
    out: PackageDrift,
) -> None:
    """The packages that changed, each with the drifted paths it owns."""
    files: dict[tuple[str, str], list[str]] = {}
    for path, owner in sorted(keys.items()):
        files.setdefault(owner, []).append(path)
    managers = dict.fromkeys(db.manager for db in (*news, *olds))
    for manager in managers:
        old = next((db for db in olds if db.manager == manager), Database(manager))
        new = next((db for db in news if db.manager == manager), Database(manager))
        for key in sorted(old.packages.keys() | new.packages.keys()):
            then, now = old.packages.get(key), new.packages.get(key)
            paths = files.get((manager, key), [])
            mismatched = [p for p in paths if out.provenance[p].record is RecordCheck.MISMATCH]
            change = _change(then, now)
            if change is None and mismatched:
                change = "modified"
            if change is None or (change != "modified" and manager not in comparable):
                continue
            package = now or then
            assert package is not None
            severities = [f.severity for p in mismatched for f in out.findings.get(p, ())]
            out.records.append(
                PackageRecord(
                    manager,
                    package.name,
                    change,
                    then.version if then else None,
                    now.version if now else None,
                    architecture=package.architecture,
                    purl=package.purl,
                    severity=max([Severity.MEDIUM, *severities], key=lambda s: s.rank),
                    files=tuple(paths),
                    mismatched=tuple(mismatched),
                    location=(new.location or old.location).get(key),
                )
            )


def _change(then: PackageRef | None, now: PackageRef | None) -> str | None:
    if then is None:
        return "added"
    if now is None:
        return "removed"
    if then.version == now.version:
        return None
    return "upgraded" if compare_versions(now.version, then.version) > 0 else "downgraded"


def _database_findings(changes: Mapping[str, Change], out: PackageDrift) -> None:
    """A changed package database: medium, with what changed in it."""
    for path in DATABASE_FILES:
        if path not in changes:
            continue
        manager = "dpkg" if path == dpkg.STATUS else "apk" if path == apk.INSTALLED else "rpm"
        listed = [r for r in out.records if r.manager == manager and r.change != "modified"]
        detail = f"{manager} package database changed"
        if listed:
            detail += f": {len(listed)} package(s) " + ", ".join(
                f"{r.name} {r.change}" for r in listed[:5]
            )
        out.add(
            path,
            Finding("package.db-changed", Severity.MEDIUM, ("T1565.001",), ("package-db",), detail),
        )
