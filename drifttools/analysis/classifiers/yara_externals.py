"""External variables a YARA rule may read about the file it scans (docs/rules.md).

The names are the ones the scanners public rule sets are written for define (LOKI and
THOR for signature-base): ``filename``, ``filepath``, ``extension``, ``filetype``,
``md5``, ``owner``, all strings. drifttools sets them per scanned file with the path *in
the container* (never the host's), so a rule on ``filepath contains "/tmp/"`` means the
container's /tmp. ``--yara-define NAME=VALUE`` (like ``yara -d``) adds or overrides one.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Collection, Mapping

from drifttools.analysis.classifiers.yara_engines import External
from drifttools.errors import RulesError

#: Every external defined for every rule set, with the value a rule compiles against.
STANDARD: Mapping[str, External] = {
    "filename": "",
    "filepath": "",
    "extension": "",
    "filetype": "",
    "md5": "",
    "owner": "",
}

#: ``filetype``: the first bytes of a file and the name LOKI's file-type signatures give
#: them (the longest prefix wins; ``UNKNOWN`` otherwise).
FILE_TYPES: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "ELF"),
    (b"MZ", "EXE"),
    (b"#!/", "UNIX SCRIPT"),
    (b"<?php", "PHP"),
    (b"<%", "JSP"),
    (b"<?xml", "XML"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"PK\x05\x06", "PKZIP"),
    (b"\x1f\x8b\x08", "GZIP"),
    (b"BZh", "BZip2"),
    (b"7z\xbc\xaf\x27\x1c", "7Zip"),
    (b"Rar!\x1a\x07", "RAR"),
    (b"\xca\xfe\xba\xbe", "Class"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"),
    (b"{\\rtf1", "RTF"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"MDMP", "MDMP"),
    (b"MSCF", "CAB"),
)


def file_type(data: bytes) -> str:
    """The ``filetype`` of bytes starting with ``data``."""
    best = ("UNKNOWN", 0)
    for magic, name in FILE_TYPES:
        if len(magic) > best[1] and data.startswith(magic):
            best = (name, len(magic))
    return best[0]


def file_externals(
    path: str,
    data: bytes,
    *,
    uid: int | None,
    owners: Mapping[int, str],
    complete: bool,
    wanted: Collection[str] = STANDARD.keys(),
) -> dict[str, External]:
    """The ``wanted`` externals of the file at container path ``path`` whose bytes (or
    first bytes, when not ``complete``: ``md5`` is then empty) are ``data``."""
    name = posixpath.basename(path)
    found: dict[str, External] = {}
    if "filename" in wanted:
        found["filename"] = name
    if "filepath" in wanted:
        found["filepath"] = path
    if "extension" in wanted:
        found["extension"] = posixpath.splitext(name)[1].lower()
    if "filetype" in wanted:
        found["filetype"] = file_type(data[:16])
    if "md5" in wanted:
        found["md5"] = hashlib.md5(data, usedforsecurity=False).hexdigest() if complete else ""
    if "owner" in wanted:
        found["owner"] = "" if uid is None else owners.get(uid, str(uid))
    return found


def owner_names(passwd: bytes | None) -> dict[int, str]:
    """uid -> user name from an ``/etc/passwd`` (the container's); empty when absent."""
    names: dict[int, str] = {}
    for line in (passwd or b"").decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            names.setdefault(int(fields[2]), fields[0])
    return names


def parse_define(text: str) -> tuple[str, External]:
    """``NAME=VALUE`` as ``yara -d`` reads it: true/false a boolean, an integer, a float,
    else a string. Raises :class:`RulesError` for a bad definition."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise RulesError(f"bad YARA definition {text!r}: expected NAME=VALUE")
    if value in ("true", "false"):
        return name, value == "true"
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value
