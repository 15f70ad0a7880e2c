"""Parse /proc/<pid>/mountinfo and say which mounts hold container data worth reading."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from drifttools.models import MountPoint

PSEUDO_TYPES = frozenset(
    {
        "proc",
        "sysfs",
        "devpts",
        "mqueue",
        "cgroup",
        "cgroup2",
        "securityfs",
        "debugfs",
        "tracefs",
        "bpf",
        "pstore",
        "hugetlbfs",
        "configfs",
        "fusectl",
        "binfmt_misc",
        "nsfs",
    }
)
#: Files the engine bind-mounts into every container (their content is the engine's).
ENGINE_FILES = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"})
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str, engine_mounts: Sequence[MountPoint] = ()) -> list[MountPoint]:
    """Every mount of a mountinfo file, classified (see :func:`classify`)."""
    kinds = {m.mountpoint: m.kind for m in engine_mounts}
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        if separator < 6 or len(fields) < separator + 3:
            continue  # not a mountinfo line: six fields, optional ones, "-", three more
        root, mountpoint, options = (_unescape(f) for f in fields[3:6])
        fstype, source = fields[separator + 1], _unescape(fields[separator + 2])
        kind = classify(mountpoint, fstype, kinds.get(mountpoint))
        mounts.append(MountPoint(mountpoint, fstype, source, root, options, kind))
    return mounts


def classify(mountpoint: str, fstype: str, engine_kind: str | None = None) -> str:
    """rootfs, pseudo (kernel or runtime plumbing), engine (its own files), tmpfs, volume, bind."""
    if mountpoint == "/":
        return "rootfs"
    if fstype in PSEUDO_TYPES or mountpoint in ("/dev", "/sys/fs/cgroup"):
        return "pseudo"
    if mountpoint.startswith(("/proc/", "/sys/")) or mountpoint in ("/proc", "/sys"):
        return "pseudo"
    if mountpoint in ENGINE_FILES:
        return "engine"
    if fstype == "tmpfs":
        return "tmpfs"
    return engine_kind if engine_kind in ("volume", "bind") else "bind"


def data_mounts(mounts: Iterable[MountPoint]) -> list[MountPoint]:
    """The mounts whose content the container controls: tmpfs, volumes, binds."""
    return [m for m in mounts if m.kind in ("tmpfs", "volume", "bind")]
