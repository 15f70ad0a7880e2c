"""A cached layer is verified for this input: a lower dir's stat fingerprint (streamed, only
directories opened), a verified-by-cache layer that says so. (Archives: tests/test_image.py;
the engine's lower dirs: test_live_docker.)"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from drifttools import LayerCache
from drifttools.baseline.verification import (
    BY_CACHE,
    VerificationRecords,
    directory_fingerprint,
    directory_unchanged,
    from_cache,
)
from drifttools.models import Layer

DIFF_ID = "sha256:" + "ab" * 32
OLD_NS = 946_684_800 * 10**9  # 2000-01-01: relatime updates an atime this old on a read
WITHOUT_DAC_CAPS = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
STRACE = ("strace", "-f", "-qq", "-yy", "--seccomp-bpf", "-e", "trace=%file,%desc")


def _restore_mtime(path: Path, change: Callable[[], None]) -> None:
    before = path.stat()
    change()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


DEEP = ("usr", "lib", "x", "y", "z")

TAMPERING: dict[str, Callable[[Path], None]] = {
    "same size, mtime put back": lambda d: _restore_mtime(
        d / "bin" / "ls", lambda: (d / "bin" / "ls").write_bytes(b"EVIL")
    ),
    "chmod": lambda d: (d / "bin" / "ls").chmod(0o4755),
    "setxattr": lambda d: os.setxattr(d / "bin" / "ls", "user.drift", b"1"),
    "file added": lambda d: (d / "bin" / "sh").write_bytes(b""),
    "file swapped by rename": lambda d: os.replace(d / "etc" / "motd", d / "bin" / "ls"),
    "deep file added": lambda d: d.joinpath(*DEEP, "new").write_bytes(b""),
    "deep file removed": lambda d: d.joinpath(*DEEP, "lib.so").unlink(),
    "deep file renamed": lambda d: d.joinpath(*DEEP, "lib.so").rename(d.joinpath(*DEEP, "l")),
}


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    directory = tmp_path / "diff"
    (directory / "bin").mkdir(parents=True)
    (directory / "etc").mkdir()
    (directory / "bin" / "ls").write_bytes(b"\x7fELF")
    (directory / "etc" / "motd").write_bytes(b"hi\n")
    directory.joinpath(*DEEP).mkdir(parents=True)
    directory.joinpath(*DEEP, "lib.so").write_bytes(b"\x7fELF")
    os.symlink("/etc/passwd", directory / "etc" / "host")
    os.mkfifo(directory / "etc" / "fifo")  # opening it would block
    os.utime(directory / "etc" / "motd", ns=(OLD_NS, OLD_NS))
    return directory


@pytest.mark.parametrize("how", TAMPERING)
def test_a_lower_dir_changed_after_verification_is_noticed(
    lower: Path, tmp_path: Path, how: str
) -> None:
    cache = LayerCache(tmp_path / "cache")
    VerificationRecords(cache).put(DIFF_ID, (lower, directory_fingerprint(lower)))
    assert directory_unchanged(cache, DIFF_ID, lower)
    motd = lower / "etc" / "motd"
    motd.read_bytes()  # reading changes its atime (old enough for relatime), nothing else
    assert motd.stat().st_atime_ns != OLD_NS
    assert directory_unchanged(cache, DIFF_ID, lower)
    TAMPERING[how](lower)
    assert not directory_unchanged(cache, DIFF_ID, lower)


def test_no_record_or_another_directory_is_not_a_recheck(lower: Path, tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    assert not directory_unchanged(cache, DIFF_ID, lower)
    VerificationRecords(cache).put(DIFF_ID, (lower, directory_fingerprint(lower)))
    other = tmp_path / "other"
    lower.rename(other)
    assert not directory_unchanged(cache, DIFF_ID, other)


def test_a_layer_not_rechecked_is_verified_by_cache_not_verified(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    VerificationRecords(cache).put(DIFF_ID)
    layer = Layer(DIFF_ID, None, "application/vnd.oci.image.layer.v1.tar", 0, None, True, "cache")
    by_cache = from_cache(layer, cache, rechecked=False)
    assert (by_cache.source, by_cache.verified) == (BY_CACHE, False)
    assert by_cache.verified_at and by_cache.verified_at.endswith("Z")
    rechecked = from_cache(layer, cache, rechecked=True)
    assert rechecked.verified and rechecked.verified_at == by_cache.verified_at


def test_a_record_of_another_form_means_read_again(lower: Path, tmp_path: Path) -> None:
    """A fingerprint recorded by an older form never matches: the layer is verified again."""
    cache = LayerCache(tmp_path / "cache")
    records = VerificationRecords(cache)
    records.put(DIFF_ID, (lower, directory_fingerprint(lower)))
    record = records.get(DIFF_ID) | {"fingerprint": hashlib.sha256(b"old form").hexdigest()}
    records.directory.joinpath(DIFF_ID.removeprefix("sha256:")).write_text(json.dumps(record))
    assert not directory_unchanged(cache, DIFF_ID, lower)


def test_the_fingerprint_is_stable_and_sees_errors(lower: Path) -> None:
    first = directory_fingerprint(lower)
    assert first == directory_fingerprint(lower) and len(first) == 64
    with pytest.raises(OSError):
        directory_fingerprint(lower / "missing")
    with pytest.raises(OSError):
        directory_fingerprint(lower / "etc" / "motd")


def test_a_directory_that_cannot_be_listed_makes_the_fingerprint_an_error(tmp_path: Path) -> None:
    """Run as root without the capabilities that let root list any directory whatever its
    mode: a constant error text in the digest would hide every later change below it."""
    (tmp_path / "a" / "shut").mkdir(parents=True)
    (tmp_path / "a" / "shut" / "payload").write_bytes(b"x")
    (tmp_path / "a" / "shut").chmod(0o000)
    code = f"from drifttools import _native; _native.stat_fingerprint({str(tmp_path)!r})"
    try:
        done = subprocess.run(
            [*WITHOUT_DAC_CAPS, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        (tmp_path / "a" / "shut").chmod(0o755)
    assert done.returncode != 0
    assert "/a/shut: cannot open directory: permission denied" in done.stderr, done.stderr


def test_no_file_is_opened_only_directories(lower: Path, tmp_path: Path) -> None:
    """strace witness: under the tree only directories are opened (``O_DIRECTORY``), never
    a file, FIFO or symlink, and no xattr is read."""
    trace = tmp_path / "trace"
    code = f"from drifttools import _native; print(_native.stat_fingerprint({str(lower)!r}))"
    done = subprocess.run(
        [*STRACE, "-o", str(trace), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == directory_fingerprint(lower)
    lines = trace.read_text().splitlines()
    ours = [line for line in lines if str(lower) in line and "execve(" not in line]
    opens = [line for line in ours if re.search(r"\bopen(at2?)?\(", line)]
    assert any("O_DIRECTORY" in line for line in opens)
    assert [line for line in opens if "O_DIRECTORY" not in line] == []
    assert [line for line in ours if "xattr" in line] == []
    assert [line for line in opens if "O_NOATIME" not in line and "O_PATH" not in line] == []
