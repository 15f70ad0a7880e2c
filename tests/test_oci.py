"""The one OCI resolver (index -> platform's manifest -> config), on documents made here."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from drifttools.baseline.oci import resolve_image
from drifttools.errors import ImageError
from drifttools.models import Descriptor

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class Store:
    """Blobs by digest, as a content store or a layout's ``blobs/`` holds them."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, document: Any, media_type: str = MANIFEST) -> Descriptor:
        data = document if isinstance(document, bytes) else json.dumps(document).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return Descriptor(digest, media_type, len(data))

    def read(self, digest: str) -> bytes:
        return self.blobs[digest]


def image(store: Store, layers: int, architecture: str) -> dict[str, Any]:
    """An index entry for a manifest of ``layers`` layers."""
    blobs = [store.put(f"{architecture} layer {n}".encode(), LAYER) for n in range(layers)]
    config = store.put(
        {
            "architecture": architecture,
            "rootfs": {"type": "layers", "diff_ids": [b.digest for b in blobs]},
        },
        "application/vnd.oci.image.config.v1+json",
    )
    manifest = store.put(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"digest": config.digest, "mediaType": config.media_type},
            "layers": [{"digest": b.digest, "mediaType": LAYER, "size": b.size} for b in blobs],
        }
    )
    return {
        "digest": manifest.digest,
        "mediaType": MANIFEST,
        "platform": {"os": "linux", "architecture": architecture},
    }


def test_an_index_resolves_to_the_wanted_platform() -> None:
    store = Store()
    entries = [image(store, 1, "amd64"), image(store, 2, "arm64")]
    index = store.put({"schemaVersion": 2, "manifests": entries}, INDEX)
    manifest, config = resolve_image(index, store.read, "linux/arm64", "here")
    assert manifest.target == index and manifest.digest == entries[1]["digest"]
    assert manifest.platform == "linux/arm64" and not manifest.problems
    assert [layer.size for layer in manifest.layers] == [len(b"arm64 layer 0")] * 2
    assert config.data["architecture"] == "arm64" and config.diff_ids == [
        layer.digest for layer in manifest.layers
    ]
    with pytest.raises(ImageError, match=r"no manifest for platform linux/s390x \(has \["):
        resolve_image(index, store.read, "linux/s390x", "here")


def test_a_document_that_does_not_hash_to_its_digest_is_a_problem_not_an_error() -> None:
    store = Store()
    entry = image(store, 1, "amd64")
    document = json.loads(store.blobs[entry["digest"]])
    document["annotations"] = {"changed": "after signing"}
    store.blobs[entry["digest"]] = json.dumps(document).encode()
    manifest, _ = resolve_image(Descriptor.of(entry), store.read, "linux/amd64", "here")
    assert len(manifest.problems) == 1
    assert manifest.problems[0].endswith(f"its descriptor says {entry['digest']}")


def test_malformed_digests_and_layer_counts_are_refused() -> None:
    store = Store()
    entry = image(store, 1, "amd64")
    with pytest.raises(ImageError, match="malformed digest 'md5:abc'"):
        resolve_image(Descriptor("md5:abc", MANIFEST), store.read, "linux/amd64", "here")
    document = json.loads(store.blobs[entry["digest"]])
    document["layers"].append(dict(document["layers"][0]))
    with pytest.raises(ImageError, match="config lists 1 diff_ids for 2 layers"):
        resolve_image(store.put(document), store.read, "linux/amd64", "here")
