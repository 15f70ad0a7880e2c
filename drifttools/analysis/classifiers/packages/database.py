"""What every package reader produces, and the filesystem side it reads it from.

A :class:`Side` is the image or the container as a package reader sees it: which of the
package managers' own files are there, their bytes, each path's facts, and the path a
package's record names once merged /usr is applied (Debian bookworm lists ``bin/cat``
where the file is ``/usr/bin/cat``: ``/bin`` is a symlink to ``usr/bin``).
A :class:`Database` is one manager's view of one side: the packages installed and the
paths each owns, with the digest it recorded.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from drifttools.models import FileFacts, PackageRef

Reader = Callable[[str], bytes | None]

#: Top-level directories a merged /usr turns into symlinks into /usr.
MERGED_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/libo32")
_OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
_HOPS = 16  # symlinks followed at most, as the kernel's limit (40) would be overkill here


@dataclass(frozen=True, slots=True)
class Owned:
    """One path a package owns, as its record lists it."""

    package: str  # the key of the owning package in :attr:`Database.packages`
    digest: tuple[str, str] | None  # (hashlib name, hex digest) the package recorded
    conffile: bool = False  # a configuration file: the administrator may edit it
    listed_as: str | None = None  # the path as listed, when not the path it now names


@dataclass(frozen=True, slots=True)
class Diversion:
    """A dpkg diversion: other packages' file at a path is installed elsewhere."""

    to: str  # where the diverted packages' file is
    by: str | None  # the package that diverted it; None for a local (administrator's) one


@dataclass
class Database:
    """One package manager's record of one side: its packages and the paths they own."""

    manager: str  # dpkg | apk | rpm | python | npm
    packages: dict[str, PackageRef] = field(default_factory=dict)  # key -> package
    files: dict[str, list[Owned]] = field(default_factory=dict)  # path -> its owners
    metadata: dict[str, str] = field(default_factory=dict)  # the manager's files -> key
    diversions: dict[str, Diversion] = field(default_factory=dict)  # diverted path
    location: dict[str, str] = field(default_factory=dict)  # key -> site or node_modules dir

    def own(self, path: str, owned: Owned) -> None:
        self.files.setdefault(path, []).append(owned)


def own_listed(db: Database, side: Side, listed: str, owned: Owned) -> None:
    """Record that ``owned``'s package owns the path its record lists as ``listed``."""
    path = side.canonical(listed)
    db.own(path, dataclasses.replace(owned, listed_as=listed) if path != listed else owned)


def is_database_path(path: str) -> bool:
    """A path some package reader may read: worth indexing on both sides."""
    return (
        path.startswith(("/var/lib/dpkg/", "/lib/apk/db/", "/var/lib/rpm/", "/usr/lib/sysimage/"))
        or (".dist-info/" in path and path.endswith(("/METADATA", "/RECORD")))
        or (path.endswith("/package.json") and "/node_modules/" in path)
        or path in _OS_RELEASE
    )


class Side:
    """The image or the container, as package readers see it."""

    def __init__(
        self,
        name: str,
        paths: Collection[str],
        facts: Callable[[str], FileFacts | None],
        read: Reader,
    ) -> None:
        self.name = name  # "image" or "container"
        self.paths = frozenset(paths)  # the database paths it has (:func:`is_database_path`)
        self._facts = facts
        self._read = read
        self.notes: list[str] = []  # what could not be read, and why
        self.aliases = {
            directory: target
            for directory in MERGED_DIRS
            if (target := _link_target(directory, facts(directory))) is not None
            and target.startswith("/usr/")
        }
        self.namespace = self._os_id()

    def has(self, path: str) -> bool:
        return path in self.paths

    def read(self, path: str) -> bytes | None:
        """The whole of a file the side has, or None (noted) when it cannot be read whole."""
        data = self._read(path)
        facts = self.facts(path)
        if data is None:
            self.notes.append(f"the {self.name}'s {path} is not readable")
        elif facts is not None and len(data) < facts.size:
            self.notes.append(f"the {self.name}'s {path} is larger than the read cap: not read")
            return None
        return data

    def text(self, path: str) -> str | None:
        data = self.read(path) if self.has(path) else None
        return None if data is None else data.decode("utf-8", "replace")

    def facts(self, path: str) -> FileFacts | None:
        return self._facts(path)

    def canonical(self, path: str) -> str:
        """``path`` with a merged-/usr top directory replaced by where it points."""
        head = "/" + path.split("/", 2)[1] if path.startswith("/") else path
        alias = self.aliases.get(head)
        return alias + path[len(head) :] if alias else path

    def resolve(self, path: str) -> str | None:
        """Where a chain of symlinks from ``path`` ends (lexically, never outside the
        tree); None when it loops or is too long."""
        for _ in range(_HOPS):
            path = self.canonical(path)
            target = _link_target(path, self.facts(path))
            if target is None:
                return path
            path = target
        return None

    def _os_id(self) -> str | None:
        for path in _OS_RELEASE:
            facts = self.facts(path)
            text = self.text(path) if facts is not None and facts.kind == "file" else None
            for line in (text or "").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "ID" and value.strip().strip("\"'"):
                    return value.strip().strip("\"'").lower()
        return None


def _link_target(path: str, facts: FileFacts | None) -> str | None:
    if facts is None or facts.kind != "symlink" or not facts.target:
        return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(path), facts.target))
