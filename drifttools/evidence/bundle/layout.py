"""The bundle format (``drifttools.bundle/v1``, see ``docs/bundle.md``): member names and
the one byte form of everything the bundle itself writes.

A bundle is a deterministic tar (sorted members, fixed times, owners and modes, PAX, no
compression) or the same members as a directory. ``manifest.json`` holds the SHA-256 of
every other member; ``manifest.json.sig`` (optional) is a detached Ed25519 signature of the
manifest's exact bytes. Everything that depends on *when* and *by whom* the evidence was
taken lives under ``acquisition/``; every other member depends only on the evidence, so two
bundles of an unchanged container differ only there.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

FORMAT = "drifttools.bundle/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
ACQUISITION = "acquisition/record.json"
ACTIONS = "acquisition/actions.jsonl"
REPORT = "report.json"
FACTS = "facts.json"
EVIDENCE = "evidence.json"
IMAGE = "image.json"
INSPECT = "container/inspect.json"
MOUNTINFO = "container/mountinfo"
PROCESSES = "container/processes.json"
SOCKETS = "container/sockets.json"
BLOBS = "blobs/sha256/"

CHUNK = 1 << 20


def canonical_json(data: Any) -> bytes:
    """Canonical JSON of the bundle's own members: sorted keys, two-space indent, newline."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def sha256_file(path: Path) -> str:
    """The SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_manifest(manifest: Mapping[str, Any]) -> bytes:
    """The one byte form a manifest may have (verification rejects any other)."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


def files_under(root: Path) -> Iterator[str]:
    """Every file below ``root``, as a path relative to it."""
    for directory, _, names in os.walk(root):
        for name in names:
            yield os.path.relpath(os.path.join(directory, name), root)


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def tar_header(name: str, size: int) -> bytes:
    """The canonical header of a member: verification rejects any other."""
    return _tar_info(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def write_tar(root: Path, handle: BinaryIO) -> None:
    """The members under ``root`` as a deterministic tar: sorted names, fixed metadata, PAX."""
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files_under(root)):
            path = root / name
            with open(path, "rb") as member:
                archive.addfile(_tar_info(name, os.fstat(member.fileno()).st_size), member)
