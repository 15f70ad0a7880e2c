"""Python distributions installed by pip and its kin (PEP 376, PEP 627): ``*.dist-info``.

``METADATA`` gives ``Name`` and ``Version``; ``RECORD`` is CSV, one line a file: its path
(relative to the site directory that holds the dist-info, ``../../../bin/tool`` for a
console script), ``sha256=`` and the urlsafe base64 of its digest without padding, its size.
Only the site directories the drift touches are read: those that hold a changed path, and
for a changed file in a ``bin`` directory the site directories below its prefix's ``lib``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import posixpath
from collections.abc import Collection, Iterable
from email.parser import HeaderParser

from drifttools.analysis.classifiers.packages.database import Database, Owned, Side, own_listed
from drifttools.analysis.classifiers.packages.purl import purl
from drifttools.models import PackageRef


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares it (``Charset_Normalizer``: charset-normalizer)."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-"))


def name_and_version(metadata: str) -> tuple[str, str] | None:
    """``Name`` and ``Version`` of a METADATA file."""
    headers = HeaderParser().parsestr(metadata[:65536], headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    return (str(name).strip(), str(version).strip()) if name and version else None


def record_digest(field: str) -> tuple[str, str] | None:
    """A RECORD hash field (``sha256=<urlsafe base64>``) as (hashlib name, hex digest)."""
    algorithm, equals, value = field.partition("=")
    if not equals or not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    return algorithm.lower(), raw.hex()


def _site_dirs(side: Side) -> set[str]:
    return {
        posixpath.dirname(posixpath.dirname(path))
        for path in side.paths
        if path.endswith("/METADATA") and posixpath.dirname(path).endswith(".dist-info")
    }


def _wanted(sites: Iterable[str], changed: Collection[str]) -> set[str]:
    sites = sorted(sites)
    wanted = set()
    for path in changed:
        parent = posixpath.dirname(path)
        prefix = posixpath.dirname(parent) + "/lib/" if parent.endswith("/bin") else None
        for site in sites:
            if path.startswith(site + "/") or (prefix and site.startswith(prefix)):
                wanted.add(site)
    return wanted


def read_database(side: Side, changed: Collection[str]) -> Database | None:
    """The distributions of the site directories the drift touches, on ``side``."""
    db = Database("python")
    for site in sorted(_wanted(_site_dirs(side), changed)):
        infos = {
            posixpath.dirname(p)
            for p in side.paths
            if posixpath.dirname(posixpath.dirname(p)) == site and p.endswith("/METADATA")
        }
        for info in sorted(infos):
            _read_distribution(db, side, site, info)
    return db if db.packages else None


def _read_distribution(db: Database, side: Side, site: str, info: str) -> None:
    text = side.text(info + "/METADATA")
    found = name_and_version(text) if text else None
    if found is None:
        return
    name, version = found
    key = f"{site}/{normalized(name)}"
    db.packages[key] = PackageRef("python", name, version, None, purl("python", name, version))
    db.location[key] = site
    db.metadata[info + "/METADATA"] = key
    record = side.text(info + "/RECORD") if side.has(info + "/RECORD") else None
    if record is not None:
        db.metadata[info + "/RECORD"] = key
    for row in csv.reader((record or "").splitlines()):
        if not row or not row[0]:
            continue
        path = posixpath.normpath(posixpath.join(site, row[0]))
        if path.startswith(info + "/"):
            db.metadata[path] = key
        else:
            digest = record_digest(row[1]) if len(row) > 1 else None
            own_listed(db, side, path, Owned(key, digest))
