"""Persistence and account changes, by path: cron, shell profiles, SSH keys, preloads,
service units, the image's own entrypoint and cmd scripts, accounts and sudoers."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Container, Mapping
from fnmatch import fnmatchcase
from typing import Any

from drifttools.analysis.classifiers.context import ChangeContext
from drifttools.models import Change, ChangeKind, Finding, Severity

#: (glob, rule, severity, ATT&CK id, tag, what it is)
PERSISTENCE_PATHS: tuple[tuple[str, str, Severity, str, str, str], ...] = (
    ("/etc/cron*", "persistence.cron", Severity.HIGH, "T1053.003", "cron", "cron table"),
    ("/etc/cron*/*", "persistence.cron", Severity.HIGH, "T1053.003", "cron", "cron job"),
    ("/etc/crontabs/*", "persistence.cron", Severity.HIGH, "T1053.003", "cron", "cron table"),
    ("/var/spool/cron/*", "persistence.cron", Severity.HIGH, "T1053.003", "cron", "user crontab"),
    ("/etc/profile", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "profile"),
    (
        "/etc/profile.d/*",
        "persistence.profile",
        Severity.HIGH,
        "T1546.004",
        "shell-profile",
        "profile",
    ),
    ("/etc/bash.bashrc", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "rc"),
    ("/etc/environment", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "env"),
    ("*/.bashrc", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "rc"),
    ("*/.bash_profile", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "rc"),
    ("*/.bash_login", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "rc"),
    ("*/.bash_logout", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "rc"),
    ("*/.profile", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "rc"),
    ("*/.zshrc", "persistence.profile", Severity.HIGH, "T1546.004", "shell-profile", "rc"),
    (
        "*/.ssh/authorized_keys*",
        "persistence.ssh-keys",
        Severity.HIGH,
        "T1098.004",
        "authorized-keys",
        "SSH authorized keys",
    ),
    (
        "/etc/ssh/sshd_config*",
        "persistence.sshd-config",
        Severity.HIGH,
        "T1098.004",
        "sshd-config",
        "sshd configuration",
    ),
    (
        "/etc/ld.so.preload",
        "persistence.ld-preload",
        Severity.CRITICAL,
        "T1574.006",
        "ld-preload",
        "dynamic linker preload list",
    ),
    (
        "/etc/ld.so.conf*",
        "persistence.ld-config",
        Severity.HIGH,
        "T1574.006",
        "ld-preload",
        "dynamic linker search path",
    ),
    (
        "/etc/systemd/*",
        "persistence.service",
        Severity.HIGH,
        "T1543.002",
        "service",
        "systemd unit",
    ),
    (
        "/lib/systemd/system/*",
        "persistence.service",
        Severity.HIGH,
        "T1543.002",
        "service",
        "systemd unit",
    ),
    (
        "/usr/lib/systemd/*",
        "persistence.service",
        Severity.HIGH,
        "T1543.002",
        "service",
        "systemd unit",
    ),
    ("/etc/init.d/*", "persistence.service", Severity.HIGH, "T1543", "service", "init script"),
    ("/etc/rc*.d/*", "persistence.service", Severity.HIGH, "T1543", "service", "rc link"),
    ("/etc/rc.local", "persistence.service", Severity.HIGH, "T1543", "service", "rc.local"),
    ("/etc/inittab", "persistence.service", Severity.HIGH, "T1543", "service", "inittab"),
    ("/etc/supervisor*", "persistence.service", Severity.HIGH, "T1543", "service", "supervisor"),
    ("/etc/passwd", "account.passwd", Severity.HIGH, "T1136.001", "account", "local accounts"),
    ("/etc/shadow", "account.passwd", Severity.HIGH, "T1136.001", "account", "password hashes"),
    ("/etc/group", "account.passwd", Severity.MEDIUM, "T1136.001", "account", "local groups"),
    ("/etc/gshadow", "account.passwd", Severity.MEDIUM, "T1136.001", "account", "group hashes"),
    ("/etc/sudoers", "account.sudoers", Severity.HIGH, "T1548.003", "sudoers", "sudo rules"),
    ("/etc/sudoers.d/*", "account.sudoers", Severity.HIGH, "T1548.003", "sudoers", "sudo rules"),
    ("/etc/pam.d/*", "persistence.pam", Severity.HIGH, "T1556.003", "pam", "PAM configuration"),
)

_TOUCHING = (ChangeKind.ADDED, ChangeKind.MODIFIED, ChangeKind.TYPE, ChangeKind.METADATA)
_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")


def start_scripts(config: Mapping[str, Any], baseline: Container[str]) -> set[str]:
    """Image paths the container runs at start: Entrypoint and Cmd words that name image files,
    including words of a ``sh -c "..."`` command line."""
    inner = config.get("config") or config.get("Config") or {}
    words: list[str] = []
    for key in ("Entrypoint", "Cmd"):
        value = inner.get(key) or []
        for item in [value] if isinstance(value, str) else value:
            try:
                words += shlex.split(str(item))
            except ValueError:
                words += str(item).split()
    interpreters = {"sh", "bash", "dash", "ash", "busybox", "env", "tini", "dumb-init"}
    return {
        posixpath.normpath(w)
        for w in words
        if w.startswith("/")
        and posixpath.normpath(w) in baseline
        and posixpath.basename(w) not in interpreters
    }


def persistence_findings(change: Change, context: ChangeContext) -> list[Finding]:
    """Findings for a change of a path that runs again later: persistence or accounts."""
    if change.change not in _TOUCHING:
        return []
    found = []
    for pattern, rule, severity, attack, tag, what in PERSISTENCE_PATHS:
        if fnmatchcase(change.path, pattern):
            found.append(
                Finding(rule, severity, (attack,), ("persistence", tag), f"{what} changed")
            )
            break
    if change.path in context.start_scripts and change.change is not ChangeKind.METADATA:
        found.append(
            Finding(
                "persistence.start-script",
                Severity.HIGH,
                ("T1037",),
                ("persistence", "entrypoint"),
                "the image's entrypoint/cmd script changed: it runs at every start",
            )
        )
    if "shared-library" in context.tags and change.change is ChangeKind.ADDED:
        where = "a library directory" if change.path.startswith(_LIB_DIRS) else "the filesystem"
        found.append(
            Finding(
                "persistence.new-library",
                Severity.MEDIUM,
                ("T1574.006",),
                ("persistence", "new-library"),
                f"new shared library in {where}: preload or hijack candidate",
            )
        )
    return found
