"""What the drift says should change at the source. Pure: no I/O.

- packages a container installed at runtime (dpkg, apk, pip, npm drift) → pinned install
  lines in the image;
- files the application writes (added, not executable, not a package's, not judged
  suspicious) → a ``VOLUME`` (Kubernetes: an ``emptyDir``), so the root can be read-only;
- mutation tools the image ships that were run (shell, package manager, curl, wget) or
  that the package drift shows were used → named for removal;
- whether the processes run as root, and which capabilities they need (a port below 1024).

Suspicious changes (an executable dropped, anything judged high or critical) are never
judged expected: they are listed to be investigated, and motivate the read-only root.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drifttools.models import Change, ChangeKind, DriftReport, PackageRecord, Severity

#: Executables an intruder uses to change a container, by name.
MUTATION_TOOLS = frozenset(
    {"sh", "bash", "dash", "ash", "busybox", "curl", "wget", "nc", "ncat", "apt", "apt-get",
     "dpkg", "apk", "pip", "pip3", "npm", "yum", "dnf", "rpm"}
)  # fmt: skip
#: The tools each manager's runtime drift shows were used.
MANAGER_TOOLS = {
    "dpkg": ("apt-get", "dpkg"),
    "apk": ("apk",),
    "python": ("pip",),
    "npm": ("npm",),
    "rpm": ("rpm",),
}
#: Directories an application's data never belongs in (writes there are not "expected").
SYSTEM_DIRS = ("/", "/bin", "/sbin", "/usr", "/lib", "/lib64", "/etc", "/boot", "/root")
_RUNTIME_CHANGES = ("added", "upgraded", "downgraded")
_SHOWN = 5


@dataclass(frozen=True)
class Suggestion:
    """One change to make at the source, and the drift that motivated it."""

    kind: str  # install | volume | remove-tool | user | capabilities | investigate
    subject: str  # what it is about: "python charset-normalizer==3.3.2", "/srv/cache"
    detail: Mapping[str, Any] = field(default_factory=dict)
    motivated_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fixes:
    """Every suggestion for one report, by kind, in a stable order."""

    image: str | None  # the image's ref (or id)
    installs: tuple[Suggestion, ...]
    volumes: tuple[Suggestion, ...]
    tools: tuple[Suggestion, ...]
    investigate: tuple[Suggestion, ...]
    user: Suggestion
    capabilities: Suggestion

    @property
    def all(self) -> tuple[Suggestion, ...]:
        return (
            *self.installs,
            *self.volumes,
            *self.tools,
            *self.investigate,
            self.user,
            self.capabilities,
        )


def _listed(paths: Sequence[str]) -> tuple[str, ...]:
    shown = tuple(paths[:_SHOWN])
    return shown + ((f"... {len(paths) - _SHOWN} more",) if len(paths) > _SHOWN else ())


def _parents(path: str) -> list[str]:
    found = []
    while (path := posixpath.dirname(path)) != "/":
        found.append(path)
    return found


def _installs(packages: Sequence[PackageRecord]) -> list[Suggestion]:
    found = []
    for package in packages:
        if package.change not in _RUNTIME_CHANGES or package.after is None:
            continue
        found.append(
            Suggestion(
                "install",
                f"{package.manager} {package.name}={package.after}",
                {
                    "manager": package.manager,
                    "name": package.name,
                    "version": package.after,
                    "before": package.before,
                    "location": package.location,
                },
                (f"{package.purl} {package.change} at runtime", *_listed(package.files)),
            )
        )
    return found


def _suspicious(change: Change) -> bool:
    facts = change.after
    executable = facts is not None and facts.kind == "file" and bool(facts.mode & 0o111)
    return executable or change.severity.rank >= Severity.HIGH.rank


def _write_dir(change: Change, added_dirs: set[str]) -> str:
    """The directory a write belongs to: its highest ancestor the container added, else
    its parent (a mount's changes: the mount)."""
    if change.mount != "/":
        return change.mount
    directory = posixpath.dirname(change.path)
    while posixpath.dirname(directory) in added_dirs:
        directory = posixpath.dirname(directory)
    if directory not in added_dirs and change.path in added_dirs:
        return change.path
    return directory


def _writes(report: DriftReport, owned: set[str]) -> tuple[list[Suggestion], list[Suggestion]]:
    added_dirs = {
        c.path
        for c in report.changes
        if c.change is ChangeKind.ADDED and c.after is not None and c.after.kind == "dir"
    }
    volumes: dict[str, list[str]] = {}
    investigate = []
    for change in report.changes:
        if change.path in owned or (change.provenance and change.provenance.package):
            continue
        if "__pycache__" in change.path.split("/"):
            continue  # bytecode the interpreter writes beside a package's modules
        if _suspicious(change):
            why = ", ".join(f.rule for f in change.findings) or change.severity.value
            investigate.append(
                Suggestion("investigate", change.path, {"change": change.change.value}, (why,))
            )
            continue
        if change.change not in (ChangeKind.ADDED, ChangeKind.MODIFIED):
            continue
        if change.after is None or change.after.kind not in ("file", "dir"):
            continue
        directory = _write_dir(change, added_dirs)
        if directory in SYSTEM_DIRS or directory.startswith(("/usr/", "/etc/", "/bin/")):
            investigate.append(
                Suggestion("investigate", change.path, {"change": change.change.value},
                           ("written to a system directory at runtime",))
            )  # fmt: skip
            continue
        if change.after.kind == "file":
            volumes.setdefault(directory, []).append(change.path)
        else:
            volumes.setdefault(directory, [])
    found = [
        Suggestion(
            "volume",
            directory,
            {"tmpfs": directory in ("/tmp", "/run", "/var/tmp")},
            _listed(sorted(paths)) or (f"{directory} made at runtime",),
        )
        for directory, paths in sorted(volumes.items())
        if paths or directory in added_dirs
    ]
    return found, investigate


def _tools(report: DriftReport, installs: Sequence[Suggestion]) -> list[Suggestion]:
    used: dict[str, list[str]] = {}
    for process in report.processes:
        if not process.exe or "exe-not-in-image" in process.tags:
            continue
        name = posixpath.basename(process.exe)
        if name in MUTATION_TOOLS:
            used.setdefault(process.exe, []).append(
                f"pid {process.pid}: {' '.join(process.cmdline)[:200]}"
            )
    for install in installs:
        manager = install.detail["manager"]
        for tool in MANAGER_TOOLS.get(manager, ()):
            used.setdefault(tool, []).append(f"{install.subject} installed at runtime")
    return [
        Suggestion("remove-tool", tool, {}, _listed(reasons))
        for tool, reasons in sorted(used.items())
    ]


def _user(report: DriftReport, config: Mapping[str, Any]) -> Suggestion:
    uids = sorted({p.euid for p in report.processes})
    configured = str((config.get("config") or {}).get("User") or "")
    if uids and 0 not in uids:
        return Suggestion(
            "user", "run as non-root", {"non_root": True, "uid": uids[0]},
            tuple(f"processes run as uid {u}" for u in uids),
        )  # fmt: skip
    why = [f"processes run as uid {u}" for u in uids] or ["no process seen"]
    if not configured:
        why.append("the image sets no USER")
    return Suggestion("user", "set a USER in the image", {"non_root": False}, tuple(why))


def _capabilities(report: DriftReport) -> Suggestion:
    low_ports = []
    for socket in report.sockets:
        if socket.state == "LISTEN" and socket.protocol.startswith("tcp"):
            port = socket.local.rpartition(":")[2]
            if port.isdigit() and int(port) < 1024:
                low_ports.append(socket.local)
    keep = ["NET_BIND_SERVICE"] if low_ports else []
    why = [f"listens on {p}" for p in low_ports] or ["no port below 1024 is listened on"]
    return Suggestion("capabilities", "drop ALL", {"drop": ["ALL"], "add": keep}, tuple(why))


def suggest(report: DriftReport, image_config: Mapping[str, Any] | None = None) -> Fixes:
    """What to change at the source so that ``report``'s drift does not recur.

    ``image_config`` is the image's raw config (its ``config.User``); without it the
    suggestions rest on the report alone.
    """
    installs = _installs(report.packages)
    owned = {path for package in report.packages for path in package.files}
    owned |= {parent for path in owned for parent in _parents(path)}  # their directories
    volumes, investigate = _writes(report, owned)
    image = report.target.image
    return Fixes(
        image=(image.ref or image.id) if image else None,
        installs=tuple(installs),
        volumes=tuple(volumes),
        tools=tuple(_tools(report, installs)),
        investigate=tuple(investigate),
        user=_user(report, image_config or {}),
        capabilities=_capabilities(report),
    )
