"""Process heuristics, and reading a live process's executable for classification.

A process whose executable (or every library the image lacks) a package added at runtime
installed with the bytes it recorded is lowered to medium: a debugging tool installed in a
running container is drift the image should carry, not an intruder's binary by itself.

The executable is read through ``/proc/<pid>/exe`` (so deleted and memfd binaries are
read too), only while the very process of the record lives: its start time is read
before and after, and the bytes must hash to the ``exe_sha256`` of the record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
from collections.abc import Mapping
from typing import Any, Protocol

from drifttools.acquisition.guard import opened_exe
from drifttools.analysis.classifiers.locations import WRITABLE_DIRS, under
from drifttools.models import (
    DELETED_SUFFIX,
    MEMFD_PREFIX,
    Finding,
    PackageRef,
    ProcessRecord,
    Severity,
)

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox", "tcsh"})
INTERPRETERS = frozenset(
    {
        "python",
        "python2",
        "python3",
        "perl",
        "ruby",
        "php",
        "node",
        "lua",
        "bash",
        "sh",
        "dash",
        "ash",
        "busybox",
    }
)
_TAG_FINDINGS = {
    "memfd": ("process.memfd", Severity.CRITICAL, "T1620", "runs from an anonymous memory file"),
    "exe-deleted": (
        "process.exe-deleted",
        Severity.HIGH,
        "T1070.004",
        "its executable was deleted after it started",
    ),
    "exe-not-in-image": (
        "process.exe-not-in-image",
        Severity.HIGH,
        "T1105",
        "runs an executable the image does not have",
    ),
    "exe-modified": (
        "process.exe-modified",
        Severity.HIGH,
        "T1554",
        "runs an image executable whose bytes changed",
    ),
    "library-memfd": ("process.library-memfd", Severity.CRITICAL, "T1620", "maps a memfd library"),
    "library-deleted": (
        "process.library-deleted",
        Severity.HIGH,
        "T1574.006",
        "maps a deleted library",
    ),
    "library-not-in-image": (
        "process.library-not-in-image",
        Severity.HIGH,
        "T1574.006",
        "maps a library the image does not have",
    ),
}


def _base(name: str) -> str:
    name = posixpath.basename(name)
    for prefix in ("python", "perl", "ruby", "php", "node", "lua"):
        if name.startswith(prefix) and name[len(prefix) :].replace(".", "").isdigit():
            return prefix
    return name


def exposed_ports(config: Mapping[str, Any]) -> set[tuple[str, int]]:
    """``(protocol, port)`` the image declares (``ExposedPorts``: ``"8080/tcp"``)."""
    inner = config.get("config") or config.get("Config") or {}
    declared = set()
    for key in inner.get("ExposedPorts") or {}:
        port, _, protocol = str(key).partition("/")
        if port.isdigit():
            declared.add((protocol or "tcp", int(port)))
    return declared


class PackageFiles(Protocol):
    """What process classification asks of package provenance
    (:class:`~drifttools.analysis.classifiers.packages.PackageDrift`)."""

    def runtime_package(self, path: str, sha256: str | None = None) -> PackageRef | None:
        """The package added at runtime that put ``path`` there with the bytes it recorded."""
        ...

    def in_image(self, path: str) -> bool:
        """Whether the image has ``path``."""
        ...


def runtime_packages(process: ProcessRecord, files: PackageFiles) -> dict[str, PackageRef]:
    """The image-drift tags of ``process`` that packages added or upgraded at runtime account
    for, and the package that does: its executable is one of their files with their bytes
    (``exe-not-in-image``, ``exe-modified``), or an image binary such a package replaced while
    it ran (``exe-deleted``); every library the image lacks is one of their files
    (``library-not-in-image``); every deleted library is an image library such a package
    replaced while it was mapped (``library-deleted``: dpkg renames the new file over it)."""
    tags = set(process.tags)
    found: dict[str, PackageRef] = {}
    replaced = {"exe-not-in-image", "exe-modified"} & tags
    if process.exe and process.exe_state == "present" and replaced:
        package = files.runtime_package(process.exe, process.exe_sha256)
        if package is not None:
            found.update(dict.fromkeys(replaced, package))
    elif process.exe and "exe-deleted" in tags and not replaced:
        package = files.runtime_package(process.exe)
        if package is not None:
            found["exe-deleted"] = package
    libraries = [lib for lib in process.libraries if not lib.startswith(MEMFD_PREFIX)]
    lacking = [lib for lib in libraries if not files.in_image(lib.removesuffix(DELETED_SUFFIX))]
    deleted = [
        lib.removesuffix(DELETED_SUFFIX) for lib in libraries if lib.endswith(DELETED_SUFFIX)
    ]
    if "library-not-in-image" in tags and not any(lib.endswith(DELETED_SUFFIX) for lib in lacking):
        _account("library-not-in-image", lacking, files, found)
    if "library-deleted" in tags and all(files.in_image(path) for path in deleted):
        _account("library-deleted", deleted, files, found)
    return found


def _account(tag: str, paths: list[str], files: PackageFiles, found: dict[str, PackageRef]) -> None:
    """``tag`` is accounted for when runtime packages put every one of ``paths`` there."""
    packages = [files.runtime_package(path) for path in paths]
    if packages and all(packages) and packages[0] is not None:
        found[tag] = packages[0]


def process_findings(
    process: ProcessRecord,
    declared: set[tuple[str, int]],
    files: PackageFiles | None = None,
) -> tuple[list[Finding], list[str]]:
    """Findings for one process and the tags they add; with ``files``, those a package
    added at runtime accounts for lowered to medium (:func:`runtime_packages`)."""
    found = []
    tags = []
    lowered = runtime_packages(process, files) if files is not None else {}
    for tag in process.tags:
        if tag in _TAG_FINDINGS:
            rule, severity, attack, detail = _TAG_FINDINGS[tag]
            finding = Finding(rule, severity, (attack,), (tag,), detail)
            if tag in lowered:
                package = lowered[tag]
                finding = dataclasses.replace(
                    finding,
                    severity=Severity.MEDIUM,
                    tags=(tag, "runtime-package"),
                    detail=f"{detail}: a file of {package.manager} package {package.name} "
                    f"{package.version}, installed at runtime with the bytes it recorded",
                )
            found.append(finding)
    if lowered:
        tags.append("runtime-package")
    names = {_base(process.comm)}
    if process.exe:
        names.add(_base(process.exe))
    if process.cmdline:
        names.add(_base(process.cmdline[0]))
    socket_fds = {f.fd for f in process.fds if f.kind == "socket"}
    if names & SHELLS and ({0, 1} & socket_fds):
        tags.append("reverse-shell")
        found.append(
            Finding(
                "process.reverse-shell",
                Severity.CRITICAL,
                ("T1059.004",),
                ("reverse-shell",),
                f"shell with a socket on fd {sorted({0, 1} & socket_fds)}",
            )
        )
    if names & INTERPRETERS:
        scripts = [a for a in process.cmdline[1:] if a.startswith("/") and under(a, WRITABLE_DIRS)]
        if scripts:
            tags.append("script-from-writable-dir")
            found.append(
                Finding(
                    "process.writable-script",
                    Severity.HIGH,
                    ("T1059",),
                    ("script-from-writable-dir",),
                    f"interpreter running {scripts[0]}",
                )
            )
    for sock in process.sockets:
        if sock.state != "LISTEN" or not sock.protocol.startswith(("tcp", "udp")):
            continue
        port = int(sock.local.rsplit(":", 1)[-1])
        if (sock.protocol[:3], port) not in declared:
            tags.append("undeclared-listener")
            found.append(
                Finding(
                    "process.undeclared-listener",
                    Severity.MEDIUM,
                    ("T1571",),
                    ("undeclared-listener",),
                    f"listens on {sock.protocol} {sock.local}, not in the image's ExposedPorts",
                )
            )
    return found, tags


def read_exe(
    process: ProcessRecord, limit: int, proc: str = "/proc"
) -> tuple[bytes | None, str | None]:
    """Up to ``limit`` bytes of the process's executable, or None and why not.

        Read only while the record's process lives
    (:func:`drifttools.acquisition.guard.opened_exe`) and,
    when the whole file was read, only if it hashes to ``exe_sha256``.
    """
    try:
        with opened_exe(process, proc=proc) as fd:
            chunks, size = [], 0
            while size < limit and (chunk := os.read(fd, min(1 << 20, limit - size))):
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
            whole = os.fstat(fd).st_size == len(data)
    except OSError as exc:
        return None, f"executable not classified: {exc.strerror or exc}"
    if whole and process.exe_sha256 and hashlib.sha256(data).hexdigest() != process.exe_sha256:
        return None, "executable changed since the snapshot (sha256 differs)"
    return data, None
