"""Evidence bundles of a real container: executables kept, every byte verified, sealed output.

The scene (:mod:`tests.evidence_scene`, conftest's ``evidence_scene``) runs a fileless
process from a memfd and a binary it dropped into /tmp, and holds a file with a
hostile name. Bundles are taken with the real engine, read back without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from drifttools_cli.evidence import bundle as bundle_command
from drifttools_cli.evidence import verify as verify_command

from drifttools import bundle
from drifttools.errors import BundleCorrupt
from drifttools.evidence.bundle import Bundle, open_bundle, verify_bundle
from drifttools.evidence.bundle.layout import ACQUISITION, ACTIONS, MANIFEST, write_tar
from drifttools.evidence.bundle.members import Members
from drifttools.evidence.bundle.seal import seal
from drifttools.options import BaselineOptions, BundleOptions
from tests.engine import BUSYBOX, BUSYBOX_SHA256
from tests.evidence_scene import HOSTILE
from tests.reports import assert_valid_report

BUSYBOX_BYTES = BUSYBOX.read_bytes()
NS_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")


@pytest.fixture(scope="module")
def sealed(evidence_scene: dict) -> dict:
    """Two signed tar bundles of the unchanged scene, and a directory bundle."""
    out = evidence_scene["work"] / "bundles"
    out.mkdir()
    baseline = BaselineOptions(cache=evidence_scene["cache"])
    signed = BundleOptions(operator="alice", case_id="CASE-42", sign_key=evidence_scene["key"])
    unsigned = BundleOptions(operator="alice", case_id="CASE-42", directory=True)
    first = bundle(evidence_scene["name"], out / "first.tar", baseline=baseline, evidence=signed)
    second = bundle(evidence_scene["name"], out / "second.tar", baseline=baseline, evidence=signed)
    directory = bundle(evidence_scene["name"], out / "dir", baseline=baseline, evidence=unsigned)
    return {"first": first, "second": second, "dir": directory, "out": out}


def _by_arg(opened: Bundle) -> dict[str, int]:
    return {p.cmdline[-1]: p.pid for p in opened.report.processes if p.cmdline}


@pytest.mark.both_drivers
def test_bundle_holds_both_executables_and_the_dropped_file(sealed: dict) -> None:
    with open_bundle(sealed["first"].path) as opened:
        pids = _by_arg(opened)
        memfd = opened.executable(pids["100003"])
        dropped = opened.executable(pids["100004"])
        assert memfd == BUSYBOX_BYTES and dropped == BUSYBOX_BYTES
        states = {i["pid"]: (i["exe"], i["exe_state"]) for i in opened.evidence["executables"]}
        assert states[pids["100003"]] == ("/memfd:payload", "memfd")
        assert states[pids["100004"]] == ("/tmp/busybox.drop", "present")
        assert opened.content("/tmp/busybox.drop") == BUSYBOX_BYTES
        assert opened.content(HOSTILE) == b"x"
        assert BUSYBOX_SHA256 in opened.blobs
        assert_valid_report(opened.report.to_dict())
        change = next(c for c in opened.report.changes if c.path == "/tmp/busybox.drop")
        assert change.after is not None and change.after.sha256 == BUSYBOX_SHA256
        assert change.after.inode and change.after.atime_ns  # kept beside the report
        assert opened.mountinfo and b" / / " in opened.mountinfo
        assert opened.inspect["Id"] == sealed["first"].report.target.id
        assert opened.image["id"] == opened.report.target.image.id
        assert opened.evidence["skipped"] == []


@pytest.mark.both_drivers
def test_acquisition_record_and_action_log(sealed: dict) -> None:
    with open_bundle(sealed["first"].path) as opened:
        record = opened.acquisition
        actions = opened.actions
    assert record["tool"]["name"] == "drifttools"
    assert record["yara"]["engine"] == "yara-x" and re.fullmatch(
        "[0-9a-f]{64}", record["yara"]["rules_sha256"]
    )
    assert (record["operator"], record["case_id"], record["frozen"]) == ("alice", "CASE-42", False)
    assert NS_STAMP.fullmatch(record["started_at"]) and NS_STAMP.fullmatch(record["finished_at"])
    assert record["started_at"] <= record["finished_at"]
    host = record["host"]
    assert host["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert host["hostname"] == os.uname().nodename and host["kernel"]
    assert record["engine"] and record["container"]["name"]
    # append-only: each entry names the digest of the one before
    lines = [json.dumps(a, sort_keys=True, ensure_ascii=False).encode() + b"\n" for a in actions]
    for before, entry in zip(lines, actions[1:], strict=False):
        assert entry["prev"] == hashlib.sha256(before).hexdigest()
    # order of volatility: processes, executables, mounts, filesystem, then the rest
    order = [a["action"] for a in actions]
    steps = [
        "processes and sockets read from /proc",
        "executables read through /proc/<pid>/exe",
        "mountinfo read",
        "mounts written to (tmpfs, volumes) walking",
        "root filesystem walking",
        "baseline read",
        "content of added and modified files read",
    ]
    assert [order.index(step) for step in steps] == sorted(order.index(s) for s in steps)


def test_verify_passes_with_the_key_and_fails_with_another(
    sealed: dict, evidence_scene: dict
) -> None:
    result = verify_bundle(sealed["first"].path, public_key=evidence_scene["pub"])
    assert result.ok and result.signed and result.sha256 == sealed["first"].sha256
    digest_line = sealed["first"].digest_file.read_text()
    assert digest_line == f"{sealed['first'].sha256}  first.tar\n"
    assert verify_bundle(sealed["dir"].path).ok
    other = evidence_scene["work"] / "other.pub"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert not verify_bundle(sealed["first"].path, public_key=other).ok
    assert not verify_bundle(sealed["dir"].path, public_key=evidence_scene["pub"]).ok  # unsigned

    runner = CliRunner()
    passed = runner.invoke(
        verify_command, [str(sealed["first"].path), "--key", str(evidence_scene["pub"])]
    )
    assert passed.exit_code == 0, passed.output
    assert "signed, key checked" in passed.stdout


def _flipped(source: Path, target: Path, offset: int) -> Path:
    data = bytearray(source.read_bytes())
    data[offset] ^= 0x01
    target.write_bytes(bytes(data))
    return target


def test_one_flipped_byte_anywhere_fails_verification(sealed: dict, tmp_path: Path) -> None:
    source = sealed["first"].path  # alone in tmp_path: no .sha256 beside the copies
    size = source.stat().st_size
    members = Members(source)
    try:
        spans = dict(members.spans)
    finally:
        members.close()
    assert {MANIFEST, "manifest.json.sig", ACQUISITION} <= spans.keys()
    offsets = {name: offset + length // 2 for name, (offset, length) in spans.items()}
    offsets |= {f"random {n}": random.Random(n).randrange(size) for n in range(12)}
    offsets |= {"first header": 0, "trailer": size - 1, "padding": min(spans.values())[0] - 1}
    runner = CliRunner()
    for what, offset in offsets.items():
        broken = _flipped(source, tmp_path / "broken.tar", offset)
        result = verify_bundle(broken)
        assert not result.ok, f"flipped byte at {offset} ({what}) not detected"
        if what == "manifest.json.sig":
            assert any("signature" in p for p in result.problems)
    cli = runner.invoke(verify_command, [str(tmp_path / "broken.tar")])
    assert cli.exit_code == 1 and "FAILED" in cli.stdout and cli.stderr
    with pytest.raises(BundleCorrupt):
        open_bundle(tmp_path / "broken.tar")
    # the digest beside the bundle catches it too
    shutil.copy(sealed["first"].digest_file, tmp_path / "broken.tar.sha256")
    assert any(".sha256" in p for p in verify_bundle(tmp_path / "broken.tar").problems)


def test_one_flipped_byte_in_any_file_of_a_directory_bundle(sealed: dict, tmp_path: Path) -> None:
    for member in sorted(p for p in sealed["dir"].path.rglob("*") if p.is_file()):
        copy = tmp_path / "copy"
        shutil.copytree(sealed["dir"].path, copy)
        relative = member.relative_to(sealed["dir"].path)
        _flipped(member, copy / relative, member.stat().st_size // 2)
        assert not verify_bundle(copy).ok, relative
        shutil.rmtree(copy)
    copy = tmp_path / "extra"
    shutil.copytree(sealed["dir"].path, copy)
    (copy / "blobs" / "sha256" / "planted").write_bytes(b"")
    assert any("not in the manifest" in p for p in verify_bundle(copy).problems)


def test_a_line_removed_from_the_action_log_and_resealed_fails(
    sealed: dict, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sealed["dir"].path, copy)
    lines = (copy / ACTIONS).read_bytes().splitlines(keepends=True)
    (copy / ACTIONS).write_bytes(b"".join(lines[:3] + lines[4:]))
    (copy / MANIFEST).unlink()
    seal(copy, None)  # every member digest right again
    problems = verify_bundle(copy).problems
    assert problems and all(p.startswith(ACTIONS) for p in problems), problems


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}


def test_bundling_twice_gives_the_same_bytes_apart_from_the_acquisition_record(
    sealed: dict, tmp_path: Path
) -> None:
    first, second = _members(sealed["first"].path), _members(sealed["second"].path)
    varying = {ACQUISITION, ACTIONS, MANIFEST, "manifest.json.sig"}
    assert first.keys() == second.keys()
    for name in first.keys() - varying:
        assert first[name] == second[name], name
    assert first[ACQUISITION] != second[ACQUISITION]  # the check can fail: times differ
    entries = [
        [m for m in json.loads(members[MANIFEST])["members"] if m["path"] not in varying]
        for members in (first, second)
    ]
    assert entries[0] == entries[1]
    # the tar itself is a function of its members: same members, same bytes
    unpacked = tmp_path / "unpacked"
    for name, data in first.items():
        (unpacked / name).parent.mkdir(parents=True, exist_ok=True)
        (unpacked / name).write_bytes(data)
    repacked = tmp_path / "repacked.tar"
    with open(repacked, "wb") as handle:
        write_tar(unpacked, handle)
    assert repacked.read_bytes() == sealed["first"].path.read_bytes()
    with tarfile.open(sealed["first"].path) as archive:
        for info in archive.getmembers():
            assert (info.mtime, info.uid, info.gid, info.mode) == (0, 0, 0, 0o644)
            assert (info.uname, info.gname) == ("", "")


def test_cli_bundle_prints_its_digest(evidence_scene: dict, tmp_path: Path) -> None:
    target = tmp_path / "cli.tar"
    result = CliRunner().invoke(
        bundle_command,
        [
            evidence_scene["name"],
            "-o",
            str(target),
            "--cache-dir",
            str(evidence_scene["cache"].directory.parents[1]),
        ],
    )
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert result.stdout.strip().splitlines()[-1] == f"sha256:{digest}  {target}"
    assert (tmp_path / "cli.tar.sha256").read_text() == f"{digest}  cli.tar\n"
    again = CliRunner().invoke(bundle_command, [evidence_scene["name"], "-o", str(target)])
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, evidence_scene: dict) -> None:
    runner = CliRunner()
    missing = runner.invoke(verify_command, [str(tmp_path / "nope.tar")])
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    bad_key = runner.invoke(
        bundle_command, [evidence_scene["name"], "-o", str(tmp_path / "b.tar"), "--sign", str(junk)]
    )
    assert bad_key.exit_code == 2 and len(bad_key.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b.tar").exists()
    nobody = runner.invoke(bundle_command, ["no-such-container-xyz", "-o", str(tmp_path / "c")])
    assert nobody.exit_code == 2 and len(nobody.stderr.strip().splitlines()) == 1


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_no_partial_bundle(evidence_scene: dict, tiny_disk: Path) -> None:
    cache = str(evidence_scene["cache"].directory.parents[1])
    for extra in ([], ["--dir"]):
        target = tiny_disk / "evidence.tar"
        result = CliRunner().invoke(
            bundle_command,
            [evidence_scene["name"], "-o", str(target), "--cache-dir", cache, *extra],
        )
        assert result.exit_code == 2, result.output
        [line] = result.stderr.strip().splitlines()
        assert "No space left on device" in line
        assert list(tiny_disk.iterdir()) == []
