"""rpm (Fedora, RHEL, SUSE): the sqlite database of rpm 4.16 and later.

``rpmdb.sqlite`` (with its write-ahead log, when rpm left one) holds one header blob a
package in table ``Packages``. A header is a count of index entries and the size of its
data store, then the entries (tag, type, offset, count: big-endian 32-bit words), then
the store. The tags read: name 1000, version 1001, release 1002, epoch 1003, arch 1022,
file digests 1035, file flags 1037 (1: config), dir indexes 1116, base names 1117, dir
names 1118, file digest algorithm 5011 (OpenPGP numbers: 1 MD5, 2 SHA-1, 8 SHA-256 ...).
"""

from __future__ import annotations

import sqlite3
import struct
import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path

from drifttools.analysis.classifiers.packages.database import Database, Owned, Side, own_listed
from drifttools.analysis.classifiers.packages.purl import purl
from drifttools.models import PackageRef

DATABASES = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
_NAME, _VERSION, _RELEASE, _EPOCH, _ARCH = 1000, 1001, 1002, 1003, 1022
_DIGESTS, _FLAGS, _DIRINDEXES, _BASENAMES, _DIRNAMES, _ALGO = 1035, 1037, 1116, 1117, 1118, 5011
_STRING, _STRING_ARRAY, _I18N, _INT32 = 6, 8, 9, 4
_ALGORITHMS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_CONFIG = 1
_MAX_ENTRIES = 65536


class RpmHeaderError(ValueError):
    """A header blob that cannot be read."""


def header_tags(blob: bytes) -> dict[int, list[str] | list[int]]:
    """The string, string-array and int32 tags of one header blob, each as a list."""
    try:
        count, size = struct.unpack_from(">II", blob, 0)
        if count > _MAX_ENTRIES:
            raise RpmHeaderError(f"header of {count} entries")
        store = 8 + 16 * count
        data = blob[store : store + size]
        tags: dict[int, list[str] | list[int]] = {}
        for index in range(count):
            tag, kind, offset, items = struct.unpack_from(">IIiI", blob, 8 + 16 * index)
            if not 0 <= offset < len(data):
                continue
            if kind in (_STRING, _I18N, _STRING_ARRAY):
                wanted = items if kind == _STRING_ARRAY else 1
                strings = data[offset:].split(b"\0", wanted)[:wanted]
                tags[tag] = [s.decode("utf-8", "replace") for s in strings]
            elif kind == _INT32:
                tags[tag] = list(struct.unpack_from(f">{items}i", data, offset))
        return tags
    except struct.error as exc:
        raise RpmHeaderError(str(exc)) from exc


def read_blobs(database: bytes, wal: bytes | None) -> list[bytes]:
    """The header blobs of an rpm sqlite database (and its write-ahead log)."""
    with tempfile.TemporaryDirectory(prefix="drifttools-rpmdb-") as directory:
        path = Path(directory) / "rpmdb.sqlite"
        path.write_bytes(database)
        if wal:
            (Path(directory) / "rpmdb.sqlite-wal").write_bytes(wal)
        db = sqlite3.connect(path)
        try:
            rows = db.execute("SELECT blob FROM Packages")
            return [row[0] for row in rows if isinstance(row[0], bytes)]  # not bytes(<int>)
        finally:
            db.close()


def _first(tags: dict[int, list[str] | list[int]], tag: int) -> str | int | None:
    values = tags.get(tag)
    return values[0] if values else None


def read_database(side: Side, changed: Collection[str]) -> Database | None:
    """The rpm database of ``side``; None when it has none, or it cannot be read (noted)."""
    path = next((p for p in DATABASES if side.has(p)), None)
    data = side.read(path) if path else None
    if path is None or data is None:
        return None
    wal = side.read(path + "-wal") if side.has(path + "-wal") else None
    try:
        blobs = read_blobs(data, wal)
    except sqlite3.Error as exc:
        side.notes.append(f"the {side.name}'s {path} is not an rpm sqlite database: {exc}")
        return None
    return database_of(side, path, blobs)


def database_of(side: Side, path: str, blobs: Iterable[bytes]) -> Database:
    """The packages of the header ``blobs`` read from ``side``'s database at ``path``."""
    db = Database("rpm")
    for blob in blobs:
        try:
            tags = header_tags(blob)
        except RpmHeaderError as exc:
            side.notes.append(f"the {side.name}'s {path}: a header not readable: {exc}")
            continue
        name = _first(tags, _NAME)
        if not isinstance(name, str):
            continue
        epoch, arch = _first(tags, _EPOCH), _first(tags, _ARCH)
        release = f"{_first(tags, _VERSION) or ''}-{_first(tags, _RELEASE) or ''}"
        key = f"{name}.{arch}"
        db.packages[key] = PackageRef(
            "rpm",
            name,
            f"{epoch}:{release}" if epoch else release,
            str(arch) if arch else None,
            purl(
                "rpm",
                name,
                release,
                namespace=side.namespace,
                qualifiers={"arch": str(arch) if arch else None, "epoch": str(epoch or "")},
            ),
        )
        _own_files(db, side, key, tags)
    return db


def _ints(tags: dict[int, list[str] | list[int]], tag: int) -> list[int]:
    """An int32 tag's values; empty when the header stores that tag as another type."""
    values = tags.get(tag, [])
    return [v for v in values if isinstance(v, int)] if len(values) else []


def _strings(tags: dict[int, list[str] | list[int]], tag: int) -> list[str]:
    """A string tag's values; empty when the header stores that tag as another type."""
    values = tags.get(tag, [])
    return [v for v in values if isinstance(v, str)] if len(values) else []


def _own_files(db: Database, side: Side, key: str, tags: dict[int, list[str] | list[int]]) -> None:
    names, directories = _strings(tags, _BASENAMES), _strings(tags, _DIRNAMES)
    indexes, digests = _ints(tags, _DIRINDEXES), _strings(tags, _DIGESTS)
    flags = _ints(tags, _FLAGS)
    algorithm = _ALGORITHMS.get(next(iter(_ints(tags, _ALGO)), 1))
    for position, name in enumerate(names):
        if position >= len(indexes) or not 0 <= indexes[position] < len(directories):
            continue
        path = f"{directories[indexes[position]]}{name}"
        digest = digests[position] if position < len(digests) else ""
        recorded = (algorithm, digest) if digest and algorithm else None
        conffile = position < len(flags) and bool(flags[position] & _CONFIG)
        own_listed(db, side, path, Owned(key, recorded, conffile=conffile))
