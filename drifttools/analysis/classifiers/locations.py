"""Suspicious places for an executable: writable scratch dirs, hidden dirs, name games."""

from __future__ import annotations

from drifttools.analysis.classifiers.context import ChangeContext
from drifttools.models import Change, Finding, Severity

#: World-writable or runtime directories where tools are dropped (T1105 ingress tool transfer).
WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/var/run", "/dev/mqueue")
#: Names of system programs a dropped binary may take to blend in (T1036 masquerading).
SYSTEM_NAMES = frozenset(
    {
        "sshd",
        "systemd",
        "kworker",
        "kthreadd",
        "cron",
        "crond",
        "init",
        "dbus-daemon",
        "sh",
        "bash",
        "ps",
        "top",
        "netstat",
        "ls",
        "sleep",
        "nginx",
        "httpd",
        "php-fpm",
        "python3",
    }
)
_BIN_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/")


def under(path: str, directories: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in directories)


def location_findings(change: Change, context: ChangeContext) -> list[Finding]:
    """Findings for a changed executable by where it is and what it is named."""
    if "executable" not in context.tags or change.after is None:
        return []
    path = change.path
    found = []
    if under(path, WRITABLE_DIRS):
        found.append(
            Finding(
                "location.writable-dir",
                Severity.HIGH,
                ("T1105",),
                ("suspicious-location",),
                "executable in a world-writable or runtime directory",
            )
        )
    parts = path.strip("/").split("/")
    if any(part.startswith(".") and part not in (".", "..") for part in parts):
        found.append(
            Finding(
                "location.hidden",
                Severity.MEDIUM,
                ("T1564.001",),
                ("hidden",),
                "executable in or named as a hidden file",
            )
        )
    if any(part.strip(" .") == "" or part != part.strip() for part in parts):
        found.append(
            Finding(
                "location.name-games",
                Severity.HIGH,
                ("T1036",),
                ("masquerading",),
                "path component made of dots or blanks, or with leading/trailing blanks",
            )
        )
    elif parts[-1] in SYSTEM_NAMES and not path.startswith(_BIN_DIRS):
        found.append(
            Finding(
                "location.system-name",
                Severity.MEDIUM,
                ("T1036.005",),
                ("masquerading",),
                f"executable named like a system program ({parts[-1]}) outside the bin dirs",
            )
        )
    return found
