"""npm packages: ``node_modules/<name>/package.json`` (``@scope/name`` for scoped ones).

npm keeps no digest of the files it unpacks, so a package owns the paths below its
directory (but not those of packages nested in its own ``node_modules``), unchecked.
Only the package directories that hold a changed path are read.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from drifttools.analysis.classifiers.packages.database import Database, Owned, Side
from drifttools.analysis.classifiers.packages.purl import purl
from drifttools.models import PackageRef

_MODULES = "/node_modules/"


def package_dir(path: str) -> str | None:
    """The directory of the innermost npm package ``path`` is in, if any."""
    index = path.rfind(_MODULES)
    if index < 0:
        return None
    start = index + len(_MODULES)
    parts = path[start:].split("/")
    depth = 2 if parts[0].startswith("@") else 1
    if len(parts) < depth or not all(parts[:depth]):
        return None
    return path[:start] + "/".join(parts[:depth])


def name_and_version(raw: bytes) -> tuple[str, str] | None:
    """``name`` and ``version`` of a package.json."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        return data["name"], str(data.get("version", ""))
    return None


def read_database(side: Side, changed: Collection[str]) -> Database | None:
    """The npm packages that hold a changed path, on ``side``."""
    db = Database("npm")
    owners: dict[str, list[str]] = {}
    for path in changed:
        directory = package_dir(path)
        if directory is not None:
            owners.setdefault(directory, []).append(path)
    for directory, paths in sorted(owners.items()):
        manifest = directory + "/package.json"
        raw = side.read(manifest) if side.has(manifest) else None
        found = name_and_version(raw) if raw else None
        if found is None:
            continue
        name, version = found
        db.packages[directory] = PackageRef("npm", name, version, None, purl("npm", name, version))
        db.location[directory] = directory.rsplit(_MODULES, 1)[0] + _MODULES.rstrip("/")
        db.metadata[manifest] = directory
        for path in paths:
            if path != manifest:
                db.own(path, Owned(directory, None))
    return db if db.packages else None
