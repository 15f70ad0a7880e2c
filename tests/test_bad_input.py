"""Bad input through the installed command: one clear line and exit 2, nothing written on
the host that was not asked for, and hostile layer member names kept out of the baseline."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.command import EXE, one_clear_line
from tests.tarbuild import directory, file, layer_tar, legacy_archive


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache")}
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


@pytest.fixture
def offline(tmp_path: Path) -> list[str]:
    """``diff`` arguments of an image and a rootfs that matches it."""
    image = legacy_archive(tmp_path / "image.tar", [layer_tar([directory("etc")])])
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    for path in (rootfs, rootfs / "etc"):
        path.chmod(0o755)
    return ["diff", "--image", str(image.path), "--rootfs", str(rootfs), "--no-yara"]


@pytest.mark.parametrize("option", ["--rules", "--allow"])
def test_a_missing_rules_or_allow_file_is_one_line(
    offline: list[str], tmp_path: Path, option: str
) -> None:
    missing = tmp_path / "nope.txt"
    one_clear_line(run(*offline, option, str(missing), cwd=tmp_path), option, str(missing))
    one_clear_line(run(*offline, "--allow", str(tmp_path), cwd=tmp_path), "is a directory")


def test_bundle_and_verify_key_files_alike(tmp_path: Path) -> None:
    missing = str(tmp_path / "key.pem")
    one_clear_line(run("verify", str(tmp_path), "--key", missing, cwd=tmp_path), "--key")
    result = run("bundle", "web-1", "-o", str(tmp_path / "b.tar"), "--sign", missing, cwd=tmp_path)
    one_clear_line(result, "--sign", missing)


def test_output_into_a_missing_directory_is_refused(offline: list[str], tmp_path: Path) -> None:
    out = tmp_path / "missing" / "dir" / "out.json"
    one_clear_line(run(*offline, "-o", str(out), cwd=tmp_path), "no such directory")
    assert not (tmp_path / "missing").exists()
    one_clear_line(run(*offline, "-o", str(tmp_path), cwd=tmp_path), "is a directory")
    bundle_out = tmp_path / "missing" / "b.tar"
    one_clear_line(run("bundle", "web-1", "-o", str(bundle_out), cwd=tmp_path), "no such directory")
    assert not (tmp_path / "missing").exists()


def test_members_named_outside_the_root_stay_out_of_the_baseline(tmp_path: Path) -> None:
    layer = layer_tar(
        [
            directory("etc"),
            file("etc/motd", b"hi\n"),
            file("../../etc/evil", b"x"),
            file("/etc/absolute", b"x"),
            file("../etc/.wh.motd", b""),  # an unsafe whiteout deletes nothing either
        ]
    )
    image = legacy_archive(tmp_path / "image.tar", [layer])
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "motd").write_bytes(b"hi\n")
    for path in (rootfs, rootfs / "etc"):
        path.chmod(0o755)
    (rootfs / "etc" / "motd").chmod(0o644)
    args = ["diff", "--image", str(image.path), "--rootfs", str(rootfs), "--format", "json"]
    result = run(*args, "--no-yara", cwd=tmp_path)
    document = json.loads(result.stdout)
    assert [c["path"] for c in document["changes"]] == [], document["changes"]
    reasons = {e["path"]: e["reason"] for e in document["errors"]}
    for path in ("/etc/evil", "/etc/absolute", "/etc/.wh.motd"):
        assert "unsafe path in archive" in reasons[path], reasons
        assert "kept out of the baseline" in reasons[path]
