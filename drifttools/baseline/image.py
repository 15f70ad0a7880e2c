"""Read an image into its baseline: verified layers, applied in order, traced to their step.

Formats: a ``docker save`` tar (the legacy ``manifest.json`` layout and the OCI
layout Docker 25+ writes; ``index.json`` is read first) and an OCI image layout
directory. Every digest is checked: the manifest against its descriptor, the
config against the manifest (both by :mod:`drifttools.baseline.oci`), each layer
blob against the manifest and its uncompressed stream against the config's
``rootfs.diff_ids``. A mismatch is recorded on the layer (``verified: false`` with
the problem), not raised: the caller decides whether an unverified baseline is
acceptable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from drifttools import _native
from drifttools.baseline.cache import LayerCache
from drifttools.baseline.images.archive import ArchiveBlobs
from drifttools.baseline.images.oci_layout import DirectoryBlobs
from drifttools.baseline.index import (
    BaselineStore,
    IndexedEntries,
    database_candidates,
    present,
    scratch_index,
)
from drifttools.baseline.oci import (
    INDEX_TYPES,
    ImageConfig,
    blob_name,
    host_platform_name,
    parse_json,
    resolve_image,
)
from drifttools.baseline.verification import BY_CACHE, CACHE, from_cache, remember
from drifttools.errors import DigestMismatch, ImageError, ImageNotFound, LayerCorrupt
from drifttools.models import Descriptor, ErrorRecord, ImageIndex, ImageRef, Layer
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress

_REF_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


class BlobSource(Protocol):
    """Where the image's files are: named members of an archive or files of a layout."""

    location: str
    source_kind: str  # how the Layer records say its layers were read: archive | stream

    def exists(self, name: str) -> bool: ...
    def read_bytes(self, name: str, limit: int = ...) -> bytes: ...
    def read_layer(self, name: str) -> _native.LayerIndex: ...
    def size(self, name: str) -> int: ...
    def blob_sha256(self, name: str) -> str:
        """SHA-256 (hex) of the blob's bytes as they are now (to re-check a cached layer)."""
        ...


class ImageFormat(Protocol):
    """A blob source made from a path: an archive file, a layout directory ..."""

    def accepts(self, path: Path) -> bool:
        """Whether this format reads the image at ``path``."""
        ...

    def __call__(self, path: Path) -> BlobSource:
        """Open the image at ``path``."""
        ...


@dataclass(frozen=True)
class _Manifest:
    name: str | None  # the image's tag, when the archive names it
    config: ImageConfig
    layers: list[_LayerBlob]
    problems: Sequence[str]


@dataclass(frozen=True)
class _LayerBlob:
    name: str  # where the blob is in the source
    digest: str | None  # what the manifest says it hashes to (None: legacy, the name is a path)
    media_type: str
    size: int | None


#: The forms an image given by path can take, each a module of :mod:`drifttools.baseline.images`
#: whose class says which paths it ``accepts``; the first that does reads it.
IMAGE_FORMATS: tuple[ImageFormat, ...] = (DirectoryBlobs, ArchiveBlobs)


def open_blobs(path: Path) -> BlobSource:
    """The blob source for an image at ``path`` (see :data:`IMAGE_FORMATS`)."""
    for image_format in IMAGE_FORMATS:
        if image_format.accepts(path):
            return image_format(path)
    raise ImageNotFound(f"image not found: {path}")


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
    machine is not indexed again: its blob is only hashed, to check that it is
    the bytes the cache verified (see :mod:`drifttools.baseline.verification`).
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
    config = found.config
    loaded = []
    total = len(found.layers)
    for position, (blob, diff_id) in enumerate(zip(found.layers, config.diff_ids, strict=True)):
        progress(ProgressEvent(Stage.BASELINE, position, total, f"layer {position + 1}/{total}"))
        loaded.append(_load_layer(blobs, blob, diff_id, config.steps[position], cache))
    progress(ProgressEvent(Stage.MERGE, total, total))
    return assemble(found.name, config, wanted_platform, loaded, found.problems)


def assemble(
    name: str | None,
    config: ImageConfig,
    platform: str,
    loaded: list[tuple[Layer, _native.LayerIndex]],
    problems: Sequence[str] = (),
    *,
    store: LayerCache | None = None,
) -> ImageIndex:
    """Merge verified layers (bottom first) into the image's baseline, an index looked up
    path by path: with ``store``, and when the cache holds every layer (each verified on this
    machine), the image's index there (:mod:`drifttools.baseline.index`), kept for the next
    run; else one for this run only."""
    indexes = [index for _, index in loaded]
    trees = [index.entries for index in indexes]
    merged = _native.MergedLayers(trees)
    databases = database_candidates(trees)
    kept = None
    if store is not None and all(
        (layer.verified or layer.source == BY_CACHE) and store.has(layer.diff_id)
        for layer, _ in loaded
    ):
        stored = BaselineStore(store)
        kept = (
            stored.write(config.diff_ids, indexes, merged, databases),
            partial(stored.rebuild, config.diff_ids),
        )
    image = ImageRef(ref=name, id=config.digest, platform=platform, config=config.data)
    layers = tuple(layer for layer, _ in loaded)
    problems = (*problems, *config.problems)
    return merged_image(image, layers, merged, problems, databases=databases, kept=kept)


def merged_image(
    image: ImageRef,
    layers: tuple[Layer, ...],
    merged: _native.MergedLayers,
    problems: Sequence[str],
    *,
    databases: Sequence[str],
    kept: tuple[_native.BaselineIndex, Callable[[], _native.BaselineIndex]] | None = None,
) -> ImageIndex:
    """The baseline of ``image`` from the merge of its ``layers``: its entries looked up in
    the index ``kept`` (with the rebuild of it), else in one written for this run only;
    ``databases`` are the layers' :func:`database_candidates`."""
    index, rebuild = kept or (scratch_index(merged), partial(scratch_index, merged))
    entries = IndexedEntries(index, rebuild)
    return ImageIndex(
        image=image,
        layers=layers,
        entries=entries,
        database_paths=present(databases, entries),
        links={path: frozenset(group) for group in merged.links() for path in group},
        errors=tuple(ErrorRecord(path, reason) for path, reason in merged.errors()),
        problems=tuple(problems),
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


def require_verified(index: ImageIndex) -> None:
    """Raise :class:`DigestMismatch` naming the first digest that did not match."""
    problems = [*index.problems, *(p for layer in index.layers for p in layer.problems)]
    if problems:
        raise DigestMismatch(f"image {index.image.id} failed verification: {problems[0]}")


def _load_layer(
    blobs: BlobSource, blob: _LayerBlob, diff_id: str, step: str | None, cache: LayerCache | None
) -> tuple[Layer, _native.LayerIndex]:
    cached = cache.get(diff_id) if cache is not None else None
    if cached is not None and blobs.blob_sha256(blob.name) == cached.compressed_sha256:
        index, source = cached, CACHE  # this input's blob is the bytes the cache verified
    else:
        try:
            index, source = blobs.read_layer(blob.name), blobs.source_kind
        except LayerCorrupt as exc:
            raise LayerCorrupt(f"{blobs.location}: layer {diff_id}: {exc}") from exc
    layer = verified_layer(
        index,
        diff_id=diff_id,
        digest=blob.digest,
        media_type=blob.media_type,
        size=blob.size,
        step=step,
        source=source,
    )
    if cache is not None and source == CACHE:
        layer = from_cache(layer, cache, rechecked=True)
    elif cache is not None and layer.verified:
        remember(cache, diff_id, index)
    return layer, index


def _read_oci(blobs: BlobSource, ref: str | None, wanted_platform: str) -> _Manifest:
    index = parse_json(blobs.read_bytes("index.json"), "index.json", blobs.location)
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
    name = next(iter(_refs(descriptors[0])), ref)
    manifest, config = resolve_image(
        Descriptor.of(descriptors[0]),
        lambda digest: blobs.read_bytes(blob_name(digest, blobs.location)),
        wanted_platform,
        blobs.location,
    )
    layer_blobs = [
        _LayerBlob(
            blob_name(layer.digest, blobs.location), layer.digest, layer.media_type, layer.size
        )
        for layer in manifest.layers
    ]
    return _Manifest(name, config, layer_blobs, manifest.problems)


def _read_legacy(blobs: BlobSource, ref: str | None) -> _Manifest:
    manifest = parse_json(blobs.read_bytes("manifest.json"), "manifest.json", blobs.location)
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
    config = ImageConfig.parse(blobs.read_bytes(config_name), config_digest, blobs.location)
    config.check_layer_count(len(layer_blobs), blobs.location)
    return _Manifest(name, config, layer_blobs, [])


def _refs(descriptor: Mapping[str, Any]) -> list[str]:
    annotations = descriptor.get("annotations") or {}
    return [annotations[key] for key in _REF_ANNOTATIONS if key in annotations]
