"""The runtime registry and the one posture shape (no engine needed)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from drifttools.acquisition.runtime import (
    ENGINES,
    RUNTIMES,
    SCHEMES,
    Opening,
    checkpoint_path,
    runtime_for,
    split_reference,
)
from drifttools.acquisition.runtimes.posture import docker_posture, spec_posture
from drifttools.errors import ContainerNotFound


def test_every_registered_runtime_is_where_the_registry_says() -> None:
    for name, kind in RUNTIMES.items():
        runtime_class = getattr(importlib.import_module(kind.module), kind.class_name)
        assert runtime_class.name == name
    assert ENGINES == ("docker", "containerd")
    assert SCHEMES == ("containerd", "k8s", "docker-root", "containerd-root", "disk", "checkpoint")
    assert {kind.opening for kind in RUNTIMES.values()} == set(Opening)


def test_references_split_on_known_schemes_only() -> None:
    assert split_reference("k8s://prod/web") == ("k8s", "prod/web")
    assert split_reference("docker://web-1") == (None, "docker://web-1")
    assert split_reference("web-1") == (None, "web-1")
    assert checkpoint_path("checkpoint:///cases/c%201.tar") == Path("/cases/c 1.tar")
    assert checkpoint_path("docker-root:///mnt#web") is None
    with pytest.raises(ValueError, match=r"unknown runtime 'podman' \(known: docker, containerd\)"):
        runtime_for(None, runtime="podman")
    with pytest.raises(ContainerNotFound, match="three slashes"):
        runtime_for("docker-root://disk/var/lib/docker#web")


def test_each_record_keeps_its_report_vocabulary_in_one_shape() -> None:
    docker = docker_posture(
        {
            "HostConfig": {
                "CapAdd": ["CAP_NET_ADMIN"],
                "CapDrop": ["CAP_MKNOD"],
                "UsernsMode": "host",
                "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"],
                "PidMode": "host",
            },
            "Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock"}],
        }
    )
    assert docker.to_dict() == {
        "privileged": False,
        "cap_add": ["CAP_NET_ADMIN"],
        "cap_drop": ["CAP_MKNOD"],
        "user": "root (image default)",
        "read_only_rootfs": False,
        "host_pid": True,
        "host_network": False,
        "host_ipc": False,
        "host_uts": False,
        "userns": "host",
        "seccomp": "unconfined",
        "apparmor": None,
        "no_new_privileges": True,
        "devices": [],
        "sensitive_mounts": ["/var/run/docker.sock"],
        "host_paths": ["/var/run/docker.sock"],
    }
    oci = spec_posture(
        {
            "process": {
                "user": {"uid": 1000, "gid": 1000},
                "capabilities": {"effective": ["CAP_SYS_ADMIN", "CAP_CHOWN"]},
            },
            "linux": {"namespaces": [{"type": "pid"}, {"type": "user"}, {"type": "network"}]},
            "root": {"readonly": True},
        }
    )
    assert oci.privileged and oci.capabilities == ("CAP_CHOWN", "CAP_SYS_ADMIN")
    assert oci.to_dict() == {
        "privileged": True,
        "capabilities": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
        "user": "1000:1000",
        "read_only_rootfs": True,
        "host_pid": False,
        "host_network": False,
        "host_ipc": True,
        "host_uts": True,
        "userns": True,
        "seccomp": "unconfined",
        "apparmor": None,
        "no_new_privileges": False,
        "devices": [],
        "sensitive_mounts": [],
        "host_paths": [],
    }
