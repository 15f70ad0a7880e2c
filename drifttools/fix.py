"""``drifttools.fix``: from a report (or a bundle), what stops its drift from recurring.

Four files in the directory given, each written atomically:

==================  ===================================================================
``Dockerfile.patch``  a unified diff against the image's Dockerfile (when given), else
``Dockerfile.fix``    a Dockerfile ``FROM`` the image: pinned installs, ``VOLUME``s,
                      the mutation tools used, named for removal
``pod.yaml``          a Pod with the container's ``securityContext`` and ``emptyDir``s
``allowlist.txt``     the drift judged expected, for ``--allow`` in the next scans
``SUMMARY.md``        what to change and why, each suggestion with its motivating changes
==================  ===================================================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drifttools.atomic import atomic_write
from drifttools.errors import DriftError, ResponseInputError
from drifttools.evidence.bundle import is_bundle, open_bundle
from drifttools.evidence.report_read import report_from_dict
from drifttools.models import DriftReport
from drifttools.response.fixes.allowlist import allowlist_text
from drifttools.response.fixes.dockerfile import derived_dockerfile, dockerfile_patch
from drifttools.response.fixes.kubernetes import pod_fragment
from drifttools.response.fixes.suggest import Fixes, suggest
from drifttools.response.fixes.summary import summary_text


@dataclass(frozen=True)
class FixResult:
    """The suggestions, and the files written with their SHA-256."""

    directory: Path
    fixes: Fixes
    files: Mapping[str, str]  # name -> sha256

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "files": dict(self.files),
            "suggestions": [
                {"kind": s.kind, "subject": s.subject, "motivated_by": list(s.motivated_by)}
                for s in self.fixes.all
            ],
        }


def _yaml(data: Any) -> str:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the respond extra
        raise DriftError("writing pod.yaml needs PyYAML: install drifttools[respond]") from exc
    text: str = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return text


def write_fixes(
    report: DriftReport,
    directory: Path,
    *,
    image_config: Mapping[str, Any] | None = None,
    dockerfile: Path | None = None,
) -> FixResult:
    """Write the fix of ``report``'s drift into ``directory`` (made if missing)."""
    fixes = suggest(report, image_config)
    if dockerfile is not None:
        patch_name = "Dockerfile.patch"
        patch = dockerfile_patch(dockerfile.read_text(), fixes, dockerfile.name)
    else:
        patch_name, patch = "Dockerfile.fix", derived_dockerfile(fixes)
    container = report.target.name or report.target.id[:12]
    contents = {
        patch_name: patch,
        "pod.yaml": _yaml(pod_fragment(fixes, container)),
        "allowlist.txt": allowlist_text(fixes),
        "SUMMARY.md": summary_text(fixes),
    }
    directory.mkdir(parents=True, exist_ok=True)  # the directory named for the fix is made
    written = {}
    for name, text in contents.items():
        data = text.encode()
        atomic_write(directory / name, data)
        written[name] = hashlib.sha256(data).hexdigest()
    return FixResult(directory, fixes, written)


def fix(
    source: str | Path,
    directory: str | Path,
    *,
    dockerfile: str | Path | None = None,
) -> FixResult:
    """:func:`write_fixes` from a saved report (JSON) or an evidence bundle (which also
    gives the image's config)."""
    path = Path(source)
    image_config: Mapping[str, Any] | None = None
    if is_bundle(path):
        with open_bundle(path) as opened:
            report, image_config = opened.report, opened.image.get("config")
    else:
        try:
            report = report_from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ResponseInputError(f"{path}: not a drifttools report or bundle ({exc})") from exc
    return write_fixes(
        report,
        Path(directory),
        image_config=image_config,
        dockerfile=Path(dockerfile) if dockerfile is not None else None,
    )
