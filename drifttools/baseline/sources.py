"""What a runtime hands the baseline for each layer of a container's image, bottom first.

Three forms, by what the engine's store still holds: Docker's layer store (a tar-split
record beside the unpacked layer: :class:`~drifttools.baseline.images.layer_store.StoredLayer`),
a content store blob (:class:`BlobLayer`), or only the unpacked layer, a snapshot's lower dir
(:class:`UnpackedLayer`). Each says where its files are unpacked on this host, if they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from drifttools.baseline.images.layer_store import StoredLayer


@dataclass(frozen=True)
class BlobLayer:
    """A layer blob as its image manifest names it, to be read and hashed now.

    ``open`` returns a host path or a byte stream of the blob (compressed as stored);
    the reader checks it against ``digest`` and ``size`` and its uncompressed stream
    against ``diff_id``. ``problems`` are known before reading (e.g. the manifest
    that names the blob did not hash to its own digest).
    """

    diff_id: str
    digest: str
    media_type: str
    size: int | None
    open: Callable[[], str | BinaryIO]
    location: str  # where it was read from, for the record: "content store", a path ...
    source: str = "engine-store"  # the engine's own store (containerd's content store)
    problems: tuple[str, ...] = ()

    @property
    def directory(self) -> None:
        """A blob is not unpacked on this host."""
        return None


@dataclass(frozen=True)
class UnpackedLayer:
    """A layer available only unpacked (a snapshot's lower dir): walked, not verifiable."""

    diff_id: str
    directory: Path
    reason: str  # why the blob itself could not be used


#: One layer of a container's image as the runtime can give it.
LayerSource = StoredLayer | BlobLayer | UnpackedLayer
