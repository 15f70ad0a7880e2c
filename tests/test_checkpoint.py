"""A KEP-2008 checkpoint archive (what a kubelet checkpoint writes), diffed against its image.

Both are built here: the image with tests.tarbuild, the archive by :func:`checkpoint_archive`.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

from drifttools import ChangeKind, diff_checkpoint
from drifttools.acquisition.runtime import runtime_for
from tests.reports import assert_valid_report
from tests.tarbuild import busybox_like_layers, legacy_archive


def checkpoint_archive(path: Path) -> None:
    """A KEP-2008 archive: the container changed /opt/app/a, added /tmp/new, deleted /replaced."""
    diff = io.BytesIO()
    with tarfile.open(fileobj=diff, mode="w") as archive:
        for name, data, mode in (("opt/app/a", b"changed\n", 0o644), ("tmp/new", b"n\n", 0o600)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    pstree = b"\x00" * 4 + (0x50273030).to_bytes(4, "little")
    entry = bytes([0x08, 1, 0x10, 0, 0x18, 1, 0x20, 1])  # pid 1, ppid 0, pgid 1, sid 1
    pstree += len(entry).to_bytes(4, "little") + entry
    members = {
        "config.dump": json.dumps(
            {"id": "abc123", "name": "web", "rootfsImageName": "busybox:test"}
        ).encode(),
        "spec.dump": json.dumps({"mounts": [], "process": {"user": {"uid": 0}}}).encode(),
        "rootfs-diff.tar": diff.getvalue(),
        "deleted.files": json.dumps(["/replaced"]).encode(),
        "checkpoint/pstree.img": pstree,
    }
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_checkpoint_archive(tmp_path: Path) -> None:
    image = legacy_archive(tmp_path / "image.tar", busybox_like_layers())
    archive = tmp_path / "checkpoint.tar"
    checkpoint_archive(archive)
    report = diff_checkpoint(f"checkpoint://{archive}", image=image.path)
    found = {c.path: c.change for c in report.changes}
    assert found == {
        "/opt/app/a": ChangeKind.MODIFIED,
        "/tmp/new": ChangeKind.ADDED,
        "/replaced": ChangeKind.DELETED,
    }
    assert report.target.runtime == "offline" and report.target.name == "web"
    assert_valid_report(report.to_dict())
    assert any("pid 1 (parent 0)" in note for note in report.notes)
    assert runtime_for(f"checkpoint://{archive}").resolve("").id == "abc123"
    copy = shutil.copy(archive, tmp_path / "copy.tar")
    assert Path(copy).read_bytes() == archive.read_bytes()
