"""Package drift and provenance over databases written here: dpkg (merged /usr, diversions,
conffiles, maintainer-script links), apk, rpm (a database made by Debian's own rpm),
Python RECORDs and npm; versions checked against dpkg, purls against packageurl-python."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from packageurl import PackageURL

from drifttools.analysis.classifiers.packages import PackageDrift, package_drift
from drifttools.analysis.classifiers.packages.purl import purl
from drifttools.analysis.classifiers.packages.versions import compare_versions
from drifttools.analysis.classifiers.processes import process_findings
from drifttools.models import (
    BaselineEntry,
    Change,
    ChangeKind,
    FileFacts,
    ProcessRecord,
    RecordCheck,
    Severity,
)

STATUS = "/var/lib/dpkg/status"
INFO = "/var/lib/dpkg/info"
CAT = b"\x7fELF cat of coreutils"
ID = b"\x7fELF id of coreutils"
JQ = b"\x7fELF jq"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _facts(data: bytes | None = None, *, kind: str = "file", target: str | None = None):
    if kind != "file":
        return FileFacts(kind, 0o777 if kind == "symlink" else 0o755, 0, 0, 0, 1, target=target)
    assert data is not None
    return FileFacts("file", 0o755, 0, 0, len(data), 1, hashlib.sha256(data).hexdigest())


class Tree:
    """An image and a container as paths with bytes (or symlinks), and the drift between."""

    def __init__(self, image: dict[str, bytes | str]) -> None:
        self.image = dict(image)
        self.container = dict(image)

    def facts(self, value: bytes | str) -> FileFacts:
        if isinstance(value, str):  # a symlink target
            return _facts(kind="symlink", target=value)
        return _facts(value)

    def drift(
        self, binaries: set[str] | frozenset[str] = frozenset(), cap: int | None = None
    ) -> PackageDrift:
        """Package drift, the container's files read up to ``cap`` bytes."""
        changes = {}
        for path in sorted(self.image.keys() | self.container.keys()):
            old, new = self.image.get(path), self.container.get(path)
            if old == new:
                continue
            kind = (
                ChangeKind.ADDED
                if old is None
                else ChangeKind.DELETED
                if new is None
                else ChangeKind.MODIFIED
            )
            changes[path] = Change(
                path,
                kind,
                self.facts(old) if old is not None else None,
                self.facts(new) if new is not None else None,
            )
        baseline = {p: BaselineEntry(0, self.facts(v)) for p, v in self.image.items()}

        def reader(side: dict[str, bytes | str], limit: int | None = None):
            return lambda path: v[:limit] if isinstance(v := side.get(path), bytes) else None

        return package_drift(
            changes, baseline, reader(self.image), reader(self.container, cap), binaries
        )


def _status(*packages: tuple[str, str, str], conffiles: str = "") -> bytes:
    blocks = [
        f"Package: {name}\nStatus: install ok installed\nArchitecture: {arch}\nVersion: {version}\n"
        + (conffiles if name == "procps" else "")
        for name, arch, version in packages
    ]
    return "\n".join(blocks).encode()


COREUTILS = ("coreutils", "amd64", "9.1-1")


def _bookworm() -> Tree:
    """A merged-/usr image: coreutils lists bin/cat (as bookworm does) and usr/bin/id."""
    return Tree(
        {
            "/bin": "usr/bin",
            "/lib": "usr/lib",
            "/usr/bin/cat": CAT,
            "/usr/bin/id": ID,
            "/usr/lib/os-release": b'PRETTY_NAME="Debian 12"\nID=debian\n',
            "/etc/os-release": "../usr/lib/os-release",
            STATUS: _status(COREUTILS),
            f"{INFO}/coreutils.md5sums": f"{_md5(CAT)}  bin/cat\n{_md5(ID)}  usr/bin/id\n".encode(),
            f"{INFO}/coreutils.list": b"/.\n/bin\n/bin/cat\n/usr/bin/id\n",
        }
    )


def test_merged_usr_a_trojan_under_an_alias_is_checked_against_its_package() -> None:
    tree = _bookworm()
    tree.container["/usr/bin/cat"] = b"#!/bin/sh\nexec /tmp/.x\n"
    tree.container["/usr/bin/id"] = b"#!/bin/sh\nexec /tmp/.y\n"
    drift = tree.drift(binaries={"/usr/bin/cat", "/usr/bin/id"})
    cat, ident = drift.provenance["/usr/bin/cat"], drift.provenance["/usr/bin/id"]
    assert cat.record is RecordCheck.MISMATCH and cat.listed_as == "/bin/cat"
    assert ident.record is RecordCheck.MISMATCH and ident.listed_as is None
    assert cat.package is not None and cat.package.name == "coreutils" and not cat.runtime
    assert cat.image_package == cat.package
    for path in ("/usr/bin/cat", "/usr/bin/id"):
        [finding] = drift.findings[path]
        assert (finding.rule, finding.severity, finding.attack) == (
            "package.file-mismatch",
            Severity.HIGH,
            ("T1554",),
        )
    [record] = drift.records
    assert (record.name, record.change, record.architecture) == ("coreutils", "modified", "amd64")
    assert record.mismatched == ("/usr/bin/cat", "/usr/bin/id")
    assert record.severity is Severity.HIGH
    assert record.purl == "pkg:deb/debian/coreutils@9.1-1?arch=amd64"


def test_a_file_read_short_of_its_size_is_not_judged() -> None:
    tree = _bookworm()
    tree.container["/usr/bin/cat"] = CAT + b"\0" * 2000  # more than the read cap
    drift = tree.drift(binaries={"/usr/bin/cat"}, cap=1000)
    assert drift.provenance["/usr/bin/cat"].record is RecordCheck.UNCHECKED
    assert "/usr/bin/cat" not in drift.findings
    assert "the container's /usr/bin/cat is larger than the read cap: not read" in drift.notes


def test_a_local_diversion_moves_the_package_file() -> None:
    tree = _bookworm()
    tree.container["/usr/bin/id.distrib"] = ID  # dpkg-divert --local --rename --add /bin/id
    tree.container["/usr/bin/id"] = b"#!/bin/sh\necho wrapped\n"
    tree.container["/var/lib/dpkg/diversions"] = b"/bin/id\n/bin/id.distrib\n:\n"
    drift = tree.drift(binaries={"/usr/bin/id", "/usr/bin/id.distrib"})
    moved = drift.provenance["/usr/bin/id.distrib"]
    assert moved.record is RecordCheck.MATCH and moved.package is not None
    assert (moved.package.name, moved.listed_as) == ("coreutils", "/usr/bin/id")
    replacement = drift.provenance["/usr/bin/id"]
    assert replacement.package is None and replacement.record is RecordCheck.DIVERTED
    assert replacement.image_package is not None and replacement.image_package.name == "coreutils"
    [finding] = drift.findings["/usr/bin/id"]
    assert (finding.rule, finding.severity) == ("package.diverted", Severity.MEDIUM)
    assert "/usr/bin/id.distrib" not in drift.findings and drift.records == []


PROCPS_INIT = b"#!/bin/sh\n### BEGIN INIT INFO\n# Provides: procps\n"
LIBPROC = b"\x7fELF libproc2"
TOP = b"\x7fELF top"


def _with_procps(tree: Tree, top: bytes = TOP) -> None:
    """What `dpkg -i procps_*.deb libproc2-0_*.deb` leaves behind."""
    conffiles = f"Conffiles:\n /etc/init.d/procps {_md5(PROCPS_INIT)}\n"
    tree.container[STATUS] = _status(
        COREUTILS,
        ("procps", "amd64", "2:4.0.2-3"),
        ("libproc2-0", "amd64", "2:4.0.2-3"),
        conffiles=conffiles,
    )
    tree.container[f"{INFO}/procps.md5sums"] = f"{_md5(TOP)}  usr/bin/top\n".encode()
    tree.container[f"{INFO}/procps.list"] = (
        b"/.\n/etc/init.d/procps\n/usr/bin/top\n/usr/bin/pidwait\n"
    )
    tree.container[f"{INFO}/libproc2-0:amd64.md5sums"] = (
        f"{_md5(LIBPROC)}  lib/x86_64-linux-gnu/libproc2.so.0.0.1\n".encode()
    )
    tree.container[f"{INFO}/libproc2-0:amd64.list"] = b"/lib/x86_64-linux-gnu/libproc2.so.0\n"
    tree.container["/usr/bin/top"] = top
    tree.container["/usr/bin/pidwait"] = "top"  # listed symlink of the same package
    tree.container["/etc/init.d/procps"] = PROCPS_INIT
    tree.container["/etc/rcS.d/S01procps"] = "../init.d/procps"  # made by update-rc.d
    tree.container["/usr/lib/x86_64-linux-gnu/libproc2.so.0.0.1"] = LIBPROC
    tree.container["/usr/lib/x86_64-linux-gnu/libproc2.so.0"] = "libproc2.so.0.0.1"


def test_a_package_added_at_runtime_is_runtime_drift_grouped_under_it() -> None:
    tree = _bookworm()
    _with_procps(tree)
    drift = tree.drift(binaries={"/usr/bin/top", "/usr/lib/x86_64-linux-gnu/libproc2.so.0.0.1"})
    records = {r.name: r for r in drift.records}
    assert set(records) == {"procps", "libproc2-0"}
    procps = records["procps"]
    assert (procps.change, procps.before, procps.after) == ("added", None, "2:4.0.2-3")
    assert procps.purl == "pkg:deb/debian/procps@2:4.0.2-3?arch=amd64"
    assert procps.severity is Severity.MEDIUM and procps.mismatched == ()
    assert set(procps.files) == {
        "/etc/init.d/procps",
        "/etc/rcS.d/S01procps",
        "/usr/bin/pidwait",
        "/usr/bin/top",
        f"{INFO}/procps.list",
        f"{INFO}/procps.md5sums",
    }
    assert "/usr/lib/x86_64-linux-gnu/libproc2.so.0" in records["libproc2-0"].files
    expected = {
        "/usr/bin/top": RecordCheck.MATCH,
        "/etc/init.d/procps": RecordCheck.MATCH,
        "/etc/rcS.d/S01procps": RecordCheck.LINK,
        "/usr/bin/pidwait": RecordCheck.LINK,
        f"{INFO}/procps.md5sums": RecordCheck.METADATA,
        "/usr/lib/x86_64-linux-gnu/libproc2.so.0.0.1": RecordCheck.MATCH,
    }
    for path, record in expected.items():
        provenance = drift.provenance[path]
        assert provenance.record is record and provenance.runtime_drift, (path, provenance)
        assert provenance.image_package is None
    [status] = drift.findings[STATUS]
    assert status.rule == "package.db-changed" and "procps added" in status.detail


def test_runtime_drift_is_capped_at_medium_unless_something_else_is_suspicious() -> None:
    from drifttools.models import Finding

    tree = _bookworm()
    _with_procps(tree)
    drift = tree.drift()
    service = Finding("persistence.service", Severity.HIGH, ("T1543",), ("service",), "init")
    setid = Finding("tampering.setid", Severity.HIGH, ("T1548.001",), ("setuid",), "setuid")
    change = Change("/etc/rcS.d/S01procps", ChangeKind.ADDED, None, _facts(kind="symlink"))
    found, tags = drift.judge(change, [service, setid])
    assert [f.severity for f in found] == [Severity.MEDIUM, Severity.HIGH]
    assert tags == ["runtime-package"]
    stray = Change("/tmp/x", ChangeKind.ADDED, None, _facts(b"x"))
    assert drift.judge(stray, [service]) == ([service], ["unowned"])


def test_a_trojan_inside_a_runtime_package_keeps_its_severity() -> None:
    tree = _bookworm()
    _with_procps(tree, top=b"#!/bin/sh\nexec /tmp/miner\n")
    drift = tree.drift(binaries={"/usr/bin/top"})
    top = drift.provenance["/usr/bin/top"]
    assert top.record is RecordCheck.MISMATCH and top.runtime and not top.runtime_drift
    assert drift.findings["/usr/bin/top"][0].severity is Severity.HIGH
    procps = next(r for r in drift.records if r.name == "procps")
    assert procps.mismatched == ("/usr/bin/top",) and procps.severity is Severity.HIGH
    assert "/usr/bin/pidwait" not in drift.provenance or not drift.runtime_package(
        "/usr/bin/pidwait"
    )


def test_an_upgrade_and_an_edited_conffile() -> None:
    tree = _bookworm()
    _with_procps(tree)
    tree.image = dict(tree.container)  # procps is in the image now
    new_top = b"\x7fELF top 4.0.4"
    tree.container[STATUS] = tree.image[STATUS].replace(  # type: ignore[union-attr]
        b"Package: procps\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2:4.0.2-3",
        b"Package: procps\nStatus: install ok installed\nArchitecture: amd64\n"
        b"Version: 2:4.0.4-1~bpo12+1",
    )
    tree.container[f"{INFO}/procps.md5sums"] = f"{_md5(new_top)}  usr/bin/top\n".encode()
    tree.container["/usr/bin/top"] = new_top
    tree.container["/etc/init.d/procps"] = PROCPS_INIT + b"# tuned by the admin\n"
    drift = tree.drift(binaries={"/usr/bin/top"})
    [record] = drift.records
    assert (record.name, record.change) == ("procps", "upgraded")
    assert (record.before, record.after) == ("2:4.0.2-3", "2:4.0.4-1~bpo12+1")
    assert record.purl == "pkg:deb/debian/procps@2:4.0.4-1~bpo12%2B1?arch=amd64"
    assert drift.provenance["/usr/bin/top"].runtime_drift
    conffile = drift.provenance["/etc/init.d/procps"]
    assert conffile.record is RecordCheck.CONFFILE_EDITED and not conffile.runtime_drift
    assert "/etc/init.d/procps" not in drift.findings


def _process(**changes: object) -> ProcessRecord:
    base = dict(
        pid=10,
        ns_pid=7,
        ppid=1,
        uid=0,
        euid=0,
        gid=0,
        egid=0,
        started_at="2026-01-01T00:00:00Z",
        start_ticks=1,
        comm="top",
        cmdline=("top", "-b"),
        state="S",
        exe="/usr/bin/top",
        exe_state="present",
        exe_sha256=hashlib.sha256(TOP).hexdigest(),
        exe_size=len(TOP),
        cwd="/",
        libraries=(
            "/usr/lib/x86_64-linux-gnu/libproc2.so.0.0.1",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ),
        tags=("exe-not-in-image", "library-not-in-image"),
    )
    return ProcessRecord(**{**base, **changes})  # type: ignore[arg-type]


def test_a_process_of_a_runtime_package_is_lowered_to_medium() -> None:
    tree = _bookworm()
    tree.image["/usr/lib/x86_64-linux-gnu/libc.so.6"] = b"\x7fELF libc"
    tree.container["/usr/lib/x86_64-linux-gnu/libc.so.6"] = b"\x7fELF libc"
    _with_procps(tree)
    drift = tree.drift()
    findings, tags = process_findings(_process(), set(), drift)
    assert {f.rule: f.severity for f in findings} == {
        "process.exe-not-in-image": Severity.MEDIUM,
        "process.library-not-in-image": Severity.MEDIUM,
    }
    assert "runtime-package" in tags and "procps 2:4.0.2-3" in findings[0].detail
    other = hashlib.sha256(b"something else").hexdigest()  # not the bytes the package has
    findings, _ = process_findings(_process(exe_sha256=other), set(), drift)
    assert {f.rule: f.severity for f in findings}["process.exe-not-in-image"] is Severity.HIGH
    stray = _process(libraries=("/usr/lib/x86_64-linux-gnu/libproc2.so.0.0.1", "/tmp/.l.so"))
    findings, _ = process_findings(stray, set(), drift)
    assert {f.rule: f.severity for f in findings}["process.library-not-in-image"] is Severity.HIGH


def test_a_process_running_what_a_runtime_upgrade_replaced_is_lowered() -> None:
    """dpkg renames an upgrade's files over the ones a running process has mapped."""
    libz, new_libz = b"\x7fELF libz 1", b"\x7fELF libz 1+deb12u1"
    zlib = ("zlib1g", "amd64", "1:1.2.13.dfsg-1")
    library = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
    md5sums = f"{INFO}/zlib1g:amd64.md5sums"
    tree = _bookworm()
    tree.image.update({STATUS: _status(COREUTILS, zlib), library: libz})
    tree.image[md5sums] = f"{_md5(libz)}  lib/x86_64-linux-gnu/libz.so.1.2.13\n".encode()
    tree.container = dict(tree.image)
    tree.container[STATUS] = _status(COREUTILS, (*zlib[:2], "1:1.2.13.dfsg-1+deb12u1"))
    tree.container[md5sums] = f"{_md5(new_libz)}  lib/x86_64-linux-gnu/libz.so.1.2.13\n".encode()
    tree.container[library] = new_libz
    drift = tree.drift(binaries={library})
    app = _process(
        exe="/usr/bin/cat",
        exe_sha256=hashlib.sha256(CAT).hexdigest(),
        libraries=(library + " (deleted)",),
        tags=("library-deleted",),
    )
    [finding] = process_findings(app, set(), drift)[0]
    assert (finding.rule, finding.severity) == ("process.library-deleted", Severity.MEDIUM)
    assert "zlib1g 1:1.2.13.dfsg-1+deb12u1" in finding.detail
    gone = _process(libraries=("/tmp/.hidden.so (deleted)",), tags=("library-deleted",))
    [finding] = process_findings(gone, set(), drift)[0]
    assert finding.severity is Severity.HIGH  # not an image library a package replaced


def _q1(data: bytes) -> str:
    return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def test_apk_versions_files_and_checksum_mismatch() -> None:
    good = b"busybox binary"
    db = "/lib/apk/db/installed"
    old = f"P:busybox\nV:1.36.1-r0\nA:x86_64\nF:bin\nR:busybox\nZ:{_q1(good)}\n\nP:zlib\nV:1.3-r0\n"
    new = f"P:busybox\nV:1.36.1-r0\nA:x86_64\nF:bin\nR:busybox\nZ:{_q1(good)}\n\nP:curl\nV:8.5-r0\n"
    tree = Tree({db: old.encode(), "/bin/busybox": good, "/etc/os-release": b"ID=alpine\n"})
    tree.container.update({db: new.encode(), "/bin/busybox": b"trojan", "/tmp/x": b"x"})
    drift = tree.drift(binaries={"/bin/busybox"})
    got = {(r.name, r.change): r for r in drift.records}
    assert set(got) == {("zlib", "removed"), ("curl", "added"), ("busybox", "modified")}
    assert got[("busybox", "modified")].purl == "pkg:apk/alpine/busybox@1.36.1-r0?arch=x86_64"
    [finding] = drift.findings["/bin/busybox"]
    assert finding.rule == "package.file-mismatch" and finding.attack == ("T1554",)
    assert drift.known and "/tmp/x" not in drift.provenance


RPM_SPEC = """\
Name: {name}
Version: {version}
Release: 3
Summary: test
License: MIT
BuildArch: noarch
%description
test
%install
mkdir -p %{{buildroot}}/usr/bin %{{buildroot}}/etc
printf '#!/bin/sh\\necho {name}\\n' > %{{buildroot}}/usr/bin/{name}
chmod 755 %{{buildroot}}/usr/bin/{name}
echo 'greeting=hi' > %{{buildroot}}/etc/{name}.conf
%files
/usr/bin/{name}
%config(noreplace) /etc/{name}.conf
"""


def _rpm(work: Path, name: str, version: str) -> Path:
    spec = work / f"{name}.spec"
    spec.write_text(RPM_SPEC.format(name=name, version=version))
    subprocess.run(
        ["rpmbuild", "-bb", "--define", f"_topdir {work / 'top'}", str(spec)],
        check=True,
        capture_output=True,
    )
    return next((work / "top" / "RPMS" / "noarch").glob(f"{name}-{version}-*.rpm"))


def _rpm_install(root: Path, package: Path) -> None:
    subprocess.run(
        ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", str(package)],
        check=True,
        capture_output=True,
    )


def _read_tree(root: Path) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for path in root.rglob("*"):
        name = "/" + str(path.relative_to(root))
        if path.is_symlink():
            found[name] = str(path.readlink())
        elif path.is_file():
            found[name] = path.read_bytes()
    return found


def test_rpm_database_made_by_rpm_itself(tmp_path: Path) -> None:
    """rpm --root installs into a root as on Fedora: the file digests come from the database."""
    tool, extra = _rpm(tmp_path, "hello-tool", "1.2"), _rpm(tmp_path, "extra-tool", "2.0")
    image = tmp_path / "image"
    subprocess.run(
        ["rpm", "--root", str(image), "--dbpath", "/var/lib/rpm", "--initdb"], check=True
    )
    _rpm_install(image, tool)
    (image / "etc" / "os-release").write_text("ID=fedora\n")
    tree = Tree(_read_tree(image))
    container = tmp_path / "container"
    shutil.copytree(image, container, symlinks=True)
    _rpm_install(container, extra)
    (container / "usr" / "bin" / "hello-tool").write_text("#!/bin/sh\nexec /tmp/.m\n")
    (container / "etc" / "hello-tool.conf").write_text("greeting=hello\n")
    tree.container = _read_tree(container)
    drift = tree.drift(binaries={"/usr/bin/hello-tool", "/usr/bin/extra-tool"})
    records = {(r.name, r.change): r for r in drift.records}
    added = records[("extra-tool", "added")]
    assert (added.after, added.architecture) == ("2.0-3", "noarch")
    assert added.purl == "pkg:rpm/fedora/extra-tool@2.0-3?arch=noarch"
    assert drift.provenance["/usr/bin/extra-tool"].runtime_drift
    assert records[("hello-tool", "modified")].mismatched == ("/usr/bin/hello-tool",)
    assert drift.provenance["/usr/bin/hello-tool"].record is RecordCheck.MISMATCH
    assert drift.findings["/usr/bin/hello-tool"][0].severity is Severity.HIGH
    assert drift.provenance["/etc/hello-tool.conf"].record is RecordCheck.CONFFILE_EDITED


def _wheel_record(site: str, files: dict[str, bytes]) -> bytes:
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    return ("\n".join(lines) + "\nsix-1.17.0.dist-info/RECORD,,\n").encode()


def test_python_record_and_console_scripts() -> None:
    site = "/usr/local/lib/python3.11/dist-packages"
    old_meta = b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n"
    new_meta = b"Metadata-Version: 2.1\nName: six\nVersion: 1.17.0\n"
    six = b"# six 1.17.0\n"
    script = b"#!/usr/bin/python3\nimport six\n"
    tree = Tree(
        {
            f"{site}/six-1.16.0.dist-info/METADATA": old_meta,
            f"{site}/six.py": b"# six 1.16.0\n",
        }
    )
    record = _wheel_record(
        site,
        {"six.py": six, "../../../bin/six-tool": script, "six-1.17.0.dist-info/METADATA": new_meta},
    )
    del tree.container[f"{site}/six-1.16.0.dist-info/METADATA"]
    tree.container.update(
        {
            f"{site}/six-1.17.0.dist-info/METADATA": new_meta,
            f"{site}/six-1.17.0.dist-info/RECORD": record,
            f"{site}/six.py": six,
            "/usr/local/bin/six-tool": script,
        }
    )
    drift = tree.drift()
    [upgrade] = drift.records
    assert (upgrade.manager, upgrade.name, upgrade.change) == ("python", "six", "upgraded")
    assert (upgrade.purl, upgrade.location) == ("pkg:pypi/six@1.17.0", site)
    assert drift.provenance["/usr/local/bin/six-tool"].runtime_drift
    assert drift.provenance[f"{site}/six.py"].record is RecordCheck.MATCH
    assert drift.provenance[f"{site}/six-1.17.0.dist-info/RECORD"].record is RecordCheck.METADATA
    assert drift.provenance[f"{site}/six-1.16.0.dist-info/METADATA"].image_package is not None


def test_a_python_distribution_a_system_package_installed_is_reported_once() -> None:
    site = "/usr/lib/python3/dist-packages"
    meta = b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n"
    tree = _bookworm()
    tree.container[f"{site}/six-1.16.0.dist-info/METADATA"] = meta
    tree.container[STATUS] = _status(COREUTILS, ("python3-six", "all", "1.16.0-4"))
    tree.container[f"{INFO}/python3-six.md5sums"] = (
        f"{_md5(meta)}  usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA\n".encode()
    )
    drift = tree.drift()
    [record] = drift.records
    assert (record.manager, record.name, record.change) == ("dpkg", "python3-six", "added")
    owner = drift.provenance[f"{site}/six-1.16.0.dist-info/METADATA"].package
    assert owner is not None and (owner.manager, owner.architecture) == ("dpkg", "all")


def test_npm_packages_own_their_directories() -> None:
    left = json.dumps({"name": "left-pad", "version": "1.3.0"}).encode()
    scoped = json.dumps({"name": "@babel/core", "version": "7.24.0"}).encode()
    tree = Tree({"/app/package.json": b"{}"})
    tree.container.update(
        {
            "/app/node_modules/left-pad/package.json": left,
            "/app/node_modules/left-pad/index.js": b"module.exports = 1\n",
            "/app/node_modules/@babel/core/package.json": scoped,
        }
    )
    drift = tree.drift()
    assert {(r.name, r.change, r.purl) for r in drift.records} == {
        ("left-pad", "added", "pkg:npm/left-pad@1.3.0"),
        ("@babel/core", "added", "pkg:npm/%40babel/core@7.24.0"),
    }
    index = drift.provenance["/app/node_modules/left-pad/index.js"]
    assert index.record is RecordCheck.UNCHECKED and not index.runtime_drift
    assert not drift.known  # no system package database: nothing is "unowned"


VERSIONS = [
    "1.0",
    "1.0~rc1",
    "1.0-1",
    "1.0-1~bpo12+1",
    "1:0.9",
    "1.10",
    "1.9",
    "2.0a",
    "2.0",
    "2.0+deb12u1",
    "6.9.8-1",
    "3.0.20-1~deb12u2",
    "3.0.22-1~deb12u2",
]


def test_versions_order_as_dpkg_orders_them() -> None:
    for a, b in itertools.combinations(VERSIONS, 2):
        ours = compare_versions(a, b)
        relation = "lt" if ours < 0 else "eq" if ours == 0 else "gt"
        oracle = subprocess.run(["dpkg", "--compare-versions", a, relation, b], check=False)
        assert oracle.returncode == 0, (a, relation, b)


@pytest.mark.parametrize(
    ("manager", "name", "version", "namespace", "qualifiers"),
    [
        ("dpkg", "jq", "1.6-2.1+deb12u3", "debian", {"arch": "amd64"}),
        ("dpkg", "procps", "2:4.0.2-3", "debian", {"arch": "amd64"}),
        ("python", "Charset_Normalizer", "3.3.2", None, {}),
        ("npm", "@babel/core", "7.0.0", None, {}),
        ("rpm", "curl", "7.50.3-1.fc25", "fedora", {"arch": "i386", "epoch": "1"}),
        ("apk", "curl", "8.5.0-r0", "alpine", {"arch": "x86_64"}),
        ("dpkg", "a b%c", "1.0~rc1 x", "debian", {"arch": "all"}),
    ],
)
def test_purls_are_the_ones_packageurl_writes(
    manager: str, name: str, version: str, namespace: str | None, qualifiers: dict[str, str]
) -> None:
    kind = {"dpkg": "deb", "python": "pypi"}.get(manager, manager)
    if kind == "npm" and "/" in name:
        namespace, name_only = name.split("/")
    else:
        name_only = name
    oracle = PackageURL(kind, namespace, name_only, version, qualifiers or None).to_string()
    assert purl(manager, name, version, namespace=namespace, qualifiers=qualifiers) == oracle
