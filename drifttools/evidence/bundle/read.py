"""Reading a bundle back: the report model, the acquisition record, blobs on demand."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from drifttools.errors import BundleCorrupt
from drifttools.evidence.bundle.layout import (
    ACQUISITION,
    ACTIONS,
    BLOBS,
    EVIDENCE,
    FACTS,
    IMAGE,
    INSPECT,
    MANIFEST,
    MOUNTINFO,
    REPORT,
)
from drifttools.evidence.bundle.members import Members, open_members
from drifttools.evidence.bundle.verify import verify_bundle
from drifttools.evidence.report_read import report_from_dict
from drifttools.models import DriftReport


class Bundle:
    """An opened bundle: the report model, the acquisition record, lazy blobs.

    Use as a context manager (or call :meth:`close`) to release the tar file.
    """

    def __init__(self, path: Path, members: Members) -> None:
        self.path = path
        self._members = members
        self.manifest: dict[str, Any] = json.loads(members.read(MANIFEST))
        self.acquisition: dict[str, Any] = self._json(ACQUISITION)
        self.evidence: dict[str, Any] = self._json(EVIDENCE)
        self.image: dict[str, Any] = self._json(IMAGE)
        self.inspect: dict[str, Any] = self._json(INSPECT)
        try:
            document = {**self._json(REPORT), **self.acquisition.get("report", {})}
            report = _with_extra_facts(report_from_dict(document), self._json(FACTS))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # sealed, yet not what drifttools writes: an unsigned bundle rewritten by hand
            raise BundleCorrupt(f"{path}: {REPORT} is not a report v1 document: {exc!r}") from exc
        self.report: DriftReport = report

    def _json(self, name: str) -> Any:
        if name not in self._members.spans:
            raise BundleCorrupt(f"{self.path}: {name} missing")
        try:
            return json.loads(self._members.read(name))
        except ValueError as exc:
            raise BundleCorrupt(f"{self.path}: {name}: not JSON: {exc}") from exc

    @property
    def actions(self) -> list[dict[str, Any]]:
        """The acquisition's action log, oldest first."""
        return [json.loads(line) for line in self._members.read(ACTIONS).splitlines()]

    @property
    def mountinfo(self) -> bytes | None:
        return self._members.read(MOUNTINFO) if MOUNTINFO in self._members.spans else None

    @property
    def blobs(self) -> list[str]:
        """The SHA-256 (hex) of every stored blob."""
        return sorted(name[len(BLOBS) :] for name in self._members.spans if name.startswith(BLOBS))

    def blob(self, sha256: str) -> bytes:
        """The bytes of a stored file or executable, by its SHA-256 (read when asked)."""
        name = BLOBS + sha256.removeprefix("sha256:")
        if name not in self._members.spans:
            raise KeyError(sha256)
        return self._members.read(name)

    def content(self, path: str) -> bytes | None:
        """The stored bytes of the container file ``path``, or None when it was not stored."""
        for item in self.evidence.get("files", ()):
            if item["path"] == path and item["sha256"]:
                return self.blob(item["sha256"])
        return None

    def executable(self, pid: int) -> bytes | None:
        """The stored executable of the process with host pid ``pid``, or None."""
        for item in self.evidence.get("executables", ()):
            if item["pid"] == pid and item["sha256"]:
                return self.blob(item["sha256"])
        return None

    def close(self) -> None:
        self._members.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _with_extra_facts(report: DriftReport, extra: Mapping[str, Any]) -> DriftReport:
    changes = []
    for change in report.changes:
        facts = extra.get(change.path)
        if change.after is not None and facts:
            after = replace(
                change.after,
                atime_ns=facts.get("atime_ns"),
                inode=facts.get("inode"),
                nlink=facts.get("nlink"),
            )
            change = replace(change, after=after)
        changes.append(change)
    return replace(report, changes=tuple(changes))


def open_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Open a bundle (tar or directory): no engine needed.

    With ``verify`` (the default) every byte is checked first and a bundle that
    fails raises :class:`BundleCorrupt` naming what failed.
    """
    path = Path(path)
    if verify:
        result = verify_bundle(path)
        if not result.ok:
            raise BundleCorrupt(f"{path}: {'; '.join(result.problems)}")
    members = open_members(path)
    try:
        return Bundle(path, members)
    except BaseException:
        members.close()
        raise


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` looks like a bundle (a tar file, or a directory with a manifest)."""
    path = Path(path)
    if path.is_dir():
        return (path / MANIFEST).is_file()
    return path.is_file() and tarfile.is_tarfile(path)
