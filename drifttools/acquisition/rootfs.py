"""Read a container's filesystem from a directory or an exported tar, without altering it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from drifttools import _native
from drifttools.errors import LayerCorrupt, RootfsError
from drifttools.models import FilesystemState

#: Pseudo filesystems never walked: their content is the kernel's, not the container's.
PSEUDO_FILESYSTEMS = ("/proc", "/sys")

#: Files larger than this are recorded with their facts but not hashed (a sparse
#: 1 TB file must not stall a response). Override per call.
DEFAULT_HASH_CAP = 4 << 30


def atime_notes(filesystems: Iterable[FilesystemState]) -> list[str]:
    """The notes for walks that could not keep symlink atimes (see ``Tree.atime_exception``)."""
    return [note for state in filesystems if (note := state.tree.atime_exception)]


class Hashing(NamedTuple):
    """How a walk hashes regular files: up to ``max_size`` bytes (None: no cap), and with
    ``legacy`` their MD5 and SHA-1 beside the SHA-256, in the same read."""

    max_size: int | None = DEFAULT_HASH_CAP
    legacy: bool = True

    def walk_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`drifttools._native.walk` that say it."""
        return {"hash_max_size": self.max_size, "legacy_hashes": self.legacy}


#: What every walk hashes unless told otherwise: SHA-256, MD5 and SHA-1, up to the cap.
DEFAULT_HASHING = Hashing()


def read_rootfs(
    path: str | Path,
    *,
    view: str = "merged",
    mount: str = "/",
    hash_max_size: int | None = DEFAULT_HASH_CAP,
    legacy_hashes: bool = True,
    threads: int = 0,
) -> FilesystemState:
    """Read the filesystem at ``path``: a directory (walked safely) or a tar (streamed).

    ``view`` is ``merged`` for a whole filesystem (a mounted rootfs, a
    ``docker export`` tar) or ``upper`` for an overlay upper directory.
    """
    if view not in ("merged", "upper"):
        raise ValueError(f"view must be 'merged' or 'upper', not {view!r}")
    location = Path(path)
    try:
        if location.is_dir():
            tree = _native.walk(
                str(location),
                exclude=list(PSEUDO_FILESYSTEMS) if view == "merged" and mount == "/" else [],
                **Hashing(hash_max_size, legacy_hashes).walk_options(),
                threads=threads,
            )
            method = "walk"
        elif location.exists():
            if view == "upper":
                raise RootfsError(f"an overlay upper dir must be a directory: {location}")
            tree = _native.read_layer(str(location)).entries
            method = "archive"
        else:
            raise RootfsError(f"container filesystem not found: {location}")
    except LayerCorrupt as exc:
        raise RootfsError(f"container filesystem archive unreadable: {location}: {exc}") from exc
    except OSError as exc:
        raise RootfsError(f"cannot read container filesystem {location}: {exc}") from exc
    return FilesystemState(
        mount=mount,
        view=view,
        source=str(location),
        method=method,
        tree=tree,
        host_root=str(location) if method == "walk" else None,
    )
