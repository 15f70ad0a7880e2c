"""Expected drift: a small built-in allowlist plus user allowlists by image and path glob.

A user allowlist file has one rule a line, ``#`` starts a comment::

    /var/log/myapp/**              # any image
    registry.example/ci-* /workspace/**   # only images whose ref or id matches the glob

Globs use ``fnmatch`` with ``**`` matching across ``/`` (as ``*`` does in fnmatch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from drifttools.errors import AllowlistError
from drifttools.models import ImageRef

#: Logs, caches, pid files, package manager caches, shell history of interactive debugging.
BUILTIN = (
    "/var/log/**",
    "/var/cache/**",
    "/var/lib/apt/lists/**",
    "/var/lib/dnf/**",
    "/var/lib/yum/**",
    "/var/cache/apk/**",
    "/run/*.pid",
    "/var/run/*.pid",
    "/run/**/*.pid",
    "/tmp/*.log",
    "/root/.cache/**",
    "/home/*/.cache/**",
    "/root/.npm/_cacache/**",
    "/root/.cache/pip/**",
    "**/__pycache__/**",
    "**/*.pyc",
    "/var/lib/dpkg/lock*",
    "/var/lib/apt/lists/lock",
)


@dataclass(frozen=True, slots=True)
class AllowRule:
    path: str  # glob on the container path
    image: str = "*"  # glob on the image ref or id
    origin: str = "built-in"


def load_allowlist(path: str | Path) -> list[AllowRule]:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AllowlistError(f"cannot read allowlist {path}: {exc}") from exc
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2 or not words[-1].startswith(("/", "*")):
            raise AllowlistError(f"{path}:{number}: expected '[IMAGE-GLOB] /PATH-GLOB'")
        image = words[0] if len(words) == 2 else "*"
        rules.append(AllowRule(words[-1], image, f"{path}:{number}"))
    return rules


class Allowlist:
    """Which paths of one image's containers are expected to drift."""

    def __init__(self, rules: Iterable[AllowRule], image: ImageRef | None) -> None:
        names = [n for n in ((image.ref, image.id) if image else ()) if n]
        self.rules: Sequence[AllowRule] = [
            r for r in rules if r.image == "*" or any(fnmatchcase(n, r.image) for n in names)
        ]

    @classmethod
    def build(cls, files: Iterable[str | Path], image: ImageRef | None) -> Allowlist:
        rules = [AllowRule(glob) for glob in BUILTIN]
        for file in files:
            rules += load_allowlist(file)
        return cls(rules, image)

    def match(self, path: str) -> AllowRule | None:
        for rule in self.rules:
            if fnmatchcase(path, rule.path) or (
                rule.path.endswith("/**") and path == rule.path[:-3]
            ):
                return rule
        return None
