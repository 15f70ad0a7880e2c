"""Package databases parsed from bytes written here: dpkg, apk, rpm (sqlite), Python, npm."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import struct
from pathlib import Path

from drifttools.analysis.classifiers.packages import (
    package_drift,
    parse_apk,
    parse_dpkg_status,
    parse_rpmdb,
    version_key,
)
from drifttools.models import Change, ChangeKind, FileFacts


def _facts(data: bytes) -> FileFacts:
    return FileFacts("file", 0o644, 0, 0, len(data), 0, hashlib.sha256(data).hexdigest())


def _change(path: str, kind: ChangeKind, old: bytes | None, new: bytes | None) -> Change:
    return Change(
        path,
        kind,
        _facts(old) if old is not None else None,
        _facts(new) if new is not None else None,
    )


def test_dpkg_status_and_conffiles() -> None:
    installed, conffiles = parse_dpkg_status(
        "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:2.3-1\n"
        "Conffiles:\n /etc/a.conf 00ff\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: b\nStatus: install ok installed\nArchitecture: all\nVersion: 5\n"
    )
    assert installed == {"a:amd64": "1:2.3-1", "b": "5"}
    assert conffiles == {"/etc/a.conf"}
    assert version_key("1.10") > version_key("1.9") and version_key("2.0") > version_key("1.99")


def test_apk_versions_files_and_checksum_mismatch() -> None:
    good = b"busybox binary"
    q1 = "Q1" + base64.b64encode(hashlib.sha1(good).digest()).decode()
    old_db = f"P:busybox\nV:1.36.1-r0\nF:bin\nR:busybox\nZ:{q1}\n\nP:zlib\nV:1.3-r0\n"
    new_db = f"P:busybox\nV:1.36.1-r0\nF:bin\nR:busybox\nZ:{q1}\n\nP:curl\nV:8.5-r0\n"
    installed, files = parse_apk(old_db)
    assert installed == {"busybox": "1.36.1-r0", "zlib": "1.3-r0"}
    assert files == {"/bin/busybox": ("busybox", q1)}
    content = {"/lib/apk/db/installed": new_db.encode(), "/bin/busybox": b"trojan"}
    changes = {
        "/lib/apk/db/installed": _change(
            "/lib/apk/db/installed", ChangeKind.MODIFIED, old_db.encode(), new_db.encode()
        ),
        "/bin/busybox": _change("/bin/busybox", ChangeKind.MODIFIED, good, b"trojan"),
        "/tmp/x": _change("/tmp/x", ChangeKind.ADDED, None, b"x"),
    }
    drift = package_drift(
        changes, [], {"/lib/apk/db/installed": old_db.encode()}.get, content.get, {"/bin/busybox"}
    )
    got = {(e["name"], e["change"]) for e in drift.entries}
    assert got == {("zlib", "removed"), ("curl", "added"), ("busybox", "modified")}
    [finding] = drift.findings["/bin/busybox"]
    assert finding.rule == "package.file-mismatch" and finding.attack == ("T1554",)
    assert drift.owned is not None and "/bin/busybox" in drift.owned and "/tmp/x" not in drift.owned


def _rpm_header(**tags: str) -> bytes:
    numbers = {"name": 1000, "version": 1001, "release": 1002}
    store = b""
    entries = b""
    for key, value in tags.items():
        entries += struct.pack(">IIiI", numbers[key], 6, len(store), 1)
        store += value.encode() + b"\0"
    return struct.pack(">II", len(tags), len(store)) + entries + store


def test_rpm_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "rpmdb.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB NOT NULL)")
    for header in (
        _rpm_header(name="bash", version="5.2", release="1.el9"),
        _rpm_header(name="openssl", version="3.0.7", release="2.el9"),
    ):
        db.execute("INSERT INTO Packages (blob) VALUES (?)", (header,))
    db.commit()
    db.close()
    assert parse_rpmdb(path.read_bytes()) == {"bash": "5.2-1.el9", "openssl": "3.0.7-2.el9"}


def test_python_and_npm_packages_from_drifted_paths() -> None:
    site = "/usr/lib/python3/site-packages"
    old_meta = b"Metadata-Version: 2.1\nName: Requests\nVersion: 2.30.0\n"
    new_meta = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n"
    evil = b"Metadata-Version: 2.1\nName: evil_pkg\nVersion: 0.1\n"
    left = json.dumps({"name": "left-pad", "version": "1.3.0"}).encode()
    nested = json.dumps({"name": "inner", "version": "9"}).encode()
    files = {
        f"{site}/requests-2.30.0.dist-info/METADATA": (old_meta, None),
        f"{site}/requests-2.31.0.dist-info/METADATA": (None, new_meta),
        f"{site}/evil_pkg-0.1.dist-info/METADATA": (None, evil),
        "/app/node_modules/left-pad/package.json": (None, left),
        "/app/node_modules/left-pad/node_modules/inner/package.json": (None, nested),
    }
    changes = {}
    for path, (old, new) in files.items():
        kind = ChangeKind.ADDED if old is None else ChangeKind.DELETED
        changes[path] = _change(path, kind, old, new)
    before = {p: o for p, (o, _) in files.items() if o is not None}
    after = {p: n for p, (_, n) in files.items() if n is not None}
    drift = package_drift(changes, [], before.get, after.get, set())
    got = {(e["manager"], e["name"], e["change"], e["before"], e["after"]) for e in drift.entries}
    assert got == {
        ("python", "requests", "upgraded", "2.30.0", "2.31.0"),
        ("python", "evil-pkg", "added", None, "0.1"),
        ("npm", "left-pad", "added", None, "1.3.0"),
    }
