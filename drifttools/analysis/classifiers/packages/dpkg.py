"""dpkg (Debian, Ubuntu): what ``dpkg-query`` reads, from the files dpkg keeps.

``/var/lib/dpkg/status`` names the packages (``Package``, ``Architecture``, ``Version``;
a package is on disk from ``unpacked`` to ``installed``) and their conffiles with the md5
each was installed with; ``info/<package>.md5sums`` the md5 of every other regular file;
``info/<package>.list`` every path, directories and symlinks too (read for the packages
whose list changed: the ones added or changed at runtime); ``diversions`` the paths whose
package file dpkg installs elsewhere (``dpkg-divert``: three lines each, the path, where
it goes, the diverting package or ``:`` for a local diversion). Multi-Arch: same packages
name their info files ``<package>:<arch>``. Listed paths are read through the side's merged
/usr (``bin/cat`` is ``/usr/bin/cat`` when ``/bin`` links to ``usr/bin``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from drifttools.analysis.classifiers.packages.database import (
    Database,
    Diversion,
    Owned,
    Side,
    own_listed,
)
from drifttools.analysis.classifiers.packages.purl import purl
from drifttools.models import PackageRef

STATUS = "/var/lib/dpkg/status"
INFO = "/var/lib/dpkg/info/"
DIVERSIONS = "/var/lib/dpkg/diversions"
#: Package states in which its files are on disk (dpkg-query(1) "Status").
ON_DISK = frozenset(
    {"installed", "half-configured", "unpacked", "half-installed"}
    | {"triggers-awaited", "triggers-pending"}
)
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One package of the status file that has its files on disk."""

    name: str
    architecture: str | None
    version: str
    conffiles: tuple[tuple[str, str], ...]  # (path, md5 or a marker such as "newconffile")


def parse_status(text: str) -> Iterator[StatusEntry]:
    """The packages of a dpkg status file whose files are on disk."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        name, status = fields.get("Package"), fields.get("Status", "").split()
        if not name or not status or status[-1] not in ON_DISK:
            continue
        conffiles = tuple(
            (words[0], words[1] if len(words) > 1 else "")
            for line in fields.get("Conffiles", "").splitlines()
            if (words := line.split()) and words[0].startswith("/")
        )
        yield StatusEntry(name, fields.get("Architecture"), fields.get("Version", ""), conffiles)


def parse_diversions(text: str) -> Iterator[tuple[str, str, str | None]]:
    """``(path, diverted to, package or None for local)`` of a dpkg diversions file."""
    lines = text.splitlines()
    for index in range(0, len(lines) - 2, 3):
        path, to, by = lines[index : index + 3]
        yield path, to, None if by == ":" else by


def read_database(side: Side, changed: Collection[str]) -> Database | None:
    """The dpkg database of ``side``; None when it has no status file or it is unreadable."""
    text = side.text(STATUS)
    if text is None:
        return None
    db = Database("dpkg")
    info_names: dict[str, str] = {}
    for entry in parse_status(text):
        key = f"{entry.name}:{entry.architecture}"
        db.packages[key] = PackageRef(
            "dpkg",
            entry.name,
            entry.version,
            entry.architecture,
            purl(
                "dpkg",
                entry.name,
                entry.version,
                namespace=side.namespace or "debian",
                qualifiers={"arch": entry.architecture},
            ),
        )
        info_names[entry.name] = info_names[f"{entry.name}:{entry.architecture}"] = key
        for path, digest in entry.conffiles:
            md5 = ("md5", digest) if _MD5.fullmatch(digest) else None
            own_listed(db, side, path, Owned(key, md5, conffile=True))
    infos = sorted(p for p in side.paths if p.startswith(INFO) and "/" not in p[len(INFO) :])
    for suffix in (".md5sums", ".list"):  # digests first: a list adds the paths they lack
        for path in infos:
            stem, dot, extension = path[len(INFO) :].rpartition(".")
            owner = info_names.get(stem)
            if owner is None or not dot:
                continue
            db.metadata[path] = owner
            if "." + extension != suffix or (suffix == ".list" and path not in changed):
                continue
            _read_listing(db, side, path, owner, suffix)
    diversions = side.text(DIVERSIONS) if side.has(DIVERSIONS) else None
    for path, to, by in parse_diversions(diversions or ""):
        _divert(db, side.canonical(path), side.canonical(to), by)
    return db


def _read_listing(db: Database, side: Side, path: str, key: str, suffix: str) -> None:
    text = side.text(path)
    for line in (text or "").splitlines():
        if suffix == ".md5sums":
            digest, _, name = line.partition("  ")
            if name and _MD5.fullmatch(digest.strip()):
                own_listed(db, side, "/" + name.lstrip("/"), Owned(key, ("md5", digest.strip())))
        elif line.startswith("/") and line != "/.":
            owners = db.files.get(side.canonical(line), [])
            if all(owner.package != key for owner in owners):
                own_listed(db, side, line, Owned(key, None))


def _divert(db: Database, path: str, to: str, by: str | None) -> None:
    """Move the diverted packages' record of ``path`` to where their file is."""
    owners = db.files.pop(path, [])
    diverting = [o for o in owners if by is not None and db.packages[o.package].name == by]
    for owner in owners:
        if owner not in diverting:
            db.own(to, dataclasses.replace(owner, listed_as=owner.listed_as or path))
    if diverting:
        db.files[path] = diverting
    db.diversions[path] = Diversion(to, by)
