"""Layer application: random OCI layer stacks against a reference that extracts onto a real disk."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drifttools import _native
from tests.baselines import merged_baseline
from tests.tarbuild import directory, file, hardlink, layer_stacks, layer_tar, opaque, whiteout


def reference_tree(layers: list[bytes]) -> tuple[dict[str, tuple], set[frozenset[str]]]:
    """Apply layers by extracting them into a real directory, then read it back.

    Whiteouts and opaque markers remove lower content with shutil before the
    layer is extracted; everything else is Python's tarfile on a real disk. Returns each
    path's facts and the groups of paths that share an inode.
    """
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for layer in layers:
            with tarfile.open(fileobj=io.BytesIO(layer)) as archive:
                members = archive.getmembers()
                for member in members:
                    name = Path(member.name)
                    if name.name == ".wh..wh..opq":
                        target = root / name.parent
                        if target.is_dir() and not target.is_symlink():
                            for child in target.iterdir():
                                _remove(child)
                for member in members:
                    name = Path(member.name)
                    if name.name.startswith(".wh.") and name.name != ".wh..wh..opq":
                        _remove(root / name.parent / name.name[4:])
                for member in members:
                    name = Path(member.name)
                    if name.name.startswith(".wh."):
                        continue
                    destination = root / name
                    if os.path.lexists(destination) and not (
                        member.isdir() and destination.is_dir() and not destination.is_symlink()
                    ):
                        _remove(destination)
                    _ensure_parent(destination, root)
                    if member.isdir():
                        destination.mkdir(exist_ok=True)
                        os.chmod(destination, member.mode)
                    elif member.issym():
                        os.symlink(member.linkname, destination)
                    elif member.islnk():
                        os.link(root / member.linkname, destination)
                    else:
                        destination.write_bytes(archive.extractfile(member).read())
                        os.chmod(destination, member.mode)
        return _read_back(root)


def _ensure_parent(path: Path, root: Path) -> None:
    parent = path.parent
    chain = []
    while parent != root:
        chain.append(parent)
        parent = parent.parent
    for directory_path in reversed(chain):
        if os.path.lexists(directory_path) and not (
            directory_path.is_dir() and not directory_path.is_symlink()
        ):
            _remove(directory_path)
        if not directory_path.exists():
            directory_path.mkdir()
            os.chmod(directory_path, 0o755)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _read_back(root: Path) -> tuple[dict[str, tuple], set[frozenset[str]]]:
    found = {}
    inodes: dict[int, set[str]] = {}
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(current) / name
            info = path.lstat()
            key = "/" + str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("symlink", None, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[key] = ("dir", stat.S_IMODE(info.st_mode), None)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[key] = ("file", stat.S_IMODE(info.st_mode), digest)
                inodes.setdefault(info.st_ino, set()).add(key)
    return found, {frozenset(group) for group in inodes.values() if len(group) > 1}


def merged_tree(layers: list[bytes]) -> tuple[dict[str, tuple], set[frozenset[str]]]:
    trees = [_native.read_layer(io.BytesIO(layer)).entries for layer in layers]
    merged = merged_baseline(trees)
    assert not merged.errors
    entries = merged.entries
    result = {}
    for path, entry in entries.items():
        facts = entry.facts
        if facts.kind == "symlink":
            result[path] = ("symlink", None, facts.target)
        elif facts.kind == "dir":
            result[path] = ("dir", facts.mode, None)
        else:
            result[path] = (facts.kind, facts.mode, facts.sha256)
    return result, set(merged.links.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_stacks())
def test_random_layer_stacks_apply_like_a_real_extraction(layers: list[bytes]) -> None:
    assert merged_tree(layers) == reference_tree(layers)  # hardlink groups included


def test_whiteout_removes_only_lower_content_and_opaque_applies_first() -> None:
    lower = layer_tar([directory("d"), file("d/old", b"1"), file("keep", b"k"), file("gone", b"g")])
    upper = layer_tar([file("d/new", b"2"), whiteout("gone"), directory("d"), opaque("d")])
    merged, _ = merged_tree([lower, upper])
    assert set(merged) == {"/d", "/d/new", "/keep"}


def test_directory_replaced_by_file_and_back() -> None:
    first = layer_tar([directory("r"), file("r/x", b"x")])
    second = layer_tar([file("r", b"now a file")])
    third = layer_tar([directory("r"), file("r/y", b"y")])
    assert set(merged_tree([first, second])[0]) == {"/r"}
    assert set(merged_tree([first, second, third])[0]) == {"/r", "/r/y"}


def test_hardlink_to_a_lower_layer_takes_its_content() -> None:
    lower = layer_tar([directory("bin"), file("bin/tool", b"\x7fELF tool", 0o755)])
    upper = layer_tar([directory("usr"), hardlink("usr/tool", "bin/tool")])
    trees = [_native.read_layer(io.BytesIO(layer)).entries for layer in (lower, upper)]
    merged = merged_baseline(trees)
    assert not merged.errors
    entries = merged.entries
    assert merged.links["/usr/tool"] == merged.links["/bin/tool"] == {"/usr/tool", "/bin/tool"}
    assert entries["/usr/tool"].facts.sha256 == hashlib.sha256(b"\x7fELF tool").hexdigest()
    assert entries["/usr/tool"].layer == 1
    assert entries["/bin/tool"].layer == 0


def test_hardlink_to_a_missing_target_is_recorded_not_dropped_silently() -> None:
    layer = layer_tar([hardlink("orphan", "nowhere")])
    errors = merged_baseline([_native.read_layer(io.BytesIO(layer)).entries]).errors
    assert [(e.path, "hardlink target missing" in e.reason) for e in errors] == [("/orphan", True)]


def test_a_path_given_again_leaves_its_hardlink_group_and_wh_inside_a_name_is_no_whiteout() -> None:
    lower = layer_tar([file("a", b"1"), hardlink("b", "a"), hardlink("c", "a")])
    upper = layer_tar([file("a", b"2"), file("notes.wh.txt", b"n"), directory("x.wh.d")])
    merged, links = merged_tree([lower, upper])
    assert links == {frozenset({"/b", "/c"})}  # /a is another file now
    assert merged["/b"][2] == hashlib.sha256(b"1").hexdigest() != merged["/a"][2]
    assert {"/notes.wh.txt", "/x.wh.d"} <= set(merged)


@st.composite
def lower_dirs(draw: st.DrawFn) -> list[list[tuple[str, str]]]:
    """Stacks of 1-4 unpacked overlay layers: (path, what) with files, dirs, symlinks, 0/0
    char devices (whiteouts) and opaque dirs; every parent a directory of the same layer."""
    layers = []
    for number in range(draw(st.integers(1, 4))):
        members: dict[str, str] = {}
        for _ in range(draw(st.integers(0, 6))):
            path = draw(st.sampled_from(["x", "y", "a", "a/x", "a/b", "a/b/y", "c", "c/x"]))
            parents = [path[:i] for i, char in enumerate(path) if char == "/"]
            taken = path in members or any(m.startswith(path + "/") for m in members)
            kind_of = [members.get(p, "dir").partition(":")[0] for p in parents]
            if taken or any(kind not in ("dir", "opaque") for kind in kind_of):
                continue
            members.update({p: members.get(p, "dir") for p in parents})
            kinds = ["file", "dir", "symlink"] + (["whiteout", "opaque"] if number else [])
            members[path] = f"{draw(st.sampled_from(kinds))}:{draw(st.binary(max_size=8)).hex()}"
        layers.append(sorted(members.items()))
    return layers


def _lay_out(root: Path, members: list[tuple[str, str]]) -> None:
    for path, what in members:
        kind, _, data = what.partition(":")
        target = root / path
        if kind in ("dir", "opaque"):
            target.mkdir()
            if kind == "opaque":
                os.setxattr(target, "trusted.overlay.opaque", b"y")
        elif kind == "file":
            target.write_bytes(bytes.fromhex(data))
        elif kind == "symlink":
            target.symlink_to(f"t{data}")
        else:
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lower_dirs())
def test_unpacked_lower_dirs_merge_like_a_kernel_overlay_mount(layers: list) -> None:
    """Runs as root, as the whole suite does (mounting an overlay needs it)."""
    with tempfile.TemporaryDirectory() as scratch:
        roots = []
        for number, members in enumerate(layers):
            root = Path(scratch) / f"l{number}"
            root.mkdir()
            _lay_out(root, members)
            roots.append(root)
        merged = merged_baseline(
            [_native.walk(str(root), hash_max_size=None) for root in roots], overlay=True
        )
        mount = Path(scratch) / "merged"
        mount.mkdir()
        lower = ":".join(str(root) for root in reversed(roots))
        if len(roots) == 1:  # overlayfs needs two lower dirs without an upper one
            lower += f":{Path(scratch) / 'empty'}"
            (Path(scratch) / "empty").mkdir()
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lower}", str(mount)],
            check=True,
        )
        try:
            # a whiteout in a directory no other layer has is listed, but never found
            want = {
                e.path: (e.kind, e.mode, e.sha256, e.target)
                for e in _native.walk(str(mount))
                if not (e.kind == "unknown" and e.error)
            }
        finally:
            subprocess.run(["umount", str(mount)], check=True)
        got = {
            path: (f.kind, f.mode, f.sha256, f.target)
            for path, f in ((p, e.facts) for p, e in merged.entries.items())
        }
        assert got == want
