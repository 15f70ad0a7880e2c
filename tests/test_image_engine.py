"""Baselines from images the real Docker Engine built, checked against what the engine exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from drifttools import load_image
from drifttools.baseline.image import require_verified
from tests.baselines import baseline_view
from tests.engine import docker, docker_bytes, export_paths, unique
from tests.tarbuild import (
    directory,
    file,
    hardlink,
    layer_tar,
    legacy_archive,
    opaque,
    whiteout,
)

#: What the engine itself writes into every container (its init layer): not the image's.
ENGINE_WRITTEN = {
    "/.dockerenv",
    "/dev",
    "/dev/console",
    "/dev/pts",
    "/dev/shm",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mtab",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
}


def exported_view(image: str) -> dict[str, tuple]:
    name = unique("drifttools-export")
    docker("create", "--name", name, image)
    try:
        exported = export_paths(docker_bytes("export", name))
    finally:
        docker("rm", "-f", name)
    return {p: v for p, v in exported.items() if p not in ENGINE_WRITTEN}


@pytest.mark.both_drivers
def test_baseline_equals_docker_export_path_by_path_and_hash_by_hash(busybox_image) -> None:
    index = load_image(busybox_image["save"])
    require_verified(index)
    assert index.image.id == busybox_image["id"]
    assert index.image.ref == busybox_image["tag"]
    assert baseline_view(index) == exported_view(busybox_image["tag"])
    assert "/etc/gone" not in index.entries and "/opt/app/sub/b" not in index.entries
    assert index.entries["/replaced"].facts.kind == "file"
    assert index.entries["/opt/app/hard"].facts.sha256 == index.entries["/opt/app/a"].facts.sha256
    steps = [layer.created_by for layer in index.layers]
    assert len(steps) == 4 and "COPY" in steps[0] and "rm /etc/gone" in steps[3]
    assert index.entries["/opt/app/sub/c"].layer == 3
    assert index.entries["/bin/busybox"].layer == 0


@pytest.mark.both_drivers
def test_opaque_directories_and_whiteouts_apply_like_the_engine(engine, tmp_path: Path) -> None:
    """A stack the legacy builder does not make (an opaque dir), loaded into the engine: its
    export is the oracle. (The engine's layer applier refuses hardlinks into lower layers;
    test_merge covers those against a real extraction.)"""
    layers = [
        layer_tar(
            [
                directory("etc"),
                file("etc/keep", b"k"),
                directory("data"),
                file("data/old", b"o"),
                directory("data/deep"),
                file("data/deep/x", b"x"),
                file("gone", b"g"),
            ]
        ),
        layer_tar(
            [
                directory("data"),
                opaque("data"),
                file("data/new", b"n"),
                whiteout("gone"),
                hardlink("data/alias", "data/new"),
            ]
        ),
    ]
    tag = f"{unique('drifttools-opaque')}:1"
    saved = legacy_archive(tmp_path / "crafted.tar", layers, tag=tag)
    docker("load", "-i", str(saved.path))
    try:
        index = load_image(saved.path)
        require_verified(index)
        assert baseline_view(index) == exported_view(tag)
        assert set(index.entries) == {"/etc", "/etc/keep", "/data", "/data/new", "/data/alias"}
    finally:
        docker("rmi", "-f", tag, check=False)
