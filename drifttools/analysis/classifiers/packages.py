"""Package drift: what the package managers' databases say changed, and owned files whose
bytes no longer match their package.

dpkg (``/var/lib/dpkg/status``, ``info/*.md5sums``), apk (``/lib/apk/db/installed``,
with its per-file sha1), rpm (``rpmdb.sqlite``), Python (``*.dist-info/METADATA``) and
npm (``node_modules/<name>/package.json`` directly below a ``node_modules``).
The image's bytes come from ``before``, the container's from ``after``; either may
answer None (not readable), and then what needs it is left out with a note.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import HeaderParser

from drifttools.models import Change, ChangeKind, Finding, Severity

Reader = Callable[[str], bytes | None]

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_INFO = "/var/lib/dpkg/info/"
APK_DB = "/lib/apk/db/installed"
RPM_DBS = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
_DIST_INFO = re.compile(r".*/(site|dist)-packages/([^/]+)\.dist-info/METADATA")
_NODE = re.compile(r"(.*/node_modules)/((?:@[^/]+/)?[^/]+)/package\.json")


@dataclass
class PackageDrift:
    entries: list[dict] = field(default_factory=list)
    findings: dict[str, list[Finding]] = field(default_factory=dict)  # by path
    owned: set[str] | None = None  # paths some package owns, when a database was read
    notes: list[str] = field(default_factory=list)

    def add(self, path: str, finding: Finding) -> None:
        self.findings.setdefault(path, []).append(finding)


def version_key(version: str) -> list[tuple[int, int | str]]:
    """An order on version strings good enough to tell an upgrade from a downgrade."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[A-Za-z]+", version)]


def _compare(manager: str, before: Mapping[str, str], after: Mapping[str, str]) -> list[dict]:
    entries = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            change = "added"
        elif new is None:
            change = "removed"
        else:
            change = "upgraded" if version_key(new) > version_key(old) else "downgraded"
        entries.append(
            {
                "manager": manager,
                "name": name,
                "change": change,
                "before": old,
                "after": new,
                "severity": Severity.MEDIUM.value,
            }
        )
    return entries


def parse_dpkg_status(text: str) -> tuple[dict[str, str], set[str]]:
    """Installed packages ``{name: version}`` and the conffiles they own."""
    installed, conffiles = {}, set()
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        name = fields.get("Package")
        if name and "installed" in fields.get("Status", "").split()[-1:]:
            arch = fields.get("Architecture")
            qualified = name if arch in (None, "all") else f"{name}:{arch}"
            installed[qualified] = fields.get("Version", "")
            for line in fields.get("Conffiles", "").splitlines():
                if line.startswith("/"):
                    conffiles.add(line.split()[0])
    return installed, conffiles


def parse_apk(text: str) -> tuple[dict[str, str], dict[str, tuple[str, str | None]]]:
    """Installed apk packages and ``{path: (package, Q1 sha1)}`` of their files."""
    installed: dict[str, str] = {}
    files: dict[str, tuple[str, str | None]] = {}
    for block in re.split(r"\n\s*\n", text):
        name = directory = None
        last = None
        for line in block.splitlines():
            key, _, value = line.partition(":")
            if key == "P":
                name = value
            elif key == "V" and name:
                installed[name] = value
            elif key == "F":
                directory = value
            elif key == "R" and name:
                last = f"/{directory}/{value}" if directory else f"/{value}"
                files[last] = (name, None)
            elif key == "Z" and last and name:
                files[last] = (name, value)
    return installed, files


def parse_rpmdb(data: bytes) -> dict[str, str]:
    """``{name: version-release}`` from the bytes of an rpm sqlite database."""
    with tempfile.NamedTemporaryFile(suffix=".sqlite") as copy:
        copy.write(data)
        copy.flush()
        db = sqlite3.connect(f"file:{copy.name}?mode=ro", uri=True)
        try:
            blobs = [row[0] for row in db.execute("SELECT blob FROM Packages")]
        finally:
            db.close()
    installed = {}
    for blob in blobs:
        tags = _rpm_header(blob)
        if 1000 in tags:
            installed[tags[1000]] = f"{tags.get(1001, '')}-{tags.get(1002, '')}"
    return installed


def _rpm_header(blob: bytes) -> dict[int, str]:
    """String tags (name 1000, version 1001, release 1002) of an rpm header blob."""
    try:
        count, size = struct.unpack_from(">II", blob, 0)
        store = 8 + 16 * count
        found = {}
        for index in range(min(count, 4096)):
            tag, kind, offset, _ = struct.unpack_from(">IIiI", blob, 8 + 16 * index)
            if tag in (1000, 1001, 1002) and kind == 6 and 0 <= offset < size:
                raw = blob[store + offset : store + size].split(b"\0", 1)[0]
                found[tag] = raw.decode("utf-8", "replace")
        return found
    except struct.error:
        return {}


def package_drift(
    changes: Mapping[str, Change],
    baseline_paths: Iterable[str],
    before: Reader,
    after: Reader,
    executables: set[str],
) -> PackageDrift:
    """Package entries, findings on drifted paths, and the owned paths."""
    out = PackageDrift()
    paths = list(baseline_paths)
    _dpkg(changes, paths, before, after, executables, out)
    _apk(changes, before, after, executables, out)
    _rpm(changes, before, after, out)
    _language(changes, before, after, out)
    return out


def _db_finding(out: PackageDrift, path: str, manager: str) -> None:
    out.add(
        path,
        Finding(
            "package.db-changed",
            Severity.MEDIUM,
            ("T1565.001",),
            ("package-db",),
            f"{manager} package database changed",
        ),
    )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def _versions(
    manager: str,
    path: str,
    changes: Mapping[str, Change],
    before: Reader,
    after: Reader,
    parse: Callable[[bytes], dict[str, str]],
    out: PackageDrift,
) -> None:
    change = changes[path]
    _db_finding(out, path, manager)
    old = before(path) if change.before is not None else b""
    new = after(path) if change.after is not None else b""
    if old is None or new is None:
        side = "image" if old is None else "container"
        out.notes.append(f"{manager}: {path} of the {side} not readable: versions not compared")
        return
    entries = _compare(manager, parse(old) if old else {}, parse(new) if new else {})
    out.entries += entries
    if entries:
        out.findings[path][-1] = Finding(
            "package.db-changed",
            Severity.MEDIUM,
            ("T1565.001",),
            ("package-db",),
            f"{manager} package database changed: {len(entries)} package(s) "
            + ", ".join(f"{e['name']} {e['change']}" for e in entries[:5]),
        )


def _mismatch(
    out: PackageDrift, manager: str, path: str, package: str, version: str | None, exe: bool
) -> None:
    out.add(
        path,
        Finding(
            "package.file-mismatch",
            Severity.HIGH if exe else Severity.MEDIUM,
            ("T1554",) if exe else ("T1565.001",),
            ("package-file-modified",),
            f"owned by {manager} package {package}; its checksum no longer matches",
        ),
    )
    for entry in out.entries:
        if (entry["manager"], entry["name"], entry["change"]) == (manager, package, "modified"):
            entry["files"].append(path)
            return
    out.entries.append(
        {
            "manager": manager,
            "name": package,
            "change": "modified",
            "before": version,
            "after": version,
            "files": [path],
            "severity": (Severity.HIGH if exe else Severity.MEDIUM).value,
        }
    )


def _own(out: PackageDrift, paths: Iterable[str]) -> None:
    if out.owned is None:
        out.owned = set()
    out.owned.update(paths)


def _dpkg(
    changes: Mapping[str, Change],
    paths: list[str],
    before: Reader,
    after: Reader,
    executables: set[str],
    out: PackageDrift,
) -> None:
    has_db = DPKG_STATUS in changes or DPKG_STATUS in paths
    if not has_db:
        return
    if DPKG_STATUS in changes:
        _versions(
            "dpkg",
            DPKG_STATUS,
            changes,
            before,
            after,
            lambda raw: parse_dpkg_status(raw.decode("utf-8", "replace"))[0],
            out,
        )
    status = _text(after(DPKG_STATUS))
    installed, conffiles = parse_dpkg_status(status) if status else ({}, set())
    owners: dict[str, tuple[str, str]] = {}
    lists = {p for p in paths if p.startswith(DPKG_INFO) and p.endswith(".md5sums")}
    lists |= {
        p
        for p, c in changes.items()
        if p.startswith(DPKG_INFO) and p.endswith(".md5sums") and c.after is not None
    }
    for listing in sorted(lists):
        text = _text(after(listing))
        if text is None:
            continue
        package = listing[len(DPKG_INFO) : -len(".md5sums")]
        for line in text.splitlines():
            digest, _, name = line.partition("  ")
            if name:
                owners["/" + name.lstrip("/")] = (package, digest.strip())
    _own(out, [*owners, *conffiles])
    for path, change in changes.items():
        if change.change is not ChangeKind.MODIFIED or path not in owners:
            continue
        package, expected = owners[path]
        data = after(path)
        if data is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() != expected:
            version = installed.get(package) or next(
                (v for k, v in installed.items() if k.split(":")[0] == package), None
            )
            _mismatch(out, "dpkg", path, package, version, path in executables)


def _apk(
    changes: Mapping[str, Change],
    before: Reader,
    after: Reader,
    executables: set[str],
    out: PackageDrift,
) -> None:
    if APK_DB in changes:
        _versions(
            "apk",
            APK_DB,
            changes,
            before,
            after,
            lambda raw: parse_apk(raw.decode("utf-8", "replace"))[0],
            out,
        )
    text = _text(after(APK_DB))
    if text is None:
        return
    installed, files = parse_apk(text)
    _own(out, files)
    for path, change in changes.items():
        if change.change is not ChangeKind.MODIFIED or path not in files:
            continue
        package, checksum = files[path]
        data = after(path)
        if data is None or not checksum or not checksum.startswith("Q1"):
            continue
        digest = (
            "Q1" + base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()
        )
        if digest != checksum:
            _mismatch(out, "apk", path, package, installed.get(package), path in executables)


def _rpm(changes: Mapping[str, Change], before: Reader, after: Reader, out: PackageDrift) -> None:
    for path in RPM_DBS:
        if path in changes:
            try:
                _versions("rpm", path, changes, before, after, parse_rpmdb, out)
            except sqlite3.Error as exc:
                out.notes.append(f"rpm: {path} not readable as sqlite: {exc}")


def _language(
    changes: Mapping[str, Change], before: Reader, after: Reader, out: PackageDrift
) -> None:
    for manager, pattern, parse in (
        ("python", _DIST_INFO, _python_version),
        ("npm", _NODE, _npm_version),
    ):
        old: dict[str, str] = {}
        new: dict[str, str] = {}
        for path, change in changes.items():
            match = pattern.fullmatch(path)
            if match is None or (manager == "npm" and "/node_modules/" in match.group(1)[:-13]):
                continue  # npm: only packages directly below a top node_modules
            for side, read, facts in ((old, before, change.before), (new, after, change.after)):
                raw = read(path) if facts is not None and facts.kind == "file" else None
                parsed = parse(raw) if raw else None
                if parsed:
                    side[parsed[0]] = parsed[1]
        out.entries += _compare(manager, old, new)


def _python_version(raw: bytes) -> tuple[str, str] | None:
    headers = HeaderParser().parsestr(raw[:65536].decode("utf-8", "replace"), headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    return (re.sub(r"[-_.]+", "-", name).lower(), version) if name and version else None


def _npm_version(raw: bytes) -> tuple[str, str] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        return data["name"], str(data.get("version", ""))
    return None
