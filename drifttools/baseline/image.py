"""Read an image into its baseline: verified layers, applied in order, traced to their step.

Formats: a ``docker save`` tar (the legacy ``manifest.json`` layout and the OCI
layout Docker 25+ writes; ``index.json`` is read first) and an OCI image layout
directory. Every digest is checked: the manifest against its descriptor, the
config against the manifest, each layer blob against the manifest and its
uncompressed stream against the config's ``rootfs.diff_ids``. A mismatch is
recorded on the layer (``verified: false`` with the problem), not raised: the
caller decides whether an unverified baseline is acceptable.
"""

from __future__ import annotations

import hashlib
import json
import platform as host_platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from drifttools import _native
from drifttools.baseline.cache import LayerCache
from drifttools.baseline.images.archive import ArchiveBlobs
from drifttools.baseline.images.oci_layout import DirectoryBlobs
from drifttools.baseline.merge import merge_layers
from drifttools.errors import DigestMismatch, ImageError, ImageNotFound, LayerCorrupt
from drifttools.models import ImageIndex, ImageRef, Layer
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_REF_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


class BlobSource(Protocol):
    """Where the image's files are: named members of an archive or files of a layout."""

    location: str
    source_kind: str  # how the Layer records say its layers were read: archive | stream

    def exists(self, name: str) -> bool: ...
    def read_bytes(self, name: str, limit: int = ...) -> bytes: ...
    def read_layer(self, name: str) -> _native.LayerIndex: ...
    def size(self, name: str) -> int: ...


@dataclass(frozen=True)
class _Manifest:
    name: str | None  # the image's tag, when the archive names it
    config_bytes: bytes
    config_digest: str | None  # what the manifest says the config hashes to
    layers: list[_LayerBlob]
    problems: list[str]


@dataclass(frozen=True)
class _LayerBlob:
    name: str  # where the blob is in the source
    digest: str | None  # what the manifest says it hashes to (None: legacy, the name is a path)
    media_type: str
    size: int | None


def host_platform_name() -> str:
    """This machine's platform in OCI terms, e.g. ``linux/amd64``."""
    machine = host_platform.machine()
    return f"linux/{_ARCHES.get(machine, machine)}"


def open_blobs(path: Path) -> BlobSource:
    """The blob source for an archive file or a layout directory."""
    if path.is_dir():
        return DirectoryBlobs(path)
    if not path.exists():
        raise ImageNotFound(f"image not found: {path}")
    return ArchiveBlobs(path)


def load_image(
    path: str | Path,
    *,
    ref: str | None = None,
    platform: str | None = None,
    cache: LayerCache | None = None,
    progress: Progress = no_progress,
) -> ImageIndex:
    """Read, verify and merge the image at ``path`` into its baseline.

    ``ref`` picks one image from an archive that holds several; ``platform``
    (``linux/arm64``) one manifest from a multi-platform index, the host's by
    default. With a ``cache``, a layer already indexed and verified on this
    machine is not read again.
    """
    return index_image(
        open_blobs(Path(path)), ref=ref, platform=platform, cache=cache, progress=progress
    )


def index_image(
    blobs: BlobSource,
    *,
    ref: str | None = None,
    platform: str | None = None,
    cache: LayerCache | None = None,
    progress: Progress = no_progress,
) -> ImageIndex:
    """Verify and merge the image whose blobs ``blobs`` holds (see :func:`load_image`)."""
    wanted_platform = platform or host_platform_name()
    if blobs.exists("index.json"):
        found = _read_oci(blobs, ref, wanted_platform)
    elif blobs.exists("manifest.json"):
        found = _read_legacy(blobs, ref)
    else:
        raise ImageError(f"{blobs.location}: neither index.json nor manifest.json: not an image")
    config = ImageConfig.parse(found.config_bytes, found.config_digest, blobs.location)
    if len(config.diff_ids) != len(found.layers):
        raise ImageError(
            f"{blobs.location}: config lists {len(config.diff_ids)} diff_ids"
            f" for {len(found.layers)} layers"
        )
    loaded = []
    total = len(found.layers)
    for position, (blob, diff_id) in enumerate(zip(found.layers, config.diff_ids, strict=True)):
        progress(ProgressEvent(Stage.BASELINE, position, total, f"layer {position + 1}/{total}"))
        loaded.append(_load_layer(blobs, blob, diff_id, config.steps[position], cache))
    progress(ProgressEvent(Stage.MERGE, total, total))
    return assemble(found.name, config, wanted_platform, loaded, found.problems)


@dataclass(frozen=True)
class ImageConfig:
    """An image config blob, its digest checked, with what the baseline needs from it."""

    digest: str  # sha256:<hex> of the bytes: the image id
    data: dict[str, Any]
    diff_ids: list[str]
    steps: list[str | None]  # created_by of each layer, None when history does not say
    problems: list[str]

    @classmethod
    def parse(cls, raw: bytes, expected_digest: str | None, location: str) -> ImageConfig:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        problems = []
        if expected_digest is not None and expected_digest != digest:
            problems.append(f"config hashes to {digest}, its reference says {expected_digest}")
        data = _json(raw, "image config", location)
        diff_ids = list(data.get("rootfs", {}).get("diff_ids", []))
        history = [h for h in data.get("history", []) if not h.get("empty_layer")]
        steps = [h.get("created_by") for h in history]
        if len(steps) != len(diff_ids):
            steps = [None] * len(diff_ids)
        return cls(digest, data, diff_ids, steps, problems)


def assemble(
    name: str | None,
    config: ImageConfig,
    platform: str,
    loaded: list[tuple[Layer, _native.LayerIndex]],
    problems: Sequence[str] = (),
) -> ImageIndex:
    """Merge verified layers (bottom first) into the image's baseline."""
    merged = merge_layers([index.entries for _, index in loaded])
    image = ImageRef(ref=name, id=config.digest, platform=platform, config=config.data)
    return ImageIndex(
        image=image,
        layers=tuple(layer for layer, _ in loaded),
        entries=merged.entries,
        links=merged.links,
        errors=merged.errors,
        problems=(*problems, *config.problems),
    )


def verified_layer(
    index: _native.LayerIndex,
    *,
    diff_id: str,
    digest: str | None,
    media_type: str,
    size: int | None,
    step: str | None,
    source: str,
) -> Layer:
    """The layer record for ``index``, every digest it can be checked against compared."""
    problems = []
    if digest is not None and digest != f"sha256:{index.compressed_sha256}":
        problems.append(f"blob digest sha256:{index.compressed_sha256} != manifest {digest}")
    if size is not None and size != index.compressed_size:
        problems.append(f"blob size {index.compressed_size} != manifest {size}")
    if diff_id != f"sha256:{index.uncompressed_sha256}":
        problems.append(f"diff_id sha256:{index.uncompressed_sha256} != config {diff_id}")
    stored = index.compressed_size if size is None else size
    return Layer(diff_id, digest, media_type, stored, step, not problems, source, tuple(problems))


def cached_layer(
    cache: LayerCache | None, diff_id: str, media_type: str, size: int, step: str | None
) -> tuple[Layer, _native.LayerIndex] | None:
    """The layer from the cache, if a verified index of ``diff_id`` is there."""
    index = cache.get(diff_id) if cache is not None else None
    if index is None:
        return None
    return Layer(diff_id, None, media_type, size, step, True, "cache"), index


def require_verified(index: ImageIndex) -> None:
    """Raise :class:`DigestMismatch` naming the first digest that did not match."""
    problems = [*index.problems, *(p for layer in index.layers for p in layer.problems)]
    if problems:
        raise DigestMismatch(f"image {index.image.id} failed verification: {problems[0]}")


def _load_layer(
    blobs: BlobSource, blob: _LayerBlob, diff_id: str, step: str | None, cache: LayerCache | None
) -> tuple[Layer, _native.LayerIndex]:
    size = blob.size if blob.size is not None else blobs.size(blob.name)
    hit = cached_layer(cache, diff_id, blob.media_type, size, step)
    if hit is not None:
        return hit
    try:
        index = blobs.read_layer(blob.name)
    except LayerCorrupt as exc:
        raise LayerCorrupt(f"{blobs.location}: layer {diff_id}: {exc}") from exc
    layer = verified_layer(
        index,
        diff_id=diff_id,
        digest=blob.digest,
        media_type=blob.media_type,
        size=blob.size,
        step=step,
        source=blobs.source_kind,
    )
    if cache is not None and layer.verified:
        cache.put(diff_id, index)
    return layer, index


def _read_oci(blobs: BlobSource, ref: str | None, wanted_platform: str) -> _Manifest:
    index = _json(blobs.read_bytes("index.json"), "index.json", blobs.location)
    descriptors = list(index.get("manifests", []))
    if ref is not None:
        descriptors = [d for d in descriptors if ref in _refs(d)]
        if not descriptors:
            raise ImageNotFound(f"{blobs.location}: no image named {ref}")
    elif len(descriptors) > 1 and all(d.get("mediaType") not in INDEX_TYPES for d in descriptors):
        names = sorted({r for d in descriptors for r in _refs(d)})
        if len(names) > 1:
            raise ImageError(f"{blobs.location}: holds several images, choose one: {names}")
    if not descriptors:
        raise ImageError(f"{blobs.location}: index.json lists no manifest")
    descriptor = descriptors[0]
    name = next(iter(_refs(descriptor)), ref)
    problems: list[str] = []
    manifest = _checked_json(blobs, descriptor, problems)
    while manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        descriptor = _pick_platform(manifest.get("manifests", []), wanted_platform, blobs.location)
        manifest = _checked_json(blobs, descriptor, problems)
    config_descriptor = manifest.get("config") or {}
    config_bytes = blobs.read_bytes(_blob_name(config_descriptor, blobs.location))
    layer_blobs = [
        _LayerBlob(
            _blob_name(layer, blobs.location),
            layer["digest"],
            layer.get("mediaType", ""),
            layer.get("size"),
        )
        for layer in manifest.get("layers", [])
    ]
    return _Manifest(name, config_bytes, config_descriptor.get("digest"), layer_blobs, problems)


def _read_legacy(blobs: BlobSource, ref: str | None) -> _Manifest:
    manifest = _json(blobs.read_bytes("manifest.json"), "manifest.json", blobs.location)
    if not isinstance(manifest, list) or not manifest:
        raise ImageError(f"{blobs.location}: manifest.json lists no image")
    if ref is not None:
        manifest = [m for m in manifest if ref in (m.get("RepoTags") or [])]
        if not manifest:
            raise ImageNotFound(f"{blobs.location}: no image named {ref}")
    elif len(manifest) > 1:
        names = sorted(tag for m in manifest for tag in m.get("RepoTags") or [])
        raise ImageError(f"{blobs.location}: holds several images, choose one: {names}")
    entry = manifest[0]
    config_name = entry["Config"]
    stem = Path(config_name).name.removesuffix(".json")
    config_digest = f"sha256:{stem}" if len(stem) == 64 else None
    layer_blobs = [
        _LayerBlob(name, None, "application/vnd.docker.image.rootfs.diff.tar", None)
        for name in entry.get("Layers", [])
    ]
    tags = entry.get("RepoTags") or []
    name = ref or (tags[0] if tags else None)
    return _Manifest(name, blobs.read_bytes(config_name), config_digest, layer_blobs, [])


def _refs(descriptor: Mapping[str, Any]) -> list[str]:
    annotations = descriptor.get("annotations") or {}
    return [annotations[key] for key in _REF_ANNOTATIONS if key in annotations]


def _pick_platform(
    descriptors: list[Mapping[str, Any]], wanted: str, location: str
) -> Mapping[str, Any]:
    available = []
    for descriptor in descriptors:
        spec = descriptor.get("platform") or {}
        name = f"{spec.get('os')}/{spec.get('architecture')}"
        variant = f"{name}/{spec['variant']}" if spec.get("variant") else name
        if wanted in (name, variant):
            return descriptor
        available.append(variant)
    raise ImageError(f"{location}: no manifest for platform {wanted} (has {available})")


def _checked_json(
    blobs: BlobSource, descriptor: Mapping[str, Any], problems: list[str]
) -> dict[str, Any]:
    """Read the JSON blob ``descriptor`` names; a digest mismatch goes to ``problems``."""
    name = _blob_name(descriptor, blobs.location)
    data = blobs.read_bytes(name)
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != descriptor["digest"]:
        problems.append(f"{name} hashes to {actual}, its descriptor says {descriptor['digest']}")
    return _json(data, name, blobs.location)


def _blob_name(descriptor: Mapping[str, Any], location: str) -> str:
    digest = str(descriptor.get("digest", ""))
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ImageError(f"{location}: unsupported or malformed digest {digest!r}")
    return f"blobs/sha256/{hexdigest}"


def _json(data: bytes, what: str, location: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImageError(f"{location}: {what} is not valid JSON: {exc}") from exc
