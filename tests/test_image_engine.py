"""Baselines from images the real Docker Engine built, checked against what the engine exports."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from drifttools import LayerCache, load_image
from drifttools.baseline.image import require_verified
from drifttools.errors import DigestMismatch
from tests.engine import docker, docker_bytes, export_paths, unique
from tests.tarbuild import (
    directory,
    file,
    hardlink,
    layer_tar,
    legacy_archive,
    oci_archive,
    oci_layout,
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


def baseline_view(index) -> dict[str, tuple]:
    view = {}
    for path, entry in index.entries.items():
        facts = entry.facts
        view[path] = (
            facts.kind,
            facts.mode,
            facts.sha256,
            facts.target if facts.kind == "symlink" else None,
        )
    return view


def exported_view(image: str) -> dict[str, tuple]:
    name = unique("drifttools-export")
    docker("create", "--name", name, image)
    try:
        exported = export_paths(docker_bytes("export", name))
    finally:
        docker("rm", "-f", name)
    return {p: v for p, v in exported.items() if p not in ENGINE_WRITTEN}


def layers_of(saved: Path) -> list[bytes]:
    with tarfile.open(saved) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        return [archive.extractfile(name).read() for name in manifest[0]["Layers"]]


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


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_oci_layout_and_docker25_archive_give_the_same_baseline(
    busybox_image, tmp_path: Path, compression: str
) -> None:
    layers = layers_of(busybox_image["save"])
    expected = baseline_view(load_image(busybox_image["save"]))
    layout = oci_layout(tmp_path / "layout", layers, compression)
    archive = oci_archive(tmp_path / "oci.tar", layers, compression)
    for source in (layout.path, archive.path):
        index = load_image(source)
        require_verified(index)
        assert [layer.digest for layer in index.layers] == layout.layer_digests
        assert baseline_view(index) == expected


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


def test_a_tampered_layer_is_recorded_as_unverified(busybox_image, tmp_path: Path) -> None:
    layers = layers_of(busybox_image["save"])
    good = legacy_archive(tmp_path / "good.tar", layers)
    tampered_layers = list(layers)
    buffer = io.BytesIO(layers[2])
    with tarfile.open(fileobj=buffer) as archive:
        members = [(m, archive.extractfile(m).read() if m.isfile() else None) for m in archive]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for member, data in members:
            if member.name == "opt/app/a":
                data = b"HELLO\n"
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    tampered_layers[2] = out.getvalue()
    # keep the config (and so the claimed diff_ids) of the good image
    bad = tmp_path / "bad.tar"
    with tarfile.open(good.path) as source, tarfile.open(bad, "w") as target:
        for member in source:
            data = source.extractfile(member).read()
            if member.name.endswith("layer.tar") and data == layers[2]:
                data = tampered_layers[2]
                member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    index = load_image(bad)
    assert not index.verified
    assert [layer.verified for layer in index.layers] == [True, True, False, True]
    assert "diff_id" in index.layers[2].problems[0]
    with pytest.raises(DigestMismatch, match="failed verification"):
        require_verified(index)


def test_layers_are_cached_by_diff_id_and_a_corrupt_cache_is_rebuilt(
    busybox_image, cache_dir: Path
) -> None:
    cache = LayerCache(cache_dir)
    first = load_image(busybox_image["save"], cache=cache)
    assert {layer.source for layer in first.layers} == {"archive"}
    second = load_image(busybox_image["save"], cache=cache)
    assert {layer.source for layer in second.layers} == {"cache"}
    assert baseline_view(first) == baseline_view(second)
    cached = sorted((cache_dir / "layers" / "v1").iterdir())
    assert len(cached) == 4
    cached[0].write_bytes(cached[0].read_bytes()[:-7])  # truncated
    third = load_image(busybox_image["save"], cache=cache)
    assert sorted(layer.source for layer in third.layers) == ["archive", "cache", "cache", "cache"]
    assert baseline_view(third) == baseline_view(first)
