"""A container's posture (how exposed the host is to it), from each kind of engine record.

Docker's inspect JSON (``HostConfig``, live or from a dead host's ``hostconfig.json``)
and an OCI runtime spec (containerd's container record, a checkpoint's ``spec.dump``)
say the same things in two vocabularies; both become one
:class:`~drifttools.models.Posture`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drifttools.models import Posture, PostureSource

#: Host paths whose presence inside a container hands it the host.
SENSITIVE_SOURCES = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/",
    "/etc",
    "/proc",
    "/sys",
    "/root",
    "/var/lib/docker",
)


def docker_posture(raw: Mapping[str, Any]) -> Posture:
    """The posture in a Docker container's inspect JSON."""
    host = raw.get("HostConfig") or {}
    config = raw.get("Config") or {}
    security = host.get("SecurityOpt") or []
    mounts = raw.get("Mounts") or []
    sources = [m.get("Source", "") for m in mounts]
    return Posture(
        source=PostureSource.DOCKER,
        privileged=bool(host.get("Privileged")),
        cap_add=tuple(host.get("CapAdd") or []),
        cap_drop=tuple(host.get("CapDrop") or []),
        user=config.get("User") or "root (image default)",
        read_only_rootfs=bool(host.get("ReadonlyRootfs")),
        host_pid=host.get("PidMode") == "host",
        host_network=host.get("NetworkMode") == "host",
        host_ipc=host.get("IpcMode") == "host",
        host_uts=host.get("UTSMode") == "host",
        userns_mode=host.get("UsernsMode") or None,
        seccomp=next((s.split("=", 1)[1] for s in security if s.startswith("seccomp")), "default"),
        apparmor=raw.get("AppArmorProfile") or None,
        no_new_privileges=any("no-new-privileges" in s for s in security),
        devices=tuple(d.get("PathOnHost") for d in host.get("Devices") or []),
        sensitive_mounts=tuple(sorted({s for s in sources if s in SENSITIVE_SOURCES})),
        host_paths=tuple(sorted({m.get("Source", "") for m in mounts if m.get("Type") == "bind"})),
    )


def spec_posture(spec: Mapping[str, Any]) -> Posture:
    """The posture in an OCI runtime spec."""
    process = spec.get("process") or {}
    linux = spec.get("linux") or {}
    caps = set((process.get("capabilities") or {}).get("effective") or [])
    namespaces = {n.get("type"): n.get("path") for n in linux.get("namespaces") or []}
    mounts = spec.get("mounts") or []
    sources = [str(m.get("source", "")) for m in mounts]
    binds = [
        str(m.get("source", ""))
        for m in mounts
        if m.get("type") == "bind" or "rbind" in (m.get("options") or [])
    ]
    user = process.get("user") or {}
    return Posture(
        source=PostureSource.OCI_SPEC,
        privileged="CAP_SYS_ADMIN" in caps and not linux.get("maskedPaths"),
        capabilities=tuple(sorted(caps)),
        user=f"{user.get('uid', 0)}:{user.get('gid', 0)}",
        read_only_rootfs=bool((spec.get("root") or {}).get("readonly")),
        host_pid="pid" not in namespaces,
        host_network="network" not in namespaces,
        host_ipc="ipc" not in namespaces,
        host_uts="uts" not in namespaces,
        user_namespace="user" in namespaces,
        seccomp="profile" if linux.get("seccomp") else "unconfined",
        apparmor=process.get("apparmorProfile") or None,
        no_new_privileges=bool(process.get("noNewPrivileges")),
        devices=tuple(d.get("path") for d in linux.get("devices") or []),
        sensitive_mounts=tuple(sorted({s for s in sources if s in SENSITIVE_SOURCES})),
        host_paths=tuple(sorted(set(binds))),
    )
