"""containerd's content store: blob files, and an image's layers as the baseline reads them.

Each layer is its blob, verified when read; when the blobs were garbage-collected
after unpacking (``discard_unpacked_layers``) the snapshot's lower dirs stand in,
recorded as unverified layers that say why.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from drifttools.baseline.sources import BlobLayer, LayerSource, UnpackedLayer
from drifttools.errors import ImageNotFound
from drifttools.models import ImageManifest

#: Opens a layer blob (a host path or a stream), or None when the store does not hold it.
BlobOpener = Callable[[str], Callable[[], str | BinaryIO] | None]


def blob_path(content_root: Path | None, digest: str) -> Path | None:
    """The content store file of ``digest``, when it is a readable regular file here."""
    algorithm, _, hexdigest = digest.partition(":")
    if content_root is None or algorithm != "sha256" or len(hexdigest) != 64:
        return None
    if not all(c in "0123456789abcdef" for c in hexdigest):
        return None
    path = content_root / "blobs" / "sha256" / hexdigest
    try:
        info = path.lstat()
    except OSError:
        return None
    return path if stat.S_ISREG(info.st_mode) and os.access(path, os.R_OK) else None


def layer_sources(
    name: str | None,
    manifest: ImageManifest,
    diff_ids: Sequence[str],
    blob: BlobOpener,
    lower_dirs: Sequence[str],
    location: str,
) -> list[LayerSource]:
    """Each layer as its blob (verified when read), or the snapshot's lower dir (top first
    in ``lower_dirs``) when the blob is gone (garbage-collected after unpacking)."""
    openers = [blob(layer.digest) for layer in manifest.layers]
    if all(opener is not None for opener in openers):
        problems = tuple(f"image manifest chain: {p}" for p in manifest.problems)
        return [
            BlobLayer(
                diff_id=diff_id,
                digest=layer.digest,
                media_type=layer.media_type,
                size=layer.size,
                open=opener,
                location=location,
                problems=problems,
            )
            for diff_id, layer, opener in zip(diff_ids, manifest.layers, openers, strict=True)
            if opener is not None
        ]
    lowers = list(reversed(lower_dirs))
    if len(lowers) != len(diff_ids):
        missing = sum(opener is None for opener in openers)
        raise ImageNotFound(
            f"{location}: {missing} layer blob(s) of {name} are not in the content store"
            f" and the snapshot has {len(lowers)} lower dirs for {len(diff_ids)} layers"
        )
    reason = (
        "layer blob not in the content store (garbage-collected after unpacking:"
        " discard_unpacked_layers?); read from the snapshot's lower dir, not verifiable"
    )
    return [
        UnpackedLayer(diff_id, Path(lower), reason)
        for diff_id, lower in zip(diff_ids, lowers, strict=True)
    ]
