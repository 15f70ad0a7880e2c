"""Fuzz targets for the Python parsers of attacker-controlled data (run by ``run.py``).

Each target takes the fuzzer's bytes and calls the real entry point the pipeline calls:
a package reader on a :class:`~drifttools.analysis.classifiers.packages.database.Side`
made of the input's files, a ``/proc`` text parser, the OCI resolver, a checkpoint
archive, a bundle's verification and reading. Each names the exceptions that are its
documented refusal of bad input (the caller turns them into one clear line, or a note);
any other exception is a finding.

Inputs of several files hold them one after the other, separated by :data:`SEPARATOR`.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drifttools.acquisition.mounts import parse_mountinfo
from drifttools.acquisition.processes import _status_ids
from drifttools.acquisition.procfs import parse_stat
from drifttools.acquisition.runtimes.checkpoint import CheckpointRuntime
from drifttools.acquisition.sockets import namespace_sockets
from drifttools.analysis.classifiers.packages import apk, dpkg, npm, python, rpm
from drifttools.analysis.classifiers.packages.database import Side
from drifttools.baseline.oci import resolve_image
from drifttools.errors import DriftError
from drifttools.evidence.bundle import open_bundle, verify_bundle
from drifttools.evidence.bundle.layout import ACTIONS, MANIFEST
from drifttools.evidence.bundle.seal import seal
from drifttools.models import Descriptor, FileFacts

SEPARATOR = b"\n=====\n"


@dataclass(frozen=True)
class Target:
    """One fuzz target: what it calls, and the exceptions that are its refusal of bad input."""

    run: Callable[[bytes], object]
    refusals: tuple[type[BaseException], ...] = (DriftError,)


def parts(data: bytes, count: int) -> list[bytes]:
    """``data`` as ``count`` files (the last ones empty when it holds fewer)."""
    found = data.split(SEPARATOR, count - 1)
    return found + [b""] * (count - len(found))


def side(files: dict[str, bytes]) -> Side:
    """The container side of a package reader, holding ``files`` (regular files)."""

    def facts(path: str) -> FileFacts | None:
        data = files.get(path)
        return None if data is None else FileFacts("file", 0o644, 0, 0, len(data), 0)

    return Side("container", files, facts, files.get)


def _packages(reader: Callable[[Side, list[str]], object], names: list[str]) -> Target:
    def run(data: bytes) -> object:
        files = dict(zip(names, parts(data, len(names)), strict=True))
        changed = [*files, "/usr/lib/python3/site-packages/p/x.py", "/app/node_modules/p/x.js"]
        return reader(side(files), changed)

    return Target(run)


def _rpm(data: bytes) -> object:
    """The input as an rpm sqlite database file when it starts like one (read through
    sqlite), else as one header blob of it (the per-package parse, fast)."""
    files = {rpm.DATABASES[0]: data}
    if data.startswith(b"SQLite format 3\0"):
        return rpm.read_database(side(files), [])
    return rpm.database_of(side(files), rpm.DATABASES[0], [data])


def _proc(data: bytes) -> object:
    stat, status, mountinfo, tcp, unix = parts(data, 5)
    with contextlib.suppress(ValueError, IndexError):  # the callers skip the process
        parse_stat(stat)
    with contextlib.suppress(ValueError):
        _status_ids(status)
    parse_mountinfo(mountinfo.decode("utf-8", "surrogateescape"))
    tables = {"net/tcp": tcp, "net/tcp6": tcp, "net/udp": tcp, "net/unix": unix}
    return namespace_sockets(tables.get)


def _oci(data: bytes) -> object:
    """An image index or manifest and the config it names, resolved for linux/amd64."""
    top, manifest, config = parts(data, 3)
    blobs = {f"sha256:{n:064x}": blob for n, blob in enumerate((top, manifest, config))}
    descriptor = Descriptor.of({"mediaType": "", "digest": f"sha256:{0:064x}", "size": len(top)})

    def read_blob(digest: str) -> bytes:
        return blobs.get(digest, config)

    return resolve_image(descriptor, read_blob, "linux/amd64", "fuzz")


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _checkpoint(data: bytes) -> object:
    """A checkpoint archive of the input's config.dump, spec.dump, deleted.files, CRIU
    pstree.img and rootfs-diff.tar; its container and snapshot read."""
    config, spec, deleted, pstree, diff = parts(data, 5)
    names = ("config.dump", "spec.dump", "deleted.files", "checkpoint/pstree.img")
    members = dict(zip(names, (config, spec, deleted, pstree), strict=True))
    with tempfile.TemporaryDirectory(prefix="fuzz-checkpoint-") as directory:
        path = Path(directory) / "checkpoint.tar"
        path.write_bytes(_tar({**members, "rootfs-diff.tar": diff}))
        runtime = CheckpointRuntime(path)
        return runtime.resolve(), runtime.snapshot()


def _bundle_verify(data: bytes) -> object:
    """The input as a bundle tar, verified."""
    with tempfile.TemporaryDirectory(prefix="fuzz-bundle-") as directory:
        path = Path(directory) / "bundle.tar"
        path.write_bytes(data)
        return verify_bundle(path)


#: The members of a bundle the reader parses, in the order the input holds them.
_BUNDLE_MEMBERS = (
    "report.json",
    "acquisition/record.json",
    "evidence.json",
    "image.json",
    "container/inspect.json",
    "facts.json",
    ACTIONS,
)


def _bundle_read(data: bytes) -> object:
    """A directory bundle of the input's members, sealed (so it verifies, as an attacker
    who can rewrite an unsigned bundle makes it), opened and read back."""
    with tempfile.TemporaryDirectory(prefix="fuzz-bundle-") as directory:
        root = Path(directory) / "bundle"
        for name, content in zip(_BUNDLE_MEMBERS, parts(data, len(_BUNDLE_MEMBERS)), strict=True):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
        seal(root, None)
        manifest = json.loads((root / MANIFEST).read_bytes())
        with open_bundle(root) as opened:
            return manifest, opened.report, opened.actions, opened.blobs


TARGETS: dict[str, Target] = {
    "dpkg": _packages(
        dpkg.read_database,
        [
            dpkg.STATUS,
            dpkg.INFO + "p.md5sums",
            dpkg.INFO + "p.list",
            dpkg.INFO + "p:amd64.md5sums",
            dpkg.DIVERSIONS,
        ],
    ),
    "apk": _packages(apk.read_database, [apk.INSTALLED]),
    "rpm": Target(_rpm),
    "python": _packages(
        python.read_database,
        [
            "/usr/lib/python3/site-packages/p-1.dist-info/METADATA",
            "/usr/lib/python3/site-packages/p-1.dist-info/RECORD",
        ],
    ),
    "npm": _packages(npm.read_database, ["/app/node_modules/p/package.json"]),
    "proc": Target(_proc),
    "oci": Target(_oci),
    "checkpoint": Target(_checkpoint),
    "bundle-verify": Target(_bundle_verify),
    "bundle-read": Target(_bundle_read),
}
