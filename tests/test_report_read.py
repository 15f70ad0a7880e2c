"""The report JSON read back (:mod:`drifttools.evidence.report_read`), without the engine.

The report is an offline diff of a rootfs written here (a dropped ELF, a miner config YARA
matches, a cron entry, a hostile name, a symlink, a rewrite, a deletion, a mode change),
with process evidence read from the host's /proc for this test's own process and a mount.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
from pathlib import Path

import drifttools
from drifttools.acquisition.processes import read_processes
from drifttools.evidence.report_read import report_from_dict
from drifttools.models import DriftReport, ErrorRecord, MountPoint
from tests.engine import BUSYBOX
from tests.reports import assert_valid_report
from tests.tarbuild import directory, file, layer_tar, legacy_archive

HOSTILE = "pi|pe%41\x1b[2J"
MINER_CONFIG = b"xmrig 6.21 --donate-level=1 randomx\nurl=stratum+tcp://pool.example.org:3333\n"


def _rootfs(root: Path) -> Path:
    """The image's files with drift: added, modified, changed in mode, deleted."""
    for name in ("etc", "etc/crontabs", "tmp", "proc"):
        (root / name).mkdir(parents=True)
        (root / name).chmod(0o755)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "motd").write_bytes(b"hi\n")
    (root / "etc" / "motd").chmod(0o600)
    (root / "etc" / "issue").write_bytes(b"rewritten\n")
    (root / "etc" / "issue").chmod(0o644)
    (root / "etc" / "crontabs" / "root").write_bytes(b"* * * * * /tmp/busybox.drop\n")
    shutil.copy(BUSYBOX, root / "tmp" / "busybox.drop")
    (root / "tmp" / "busybox.drop").chmod(0o755)
    (root / "tmp" / "miner.conf").write_bytes(MINER_CONFIG)
    (root / "tmp" / HOSTILE).write_bytes(b"x")
    (root / "tmp" / "link").symlink_to("/etc/passwd")
    return root


def _full_report(tmp_path: Path) -> DriftReport:
    """An offline report with every part a live one has: processes, sockets, mounts, posture."""
    layer = layer_tar(
        [
            directory("etc"),
            file("etc/motd", b"hi\n"),
            file("etc/issue", b"welcome\n"),
            file("etc/gone", b"gone\n"),
            directory("tmp", 0o1777),
            directory("proc"),
        ]
    )
    image = legacy_archive(tmp_path / "image.tar", [layer], steps=["COPY etc /etc"])
    report = drifttools.diff_offline(image=image.path, rootfs=_rootfs(tmp_path / "rootfs"))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        [me], sockets = read_processes([os.getpid()])
    dropped = next(c for c in report.changes if c.path == "/tmp/busybox.drop")
    classified = dataclasses.replace(
        me,
        tags=dropped.tags,
        severity=dropped.severity,
        attack=dropped.attack,
        findings=dropped.findings,
        magic=dropped.magic,
        content=dropped.content,
        yara=next(c for c in report.changes if c.path == "/tmp/miner.conf").yara,
    )
    shm = MountPoint("/dev/shm", "tmpfs", "shm", "/", "rw,nosuid,nodev,noexec", "tmpfs")
    details = {**report.target.details, "posture": {"privileged": False, "cap_add": []}}
    return dataclasses.replace(
        report,
        target=dataclasses.replace(report.target, pid=me.pid, details=details),
        processes=(classified,),
        sockets=sockets,
        mounts=(shm,),
        errors=(ErrorRecord("/tmp/unreadable", "permission denied"),),
        notes=(*report.notes, "processes read from the host"),
    )


def test_report_round_trips_through_json(tmp_path: Path) -> None:
    report = _full_report(tmp_path)
    # every part is there to be lost
    [process] = report.processes
    assert process.sockets and process.fds and process.libraries and process.yara
    assert process.findings and process.magic and process.content
    assert {c.change.value for c in report.changes} == {"added", "modified", "metadata", "deleted"}
    assert next(c for c in report.changes if c.path == "/etc/crontabs/root").findings
    assert report.exclusions and report.classification and report.baseline
    document = report.to_dict()
    assert_valid_report(document)
    assert report_from_dict(json.loads(json.dumps(document))).to_dict() == document
