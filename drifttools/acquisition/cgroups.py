"""Which host processes belong to a container: their cgroups, read from ``/proc``."""

from __future__ import annotations

import os
from pathlib import Path

from drifttools.acquisition.procfs import read_file


def container_pids(container_id: str, *, proc: Path = Path("/proc")) -> list[int]:
    """Host pids of every process in the container, sorted.

    A process belongs to the container when a line of its ``/proc/<pid>/cgroup``
    names the full container id as a path component, bare (cgroup v1
    ``/docker/<id>``, cgroup v2 ``0::/docker/<id>``, kubepods
    ``.../pod<uid>/<id>``) or as a systemd scope (``docker-<id>.scope``,
    ``cri-containerd-<id>.scope``, ``crio-<id>.scope``); nested cgroups below it
    count too. The ``conmon`` scopes of podman and CRI-O are not the container.
    Pass the full id: a prefix matches nothing.
    """
    if not container_id or any(char in container_id for char in "/:\n\0"):
        raise ValueError(f"not a container id: {container_id!r}")
    wanted = container_id.encode()
    pids = []
    for name in os.listdir(proc):
        if not (name.isascii() and name.isdigit()):
            continue
        try:
            raw = read_file(os.fspath(proc / name / "cgroup"))
        except OSError:
            continue  # exited while /proc was listed
        if in_container_cgroup(raw, wanted):
            pids.append(int(name))
    return sorted(pids)


def in_container_cgroup(cgroup: bytes, container_id: bytes) -> bool:
    """Whether a ``/proc/<pid>/cgroup`` text places its process in the container
    (the rule of :func:`container_pids`)."""
    for line in cgroup.split(b"\n"):
        fields = line.split(b":", 2)
        if len(fields) != 3:
            continue
        for component in fields[2].split(b"/"):
            name = component.removesuffix(b".scope")
            if name == container_id:
                return True
            prefix = name.removesuffix(b"-" + container_id)
            if prefix != name and not prefix.endswith(b"conmon"):
                return True
    return False
