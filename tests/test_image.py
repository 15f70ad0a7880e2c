"""Baselines of image archives and layouts built here, without the engine.

Every format gives the same baseline, a tampered layer is recorded, layers are cached by
diff_id. Images the engine built are checked against its exports in test_image_engine.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from drifttools import LayerCache, load_image
from drifttools.baseline.image import require_verified
from drifttools.errors import DigestMismatch, LayerCorrupt
from tests.baselines import baseline_view
from tests.tarbuild import busybox_like_layers, legacy_archive, oci_archive, oci_layout


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_oci_layout_and_docker25_archive_give_the_same_baseline(
    tmp_path: Path, compression: str
) -> None:
    layers = busybox_like_layers()
    expected = baseline_view(load_image(legacy_archive(tmp_path / "legacy.tar", layers).path))
    layout = oci_layout(tmp_path / "layout", layers, compression)
    archive = oci_archive(tmp_path / "oci.tar", layers, compression)
    for source in (layout.path, archive.path):
        index = load_image(source)
        require_verified(index)
        assert [layer.digest for layer in index.layers] == layout.layer_digests
        assert baseline_view(index) == expected


def _tampered(tmp_path: Path) -> tuple[Path, Path]:
    """A good legacy archive and a copy whose third layer was edited, config kept."""
    layers = busybox_like_layers()
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
    return good.path, bad


def test_a_tampered_layer_is_recorded_as_unverified(tmp_path: Path) -> None:
    index = load_image(_tampered(tmp_path)[1])
    assert not index.verified
    assert [layer.verified for layer in index.layers] == [True, True, False, True]
    assert "diff_id" in index.layers[2].problems[0]
    with pytest.raises(DigestMismatch, match="failed verification"):
        require_verified(index)


def test_layers_are_cached_by_diff_id_and_a_corrupt_cache_is_rebuilt(
    tmp_path: Path, cache_dir: Path
) -> None:
    image = legacy_archive(tmp_path / "image.tar", busybox_like_layers()).path
    cache = LayerCache(cache_dir)
    first = load_image(image, cache=cache)
    assert {layer.source for layer in first.layers} == {"archive"}
    second = load_image(image, cache=cache)
    assert {layer.source for layer in second.layers} == {"cache"}
    assert baseline_view(first) == baseline_view(second)
    cached = sorted((cache_dir / "layers" / "v1").iterdir())
    assert len(cached) == 4
    cached[0].write_bytes(cached[0].read_bytes()[:-7])  # truncated
    third = load_image(image, cache=cache)
    assert sorted(layer.source for layer in third.layers) == ["archive", "cache", "cache", "cache"]
    assert baseline_view(third) == baseline_view(first)


def test_a_warm_cache_verifies_this_archive_not_the_one_cached(
    tmp_path: Path, cache_dir: Path
) -> None:
    good, bad = _tampered(tmp_path)
    cache = LayerCache(cache_dir)
    assert load_image(good, cache=cache).verified
    again = load_image(good, cache=cache)  # the blobs hashed again, equal: verified
    assert again.verified and {layer.source for layer in again.layers} == {"cache"}
    assert all(layer.verified_at for layer in again.layers)
    tampered = load_image(bad, cache=cache)
    assert [layer.verified for layer in tampered.layers] == [True, True, False, True]
    assert tampered.layers[2].source == "archive" and "diff_id" in tampered.layers[2].problems[0]
    assert tampered.layers[0].source == "cache"

    layout = oci_layout(tmp_path / "layout", busybox_like_layers(), "gzip")
    assert load_image(layout.path, cache=cache).verified  # other blobs, same diff_ids
    blob = layout.path / "blobs" / "sha256" / layout.layer_digests[1].removeprefix("sha256:")
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the gzip trailer's size
    with pytest.raises(LayerCorrupt):  # read again, not taken from the cache
        load_image(layout.path, cache=cache)
