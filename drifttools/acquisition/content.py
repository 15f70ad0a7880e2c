"""The bytes of files a snapshot saw, read again without leaving the container's root.

Classification (libmagic, YARA) and evidence bundles need the content of
drifted files. Each filesystem of a snapshot says where it was walked on the
host (``host_root``, ``host_subpath``); reads go through the native confined
reader (no symlink followed, FIFOs and devices never opened, atimes kept). A
filesystem read from an archive (an offline ``docker export`` tar) is read
again in one pass; a streamed export cannot be read twice, so its content is
unavailable and says so.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from drifttools import _native
from drifttools.errors import ContentUnavailable, MalformedPath, RootfsError
from drifttools.models import FilesystemState, GuardedRoot, Snapshot


@dataclass(frozen=True, slots=True)
class Content:
    """Bytes read from one file: at most the limit asked for, and the file's full size."""

    data: bytes
    size: int
    #: When asked for, the SHA-256 of the whole file as this read saw it (what ``data``
    #: is the start of); None when not asked for or from an archive (the walk read
    #: that same archive).
    sha256: str | None = None

    @property
    def complete(self) -> bool:
        return len(self.data) == self.size


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


class ContentReader:
    """Reads the content of container paths of one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._states = snapshot.filesystems

    @property
    def one_pass(self) -> bool:
        """Whether some content comes from an archive, where each :meth:`read_many` call
        is a pass over it: read many paths per call, not one path per call."""
        return any(s.host_root is None and s.method == "archive" for s in self._states)

    def _state_for(self, path: str) -> FilesystemState | None:
        # The most specific filesystem wins: a mount over the rootfs, a partial read over the
        # upper dir it completes.
        candidates = [s for s in self._states if _under(path, s.prefix)]
        if not candidates:
            return None
        return max(candidates, key=lambda s: (len(s.prefix), s.view == "partial"))

    def read(self, path: str, limit: int) -> Content:
        """At most ``limit`` bytes of the regular file ``path`` (a container path)."""
        result = self.read_many([path], limit)[path]
        if isinstance(result, ContentUnavailable):
            raise result
        return result

    def read_many(
        self, paths: Iterable[str], limit: int, *, digest: Collection[str] = ()
    ) -> dict[str, Content | ContentUnavailable]:
        """Content of each path; a path that cannot be read maps to the reason (an exception).
        Those of ``digest`` read from a host directory are hashed to their end in the same
        read (:attr:`Content.sha256`).

        Reads through ``/proc/<pid>/root`` are bracketed by the pid's guard: if the
        container's process is gone (its pid possibly reused), nothing read there counts.
        """
        results: dict[str, Content | ContentUnavailable] = {}
        from_archives: dict[str, list[str]] = {}
        guarded: dict[str, GuardedRoot] = {}
        for path in paths:
            state = self._state_for(path)
            if state is None:
                results[path] = _missing(path, "no filesystem of the snapshot holds it")
            elif state.host_root is not None:
                if state.guard is not None and not _holds(state.guard):
                    results[path] = _missing(path, "the container's process is gone")
                    continue
                relative = path[len(state.prefix.rstrip("/")) :] or "/"
                inside = posixpath.join(state.host_subpath, relative.lstrip("/"))
                hashed = path in digest
                results[path] = _read_confined(state.host_root, inside, limit, path, hashed)
                if state.guard is not None:
                    guarded[path] = state.guard
            elif state.method == "archive":
                from_archives.setdefault(state.source, []).append(path)
            else:
                results[path] = _missing(path, f"read by {state.method}: content not kept")
        for guard in set(guarded.values()):
            if not _holds(guard):
                for path in (p for p, g in guarded.items() if g == guard):
                    results[path] = _missing(path, "the container's process is gone")
        for archive, wanted in from_archives.items():
            results.update(_read_archive(archive, wanted, limit))
        return results


def _holds(guard: GuardedRoot) -> bool:
    try:
        guard.check()
    except RootfsError:
        return False
    return True


def _missing(path: str, reason: str) -> ContentUnavailable:
    return ContentUnavailable(f"{path}: {reason}")


def _read_confined(
    root: str, inside: str, limit: int, path: str, digest: bool
) -> Content | ContentUnavailable:
    try:
        data, size, sha256 = _native.read_file(root, inside, limit=limit, digest=digest)
    except (OSError, MalformedPath) as exc:  # NotRegularFile is an OSError too
        return _missing(path, str(exc))
    return Content(data, size, sha256)


def _read_archive(
    archive: str, wanted: list[str], limit: int
) -> dict[str, Content | ContentUnavailable]:
    names = {_native.unescape_path(path).lstrip(b"/"): path for path in wanted}
    found: dict[str, Content | ContentUnavailable] = {}
    with tarfile.open(archive, encoding="utf-8", errors="surrogateescape") as members:
        for member in members:
            raw = member.name.encode("utf-8", "surrogateescape").removeprefix(b"./").lstrip(b"/")
            path = names.get(raw)
            if path is None or not (member.isfile() or member.islnk()):
                continue
            handle = members.extractfile(member)
            assert handle is not None
            found[path] = Content(handle.read(limit), member.size)
    for path in set(wanted) - found.keys():
        found[path] = _missing(path, f"not a regular file of {archive}")
    return found
