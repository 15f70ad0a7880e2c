"""apk (Alpine): ``/lib/apk/db/installed``, one block a package.

``P`` name, ``V`` version, ``A`` architecture; then ``F`` a directory and ``R`` each file
in it, with ``Z`` its checksum: ``Q1`` and the base64 of its SHA-1.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection

from drifttools.analysis.classifiers.packages.database import Database, Owned, Side, own_listed
from drifttools.analysis.classifiers.packages.purl import purl
from drifttools.models import PackageRef

INSTALLED = "/lib/apk/db/installed"


def q1_digest(checksum: str) -> tuple[str, str] | None:
    """An apk ``Z:`` checksum as (hashlib name, hex digest); None unless ``Q1`` SHA-1."""
    if not checksum.startswith("Q1"):
        return None
    try:
        return "sha1", base64.b64decode(checksum[2:], validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def read_database(side: Side, changed: Collection[str]) -> Database | None:
    """The apk database of ``side``; None when it has none or it is unreadable."""
    text = side.text(INSTALLED)
    if text is None:
        return None
    db = Database("apk")
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        directory = last = None
        owned: list[tuple[str, str | None]] = []
        for line in block.splitlines():
            key, _, value = line.partition(":")
            if key in ("P", "V", "A"):
                fields[key] = value
            elif key == "F":
                directory = value
            elif key == "R":
                last = f"/{directory}/{value}" if directory else f"/{value}"
                owned.append((last, None))
            elif key == "Z" and last and owned:
                owned[-1] = (last, value)
        name = fields.get("P")
        if not name:
            continue
        version, arch = fields.get("V", ""), fields.get("A")
        namespace = side.namespace or "alpine"
        db.packages[name] = PackageRef(
            "apk",
            name,
            version,
            arch,
            purl("apk", name, version, namespace=namespace, qualifiers={"arch": arch}),
        )
        for path, checksum in owned:
            own_listed(db, side, path, Owned(name, q1_digest(checksum or "")))
    return db
