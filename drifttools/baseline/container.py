"""The verified baseline of a container's image, by the fastest honest path.

In order: layers already in the cache (verified earlier on this machine, and re-checked
against what the runtime gives now: see :mod:`drifttools.baseline.verification`); the
engine's own store, whatever form the runtime gives
(:data:`~drifttools.baseline.sources.LayerSource`):

* Docker's layer store, where each layer's exact tar stream is rebuilt from its
  tar-split record and the layer's files and hashed against its diff_id (a lower
  layer tampered on the host fails here);
* a content store blob (containerd, a dead host's content store), read and checked
  against the manifest digest and its uncompressed stream against the diff_id;
* a snapshot's unpacked lower dir, when the blobs were garbage-collected: walked,
  overlay whiteouts applied, recorded as an unverified layer that says why;

and, when the store cannot be read at all (remote engine, other driver), the
engine's image export (``docker save``) streamed through the layer reader, never
written to disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from drifttools import _native
from drifttools.acquisition.runtime import Runtime
from drifttools.baseline.cache import LayerCache
from drifttools.baseline.image import assemble, index_image, merged_image, verified_layer
from drifttools.baseline.images.layer_store import StoredLayer, read_stored_layer
from drifttools.baseline.images.stream import StreamedBlobs
from drifttools.baseline.index import BaselineStore, database_candidates
from drifttools.baseline.oci import ImageConfig, host_platform_name
from drifttools.baseline.sources import BlobLayer, LayerSource, UnpackedLayer
from drifttools.baseline.verification import (
    CACHE,
    blob_sha256,
    directory_fingerprint,
    directory_unchanged,
    from_cache,
    remember,
)
from drifttools.errors import ImageNotFound, LayerCorrupt
from drifttools.models import (
    ContainerInfo,
    ImageIndex,
    ImageRef,
    Layer,
)
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress

_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def container_baseline(
    info: ContainerInfo,
    runtime: Runtime,
    *,
    cache: LayerCache | None = None,
    trust_host_layers: bool = False,
    trust_cache: bool = False,
    progress: Progress = no_progress,
) -> ImageIndex:
    """The image of ``info`` as a verified, merged baseline.

    With ``trust_host_layers``, when any layer is missing from the cache, every
    layer is read from the engine's unpacked layer directories (a parallel walk,
    faster than rebuilding their tar streams) and recorded as unverified: a layer
    tampered on the host goes unnoticed that way. A fully cached image still uses
    its cache, each layer re-checked against the engine's store (``verified-by-cache``,
    not verified, when the store cannot be read here). With ``trust_cache`` a cached layer
    is not re-checked (no stat walk of the engine's copy: the one cost of a warm run that
    grows with the image): it is ``verified-by-cache``, with the date it was verified.
    """
    raw_config = runtime.image_config(info)
    if raw_config is not None:
        config = ImageConfig.parse(raw_config, info.image_id, runtime.endpoint)
        stored = runtime.stored_layers(info)
        if cache is not None:
            recheck = None if trust_cache else stored
            indexed = _indexed(info.image_ref, config, recheck, cache)
            if indexed is not None:
                progress(ProgressEvent(Stage.MERGE, 1, 1, "image index"))
                return indexed
        cached = [cache.get(diff_id) if cache is not None else None for diff_id in config.diff_ids]
        if None in cached and stored and trust_host_layers:
            stored = [_unpacked(layer) for layer in stored]
        if None in cached and stored and any(isinstance(s, UnpackedLayer) for s in stored):
            progress(ProgressEvent(Stage.BASELINE, 0, len(stored), "snapshot lower dirs"))
            return unpacked_baseline(info.image_ref, config, stored)
        if stored is not None or None not in cached:
            loaded = []
            total = len(cached)
            for position, index in enumerate(cached):
                progress(
                    ProgressEvent(Stage.BASELINE, position, total, f"layer {position + 1}/{total}")
                )
                source = stored[position] if stored else None
                step = config.steps[position]
                diff_id = config.diff_ids[position]
                loaded.append(_layer(source, index, diff_id, step, cache, trust_cache))
            progress(ProgressEvent(Stage.MERGE, total, total))
            return assemble(info.image_ref, config, host_platform_name(), loaded, store=cache)
    progress(ProgressEvent(Stage.BASELINE, detail=f"{runtime.name} image export (stream)"))
    blobs = StreamedBlobs(
        runtime.save_stream(info.image_id), f"{runtime.name} image {info.image_id}"
    )
    return index_image(blobs, cache=cache, progress=progress)


def _unpacked(source: LayerSource) -> LayerSource:
    if isinstance(source, StoredLayer):
        reason = "--trust-host-layers: read from the engine's layer directory, not verified"
        return UnpackedLayer(source.diff_id, source.directory, reason)
    return source


def _indexed(
    name: str | None,
    config: ImageConfig,
    stored: Sequence[LayerSource] | None,
    cache: LayerCache,
) -> ImageIndex | None:
    """The image from its stored index (:mod:`drifttools.baseline.index`) when there is one
    and every layer re-checks as a cached layer would; else None (read and merge)."""
    if not all(cache.has(diff_id) for diff_id in config.diff_ids):
        return None
    found = BaselineStore(cache).open(config.diff_ids)
    if found is None:
        return None
    layers = []
    for position, recorded in enumerate(found.layers):
        source = stored[position] if stored else None
        layer = _cached_record(
            source, recorded.compressed_sha256, recorded.diff_id, config.steps[position], cache
        )
        if layer is None:
            return None
        layers.append(layer)
    image = ImageRef(ref=name, id=config.digest, platform=host_platform_name(), config=config.data)
    return ImageIndex(
        image=image,
        layers=tuple(layers),
        entries=found.entries,
        links=found.links,
        errors=found.errors,
        problems=tuple(config.problems),
        database_paths=found.database_paths,
    )


def _layer(
    source: LayerSource | None,
    index: _native.LayerIndex | None,
    diff_id: str,
    step: str | None,
    cache: LayerCache | None,
    trust_cache: bool,
) -> tuple[Layer, _native.LayerIndex]:
    """One layer: the cached ``index`` when this input re-checks equal to it (or, when
    the runtime gives nothing to re-check or ``trust_cache`` says not to, marked
    verified-by-cache), else read from ``source`` and verified."""
    if index is not None and cache is not None:
        recheck = None if trust_cache else source
        record = _cached_record(recheck, index.compressed_sha256, diff_id, step, cache)
        if record is not None:
            return record, index
    assert source is not None, "a layer neither cached nor in the store"
    return _read_source(source, step, cache)


def _cached_record(
    source: LayerSource | None,
    compressed_sha256: str,
    diff_id: str,
    step: str | None,
    cache: LayerCache,
) -> Layer | None:
    """The record of a cached layer (verified from a blob hashing to ``compressed_sha256``)
    when ``source`` re-checks equal to it, or, when the runtime gives nothing to re-check,
    marked verified-by-cache; None when it must be read again."""
    record = Layer(diff_id, None, _LAYER_TYPE, 0, step, True, CACHE)
    if source is not None and _rechecked(source, compressed_sha256, cache):
        return from_cache(record, cache, rechecked=True)
    if source is None or isinstance(source, UnpackedLayer):
        return from_cache(record, cache, rechecked=False)
    return None


def _rechecked(source: LayerSource, compressed_sha256: str, cache: LayerCache) -> bool:
    """Whether ``source`` is what the cached layer was verified from."""
    if isinstance(source, StoredLayer):
        return directory_unchanged(cache, source.diff_id, source.directory)
    if isinstance(source, BlobLayer):
        try:
            blob = source.open()
            try:
                return blob_sha256(blob) == compressed_sha256
            finally:
                if not isinstance(blob, str):
                    blob.close()
        except OSError:
            return False
    return False


def _read_source(
    source: LayerSource, step: str | None, cache: LayerCache | None
) -> tuple[Layer, _native.LayerIndex]:
    fingerprinted = None
    if isinstance(source, StoredLayer):
        # without a fingerprint recorded, the next run reads and verifies it again
        with contextlib.suppress(OSError):
            fingerprinted = (source.directory, directory_fingerprint(source.directory))
        index = read_stored_layer(source)
        record = verified_layer(
            index,
            diff_id=source.diff_id,
            digest=None,
            media_type=_LAYER_TYPE,
            size=None,
            step=step,
            source="engine-store",
        )
    elif isinstance(source, BlobLayer):
        try:
            index = _native.read_layer(source.open())
        except FileNotFoundError as exc:
            raise ImageNotFound(f"{source.location}: layer blob {source.digest} gone") from exc
        except LayerCorrupt as exc:
            raise LayerCorrupt(f"{source.location}: layer {source.diff_id}: {exc}") from exc
        record = verified_layer(
            index,
            diff_id=source.diff_id,
            digest=source.digest,
            media_type=source.media_type,
            size=source.size,
            step=step,
            source=source.source,
        )
        if source.problems:
            problems = (*record.problems, *source.problems)
            record = Layer(
                record.diff_id,
                record.digest,
                record.media_type,
                record.size,
                record.created_by,
                False,
                record.source,
                problems,
            )
    else:
        raise TypeError(f"not a readable layer source: {source!r}")
    if cache is not None and record.verified:
        remember(cache, source.diff_id, index, fingerprinted)
    return record, index


def unpacked_baseline(
    name: str | None, config: ImageConfig, sources: Sequence[LayerSource]
) -> ImageIndex:
    """The image from unpacked layer directories (overlay lower dirs), bottom first.

    Overlay semantics apply: a char 0/0 device is a whiteout, a directory marked
    opaque hides what is below it. Nothing can be checked against the diff_ids
    (the tar streams are gone), so every layer is unverified and says why.
    """
    trees = []
    layers = []
    for position, source in enumerate(sources):
        if not isinstance(source, UnpackedLayer):
            raise TypeError("a baseline from lower dirs needs every layer unpacked")
        trees.append(_native.walk(str(source.directory), hash_max_size=None))
        layers.append(
            Layer(
                diff_id=source.diff_id,
                digest=None,
                media_type="application/vnd.containerd.snapshot.unpacked",
                size=0,
                created_by=config.steps[position],
                verified=False,
                source="snapshot-lowerdir",
                problems=(f"{source.reason}: {source.directory}",),
            )
        )
    image = ImageRef(ref=name, id=config.digest, platform=host_platform_name(), config=config.data)
    merged = _native.MergedLayers(trees, overlay=True)
    databases = database_candidates(trees)
    return merged_image(image, tuple(layers), merged, config.problems, databases=databases)
