"""Pure tagging of processes against the image: what a process runs that the image lacks.

No I/O: the records were read from ``/proc`` (:mod:`drifttools.acquisition.processes`)
and the image's entries merged before; this only compares them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from drifttools.models import DELETED_SUFFIX, MEMFD_PREFIX, BaselineEntry, ProcessRecord


def tag_processes(
    processes: Sequence[ProcessRecord], baseline: Mapping[str, BaselineEntry]
) -> tuple[ProcessRecord, ...]:
    """Add tags that compare each process with the image; return new records.

    * ``memfd``: the process runs from an anonymous memory file (fileless).
    * ``exe-deleted``: its executable was deleted after it started.
    * ``exe-not-in-image``: the executable's path is not in the image (also
      checked for a deleted executable, at the path it had).
    * ``exe-modified``: the image has that path, but not as a regular file with
      the same sha256 (not said when the executable could not be hashed).
    * ``library-not-in-image``: a mapped library's path is not in the image.
    * ``library-deleted``, ``library-memfd``: a mapped library was deleted, or is
      a memfd.

    Tags a record already has are kept, first.
    """
    return tuple(
        dataclasses.replace(
            process, tags=tuple(dict.fromkeys((*process.tags, *_tags(process, baseline))))
        )
        for process in processes
    )


def _tags(process: ProcessRecord, baseline: Mapping[str, BaselineEntry]) -> list[str]:
    tags = []
    if process.exe_state == "memfd":
        tags.append("memfd")
    elif process.exe is not None and process.exe_state in ("present", "deleted"):
        if process.exe_state == "deleted":
            tags.append("exe-deleted")
        entry = baseline.get(process.exe)
        if entry is None:
            tags.append("exe-not-in-image")
        elif process.exe_sha256 is not None and (
            entry.facts.kind != "file" or entry.facts.sha256 != process.exe_sha256
        ):
            tags.append("exe-modified")
    for library in process.libraries:
        if library.startswith(MEMFD_PREFIX) and library.endswith(DELETED_SUFFIX):
            tags.append("library-memfd")
            continue
        if library.endswith(DELETED_SUFFIX):
            tags.append("library-deleted")
            library = library.removesuffix(DELETED_SUFFIX)
        if library not in baseline:
            tags.append("library-not-in-image")
    return tags
