"""``drifttools fix``: from a report (or a bundle), what stops its drift from recurring."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drifttools.models import DriftReport


@dataclass(frozen=True)
class FixResult:
    """The files written, each with its SHA-256."""

    directory: Path
    files: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "files": dict(self.files)}


def write_fixes(
    report: DriftReport,
    directory: Path,
    *,
    image_config: Mapping[str, Any] | None = None,
    dockerfile: Path | None = None,
) -> FixResult:
    raise NotImplementedError
