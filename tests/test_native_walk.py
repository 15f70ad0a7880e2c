"""The native walker on real directories built by the tests, hostile ones included."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drifttools import _native

OLD_ATIME = 946_684_800  # 2000-01-01: older than any mtime, so relatime WOULD update it on a read


def walk_with_deadline(root: Path, seconds: float = 60, **options) -> _native.Tree:
    """Walk in a worker thread; a walk that blocks (on a FIFO, a device) fails the test."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_native.walk, str(root), **options).result(timeout=seconds)


def by_path(tree: _native.Tree) -> dict[str, _native.Entry]:
    return {entry.path: entry for entry in tree}


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("container-root:x:0:0\n")
    (root / "escape-root").symlink_to("/")
    (root / "escape-passwd").symlink_to("/etc/passwd")
    (root / "escape-up").symlink_to("../../../../../../etc")
    (root / "dir-link").symlink_to("/etc")
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    os.mkfifo(root / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    server.close()
    os.mknod(root / "tty", stat.S_IFCHR | 0o600, os.makedev(5, 0))  # /dev/tty: reading would block
    os.mknod(root / "whiteout", stat.S_IFCHR, os.makedev(0, 0))
    os.mknod(root / "disk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    with open(root / "sparse", "wb") as handle:
        handle.truncate(1 << 40)
    (root / os.fsdecode(b"bad-\xff\xfe-name")).write_bytes(b"non utf-8 name")
    (root / "\x1b[31mred\x1b[0m").write_bytes(b"escape sequences in a name")
    (root / "back\\slash").write_bytes(b"backslash")
    return root


def test_hostile_tree_is_walked_without_escape_block_or_loss(hostile: Path) -> None:
    entries = by_path(walk_with_deadline(hostile, hash_max_size=1 << 30))
    host_passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    assert host_passwd not in {e.sha256 for e in entries.values()}
    assert not any(p.startswith(("/escape-root/", "/dir-link/", "/escape-up/")) for p in entries)
    assert entries["/escape-passwd"].kind == "symlink"
    assert entries["/escape-passwd"].target == "/etc/passwd"
    assert entries["/escape-passwd"].sha256 is None
    assert entries["/etc/passwd"].sha256 == hashlib.sha256(b"container-root:x:0:0\n").hexdigest()
    assert entries["/loop-a"].target == "loop-b"
    assert {entries[p].kind for p in ("/fifo", "/sock", "/tty", "/disk")} == {
        "fifo",
        "socket",
        "char",
        "block",
    }
    assert all(entries[p].sha256 is None for p in ("/fifo", "/sock", "/tty", "/disk"))
    assert (entries["/whiteout"].rdev_major, entries["/whiteout"].rdev_minor) == (0, 0)
    assert (entries["/tty"].rdev_major, entries["/tty"].rdev_minor) == (5, 0)
    sparse = entries["/sparse"]
    assert sparse.size == 1 << 40 and sparse.sha256 is None and "cap" in (sparse.error or "")
    bad = _native.escape_path(b"/bad-\xff\xfe-name")
    assert (
        bad == "/bad-\\xff\\xfe-name"
        and entries[bad].sha256 == hashlib.sha256(b"non utf-8 name").hexdigest()
    )
    assert "/\x1b[31mred\x1b[0m" in entries
    assert "/back\\\\slash" in entries
    assert len(entries) == sum(1 for _ in _all_paths(hostile))


def _all_paths(root: Path):
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(current) / name


def test_walk_changes_no_atime(hostile: Path) -> None:
    for path in [hostile, *_all_paths(hostile)]:
        if not path.is_symlink():
            os.utime(path, (OLD_ATIME, path.lstat().st_mtime), follow_symlinks=False)
    before = {p: p.lstat().st_atime_ns for p in [hostile, *_all_paths(hostile)]}
    walk_with_deadline(hostile, hash_max_size=1 << 30)
    after = {p: p.lstat().st_atime_ns for p in before}
    assert before == after


def test_exclusions_and_errors_keep_every_record(tmp_path: Path) -> None:
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "status").write_text("x")
    (tmp_path / "keep").write_text("k")
    entries = by_path(_native.walk(str(tmp_path), exclude=["/proc"]))
    assert "/proc" in entries and "/proc/1" not in entries and "/keep" in entries


UNREADABLE_SCRIPT = """
import json, sys
from drifttools import _native
tree = _native.walk(sys.argv[1])
print(json.dumps({e.path: [e.sha256, e.error] for e in tree}))
"""


def test_unreadable_files_and_directories_become_entries_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    (tmp_path / "secret").chmod(0)
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "inside").write_text("i")
    (tmp_path / "locked").chmod(0)
    (tmp_path / "open").write_text("o")
    # root without the capabilities that bypass file permissions: a real EACCES
    result = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
            sys.executable,
            "-c",
            UNREADABLE_SCRIPT,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    import json

    entries = json.loads(result.stdout)
    assert entries["/open"][0] == hashlib.sha256(b"o").hexdigest()
    assert entries["/secret"][0] is None and "permission" in entries["/secret"][1].lower()
    assert "/locked" in entries and "permission" in (entries["/locked"][1] or "").lower()


def test_files_deleted_during_the_walk_are_recorded_not_fatal(tmp_path: Path) -> None:
    for i in range(30):
        sub = tmp_path / f"d{i}"
        sub.mkdir()
        for j in range(300):
            (sub / f"f{j}").write_bytes(b"x" * (j * 10))
    stop = threading.Event()

    def delete() -> None:
        for path in sorted(tmp_path.rglob("f*"), reverse=True):
            if stop.is_set():
                return
            path.unlink(missing_ok=True)

    deleter = threading.Thread(target=delete)
    deleter.start()
    try:
        tree = walk_with_deadline(tmp_path, threads=2)
    finally:
        stop.set()
        deleter.join()
    for entry in tree:
        if entry.kind == "file":
            assert entry.sha256 is not None or entry.error is not None
        elif entry.kind == "unknown":
            assert entry.error


@st.composite
def random_trees(draw: st.DrawFn) -> dict[str, bytes]:
    names = st.text(alphabet="abcXYZ019-_. é", min_size=1, max_size=12).filter(
        lambda n: n not in (".", "..")
    )
    files = {}
    for _ in range(draw(st.integers(1, 25))):
        depth = draw(st.integers(0, 3))
        parts = [draw(names) for _ in range(depth + 1)]
        size = draw(st.sampled_from([0, 1, 4095, 4096, 4097, 65536, 300_001]))
        files["/".join(parts)] = draw(st.binary(min_size=0, max_size=64)) * (size // 64 + 1)
    return files


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(random_trees())
def test_native_hashes_equal_hashlib_on_random_trees(
    tmp_path_factory, files: dict[str, bytes]
) -> None:
    root = tmp_path_factory.mktemp("tree")
    written = {}
    for name, data in files.items():
        path = root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
        written["/" + name] = data
    entries = by_path(_native.walk(str(root)))
    for name, path in ((n, root / n.lstrip("/")) for n in written):
        if path.is_file():
            assert entries[name].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
            assert entries[name].size == path.stat().st_size


def test_progress_is_reported_and_tree_is_compact(tmp_path: Path) -> None:
    for i in range(2000):
        (tmp_path / f"f{i}").write_bytes(b"x")
    calls = []
    tree = _native.walk(str(tmp_path), progress=lambda n, b: calls.append((n, b)))
    assert len(tree) == 2000 and calls and calls[-1][0] <= 2000
    assert sys.getsizeof(tree) < 10_000  # entries live in Rust, not as Python objects
