"""On-disk cache of what a file's bytes said (libmagic, ELF facts, YARA), keyed by what
decides it: a file whose digest was classified before is not read again.

The key (:func:`sample_key`) holds everything a sample depends on: the file's SHA-256 (the
walk's: never hashed again here), the compiled rules' own cache key (engine, its version,
every source, the defines) and the match filters, libmagic's version, the classifier
version, the scan cap, whether the file has an x bit (a script is ``executable`` only
then), and the values of the YARA externals the rules read that the bytes do not decide
(``filename``, ``filepath``, ``extension``, ``owner``): a rule set that reads ``filepath``
gets one entry per path, one that reads none one entry per content.

Entries live under ``<cache dir>/samples/v1/<2 hex>/<key>`` beside the layer cache,
written atomically (a temporary file renamed), each carrying the SHA-256 of its payload
and its own key; an entry that does not check out is removed and the file examined
again. The cache is bounded: once it holds more than ``max_entries``, the least recently
used are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drifttools.analysis.classifiers.yara import RuleSet
from drifttools.analysis.classifiers.yara_engines import External

#: Bumped whenever what :func:`drifttools.analysis.samples.examine` learns of bytes changes.
CLASSIFIER_VERSION = 1
#: Entries kept at most (a few hundred bytes each).
DEFAULT_MAX_ENTRIES = 100_000
#: The externals whose values come from where a file is, not from its bytes.
PATH_EXTERNALS = frozenset({"filename", "filepath", "extension", "owner"})


@dataclass(frozen=True, slots=True)
class Sample:
    """What was learnt of one file's bytes."""

    magic: str | None
    info: Mapping[str, Any]  # ELF or script facts, truncation, a YARA error
    tags: tuple[str, ...]
    yara: tuple[dict[str, Any], ...]  # matches, sorted by namespace and rule

    @property
    def cacheable(self) -> bool:
        """Whether the sample says what the bytes are (not that a scan timed out)."""
        return "yara_error" not in self.info


def _libmagic_version() -> int:
    import magic

    return int(magic.version())


def sample_key(
    sha256: str,
    *,
    ruleset: RuleSet | None,
    cap: int,
    executable: bool,
    path_externals: Mapping[str, External],
) -> str:
    """The cache key of the sample of a file with content ``sha256`` (see the module)."""
    rules = None
    if ruleset is not None:
        rules = [ruleset.sha256, sorted(ruleset.tags), sorted(ruleset.identifiers)]
    head = [
        CLASSIFIER_VERSION,
        _libmagic_version(),
        sha256,
        rules,
        cap,
        executable,
        sorted(path_externals.items()),
    ]
    return hashlib.sha256(json.dumps(head, default=str).encode()).hexdigest()


class SampleCache:
    """Samples under ``<directory>/samples/v1`` (``directory``: the layer cache's)."""

    def __init__(self, directory: Path, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.directory = Path(directory) / "samples" / "v1"
        self.max_entries = max_entries
        self._stored = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / key

    def get(self, key: str) -> Sample | None:
        """The sample stored under ``key``; None when absent or not intact (then removed)."""
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        sample = _decode(raw, key)
        if sample is None:
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently used goes first
        return sample

    def put(self, key: str, sample: Sample) -> None:
        """Store ``sample`` under ``key`` atomically; a cache that cannot be written is
        skipped (it only saves work)."""
        payload = json.dumps(
            {
                "key": key,
                "magic": sample.magic,
                "info": sample.info,
                "tags": sample.tags,
                "yara": sample.yara,
            },
            sort_keys=True,
        ).encode()
        path = self._path(key)
        entry = hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(entry)
                # no fsync: an entry a crash cut short fails its own check and is redone
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError:
            return
        self._stored += 1

    def prune(self) -> None:
        """Remove the least recently used entries once there are more than allowed (checked
        only after something was stored)."""
        if not self._stored:
            return
        self._stored = 0
        entries = []
        try:
            shards = list(os.scandir(self.directory))
        except OSError:
            return
        for shard in shards:
            try:
                entries += [(e.stat().st_mtime_ns, e.path) for e in os.scandir(shard.path)]
            except OSError:
                continue
        if len(entries) <= self.max_entries:
            return
        entries.sort()
        for _, path in entries[: len(entries) - self.max_entries * 9 // 10]:
            Path(path).unlink(missing_ok=True)


def _decode(raw: bytes, key: str) -> Sample | None:
    digest, _, payload = raw.partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        return None
    try:
        data = json.loads(payload)
        if data["key"] != key:
            return None
        return Sample(
            data["magic"],
            dict(data["info"]),
            tuple(data["tags"]),
            tuple(data["yara"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
