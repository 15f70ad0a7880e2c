"""The installed `drifttools` command: exit codes like diff(1), machine formats, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.command import EXE, one_clear_line
from tests.engine import docker, docker_bytes
from tests.reports import assert_valid_report
from tests.tarbuild import directory, file, layer_tar, legacy_archive


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(Path(cwd or "/tmp") / ".cache")}
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


@pytest.fixture
def small_image(tmp_path: Path) -> dict:
    """An image and two rootfs trees (same, drifted) built without the engine."""
    layer = layer_tar([directory("etc"), file("etc/motd", b"hi\n"), directory("tmp")])
    image = legacy_archive(tmp_path / "image.tar", [layer])
    same = tmp_path / "same"
    (same / "etc").mkdir(parents=True)
    (same / "etc" / "motd").write_bytes(b"hi\n")
    (same / "tmp").mkdir()
    for path in (same, same / "etc", same / "tmp"):
        path.chmod(0o755)
    (same / "etc" / "motd").chmod(0o644)
    drifted = tmp_path / "drifted"
    shutil.copytree(same, drifted, symlinks=True)
    (drifted / "tmp" / "\x1b[2Jminer").write_bytes(b"\x7fELF")
    return {"image": image.path, "same": same, "drifted": drifted, "dir": tmp_path}


def diff_rootfs(small_image: dict, rootfs: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``drifttools diff`` of the small image's ``rootfs`` ("same" or "drifted")."""
    image, root = str(small_image["image"]), str(small_image[rootfs])
    return run("diff", "--image", image, "--rootfs", root, *args, cwd=small_image["dir"])


def test_exit_status_is_0_without_drift_and_1_with_drift(small_image: dict) -> None:
    same = diff_rootfs(small_image, "same")
    assert same.returncode == 0, same.stderr
    drifted = diff_rootfs(small_image, "drifted")
    assert drifted.returncode == 1, drifted.stderr
    assert "\x1b" not in drifted.stdout  # attacker's escape sequence is shown escaped
    assert "\\x1b[2Jminer" in drifted.stdout


def test_json_and_jsonl_for_machines(small_image: dict) -> None:
    document = json.loads(diff_rootfs(small_image, "drifted", "--format", "json").stdout)
    assert_valid_report(document)
    assert [c["path"] for c in document["changes"]] == ["/tmp/\x1b[2Jminer"]
    assert document["summary"]["added"] == 1
    lines = diff_rootfs(small_image, "drifted", "--format", "jsonl").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["record"] for r in records] == ["report", "change"]


def test_output_file_is_written_whole(small_image: dict) -> None:
    out = small_image["dir"] / "report.json"
    result = diff_rootfs(small_image, "drifted", "-o", str(out))
    assert result.returncode == 1
    assert_valid_report(json.loads(out.read_text()))


def test_bad_input_is_one_line_and_exit_2(small_image: dict, tmp_path: Path) -> None:
    image, rootfs = str(small_image["image"]), str(small_image["same"])
    one_clear_line(
        run("diff", "--image", str(tmp_path / "nope.tar"), "--rootfs", rootfs), "not found"
    )
    one_clear_line(run("diff", "--image", image, "--rootfs", str(tmp_path / "nope")), "not found")
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(Path(image).read_bytes()[:1500])
    one_clear_line(run("diff", "--image", str(corrupt), "--rootfs", rootfs))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x1f\x8b" + os.urandom(5000))
    one_clear_line(run("diff", "--image", image, "--rootfs", str(garbage)))
    out = tmp_path / "never.json"
    one_clear_line(run("diff", "--image", str(corrupt), "--rootfs", rootfs, "-o", str(out)))
    assert not out.exists()


def test_wrong_digest_stops_unless_allowed(small_image: dict, tmp_path: Path) -> None:
    layer = layer_tar([directory("etc"), file("etc/motd", b"hi\n")])
    image = legacy_archive(tmp_path / "image.tar", [layer])
    data = bytearray(image.path.read_bytes())
    at = data.find(b"hi\n")
    data[at : at + 3] = b"HI\n"
    image.path.write_bytes(bytes(data))
    args = ["diff", "--image", str(image.path), "--rootfs", str(small_image["same"]), "--no-cache"]
    one_clear_line(run(*args), "failed verification")
    allowed = run(*args, "--allow-unverified", "--format", "json")
    document = json.loads(allowed.stdout)
    assert_valid_report(document)
    assert document["baseline"]["verified"] is False


def test_a_full_disk_leaves_no_partial_report(small_image: dict, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(tiny)], check=True)
    try:
        for i in range(400):
            (small_image["drifted"] / "tmp" / f"dropped-{i:04d}").write_bytes(b"x")
        out = tiny / "report.json"
        result = run(
            "diff",
            "--image",
            str(small_image["image"]),
            "--rootfs",
            str(small_image["drifted"]),
            "-o",
            str(out),
            cwd=small_image["dir"],
        )
        one_clear_line(result, "No space left")
        assert list(tiny.iterdir()) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def test_export_tar_rootfs_from_the_engine(busybox_image, container, tmp_path: Path) -> None:
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", "echo x > /tmp/new")
    export = tmp_path / "export.tar"
    export.write_bytes(docker_bytes("export", name))
    result = run(
        "diff",
        "--image",
        str(busybox_image["save"]),
        "--rootfs",
        str(export),
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert_valid_report(document)
    assert [c["path"] for c in document["changes"]] == ["/tmp/new"]
    assert document["target"]["image"]["ref"] == busybox_image["tag"]
