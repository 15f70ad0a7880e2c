"""The verified baseline of a running container's image, by the fastest honest path.

In order: layers already in the cache (verified earlier on this machine); the
engine's own layer store, where each layer's exact tar stream is rebuilt from
its tar-split record and the layer's files and hashed against its diff_id (a
lower layer tampered on the host fails here); and, when the store cannot be
read (remote engine, other driver), ``docker save`` streamed through the layer
reader, never written to disk.
"""

from __future__ import annotations

from drifttools.cache import LayerCache
from drifttools.image import (
    ImageConfig,
    assemble,
    cached_layer,
    host_platform_name,
    index_image,
    verified_layer,
)
from drifttools.images.layer_store import read_stored_layer
from drifttools.images.stream import StreamedBlobs
from drifttools.models import ContainerInfo, ImageIndex
from drifttools.progress import Progress, no_progress
from drifttools.runtime import Runtime

_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def container_baseline(
    info: ContainerInfo,
    runtime: Runtime,
    *,
    cache: LayerCache | None = None,
    progress: Progress = no_progress,
) -> ImageIndex:
    """The image of ``info`` as a verified, merged baseline."""
    raw_config = runtime.image_config(info.image_id)
    if raw_config is not None:
        config = ImageConfig.parse(raw_config, info.image_id, runtime.endpoint)
        hits = [
            cached_layer(cache, diff_id, _LAYER_TYPE, 0, step)
            for diff_id, step in zip(config.diff_ids, config.steps, strict=True)
        ]
        stored = runtime.stored_layers(info) if None in hits else []
        if stored is not None:
            loaded = []
            total = len(hits)
            for position, hit in enumerate(hits):
                progress(f"layer {position + 1}/{total}", position, total)
                if hit is None:
                    layer = stored[position]
                    index = read_stored_layer(layer)
                    record = verified_layer(
                        index,
                        diff_id=layer.diff_id,
                        digest=None,
                        media_type=_LAYER_TYPE,
                        size=None,
                        step=config.steps[position],
                        source="engine-store",
                    )
                    if cache is not None and record.verified:
                        cache.put(layer.diff_id, index)
                    hit = (record, index)
                loaded.append(hit)
            progress("merge", total, total)
            return assemble(info.image_ref, config, host_platform_name(), loaded)
    progress("docker save (stream)", 0, None)
    blobs = StreamedBlobs(
        runtime.save_stream(info.image_id), f"{runtime.name} image {info.image_id}"
    )
    return index_image(blobs, cache=cache, progress=progress)
