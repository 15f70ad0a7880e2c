"""The Dockerfile side of a fix: pinned install lines, ``VOLUME``s, tools named for removal.

Given the image's Dockerfile, a unified diff against it (``patch -p1`` applies it): the
lines go before the last stage's ``CMD`` / ``ENTRYPOINT``. Without one, a Dockerfile
``FROM`` the image with the same lines.
"""

from __future__ import annotations

import difflib
import json
import shlex
from collections.abc import Sequence

from drifttools.response.fixes.suggest import Fixes, Suggestion

_INSTALL = {
    "dpkg": "apt-get update && apt-get install -y --no-install-recommends {pins}"
    " && rm -rf /var/lib/apt/lists/*",
    "apk": "apk add --no-cache {pins}",
    "python": "python3 -m pip install --no-cache-dir {pins}",
    "npm": "npm install --global {pins}",
    "rpm": "dnf install -y {pins} && dnf clean all",
}
_PIN = {"dpkg": "{name}={version}", "apk": "{name}={version}", "python": "{name}=={version}",
        "npm": "{name}@{version}", "rpm": "{name}-{version}"}  # fmt: skip


def _why(suggestion: Suggestion) -> str:
    return "; ".join(suggestion.motivated_by)


def fix_lines(fixes: Fixes) -> list[str]:
    """The Dockerfile lines of ``fixes``, each group under a comment naming its motivation."""
    lines: list[str] = []
    by_manager: dict[str, list[Suggestion]] = {}
    for install in fixes.installs:
        by_manager.setdefault(install.detail["manager"], []).append(install)
    for manager, installs in by_manager.items():
        if manager not in _INSTALL:
            continue
        for install in installs:
            lines.append(f"# drifttools fix: installed at runtime: {_why(install)}")
        pins = " ".join(shlex.quote(_PIN[manager].format(**install.detail)) for install in installs)
        lines.append("RUN " + _INSTALL[manager].format(pins=pins))
    for volume in fixes.volumes:
        lines.append(f"# drifttools fix: written at runtime: {_why(volume)}")
        # the mount point shipped in the image: else the engine makes it in the container
        lines.append(f"RUN mkdir -p {shlex.quote(volume.subject)}")
        lines.append(f"VOLUME {json.dumps([volume.subject])}")
    if fixes.tools:
        lines.append(
            "# drifttools fix: mutation tools the image ships, used at runtime: remove them"
            " if the application does not need them (or build FROM a distroless base):"
        )
        for tool in fixes.tools:
            lines.append(f"#   {tool.subject}: {_why(tool)}")
    if fixes.user.detail.get("non_root") is False:
        lines.append(f"# drifttools fix: {fixes.user.subject}: {_why(fixes.user)}")
    return lines


def _insert_at(original: Sequence[str]) -> int:
    """Before the last stage's first CMD or ENTRYPOINT; the end when it has none."""
    stage = max((i for i, line in enumerate(original) if _word(line) == "FROM"), default=0)
    for index in range(stage, len(original)):
        if _word(original[index]) in ("CMD", "ENTRYPOINT"):
            return index
    return len(original)


def _word(line: str) -> str:
    return line.strip().split(" ", 1)[0].upper() if line.strip() else ""


def dockerfile_patch(original: str, fixes: Fixes, name: str = "Dockerfile") -> str:
    """A unified diff that adds ``fixes``' lines to the Dockerfile text ``original``."""
    before = original.splitlines(keepends=True)
    if before and not before[-1].endswith("\n"):
        before[-1] += "\n"
    at = _insert_at([line.rstrip("\n") for line in before])
    after = before[:at] + [line + "\n" for line in fix_lines(fixes)] + before[at:]
    return "".join(difflib.unified_diff(before, after, f"a/{name}", f"b/{name}"))


def derived_dockerfile(fixes: Fixes) -> str:
    """A Dockerfile ``FROM`` the image with ``fixes``' lines (when its own is not given)."""
    base = fixes.image or "IMAGE"
    return "\n".join([f"FROM {base}", *fix_lines(fixes)]) + "\n"
