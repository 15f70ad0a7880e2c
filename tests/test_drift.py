"""The merged-view diff settles equal entries by their native drift key; it must give
exactly what comparing every entry's facts gives. Real layer tars, real directories."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drifttools import _native
from drifttools.analysis.diff import DEFAULT_EXCLUSIONS, compare, diff_snapshot
from drifttools.entries import iter_facts
from drifttools.models import FilesystemState, ImageIndex, Snapshot, Target
from tests.baselines import merged_baseline
from tests.tarbuild import directory, file, hardlink, layer_tar, symlink

FILES = 12
OPERATIONS = (
    "keep",
    "touch",  # mtime only: no drift
    "same-size",  # other bytes, same size
    "rewrite",  # the same bytes written again
    "chmod",
    "chown",
    "delete",
    "symlink",  # replaced by a symlink
    "dir",  # replaced by a directory
)


def image_members() -> list:
    members = [directory("app"), directory("app/sub")]
    for i in range(FILES):
        members.append(file(f"app/f{i}", f"content {i:04d}".encode()))
    members += [symlink("app/link", "f0"), hardlink("app/sub/hard", "app/f1")]
    return members


def baseline_of(tmp: Path) -> ImageIndex:
    layer = tmp / "layer.tar"
    layer.write_bytes(layer_tar(image_members()))
    return merged_baseline([_native.read_layer(str(layer)).entries])


def mutate(root: Path, operations: list[str], added: int) -> None:
    with tarfile.open(fileobj=io.BytesIO(layer_tar(image_members()))) as archive:
        archive.extractall(root, filter="tar")
    for i, operation in enumerate(operations):
        path = root / "app" / f"f{i}"
        if operation == "touch":
            os.utime(path, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
        elif operation == "same-size":
            path.write_bytes(f"CONTENT {i:04d}".encode())
        elif operation == "rewrite":
            path.write_bytes(f"content {i:04d}".encode())
        elif operation == "chmod":
            path.chmod(0o4755)
        elif operation == "chown":
            os.chown(path, 1000, 1000)
        elif operation == "delete":
            path.unlink()
        elif operation == "symlink":
            path.unlink()
            path.symlink_to("/etc/passwd")
        elif operation == "dir":
            path.unlink()
            path.mkdir()
    for i in range(added):
        (root / "app" / f"new{i}").write_bytes(b"dropped")


def every_entry_compared(state: FilesystemState, baseline: ImageIndex) -> dict[str, str]:
    """The reference: facts of every entry, compared one by one."""
    excluded = {e.path for e in DEFAULT_EXCLUSIONS}
    expected = {}
    seen = set()
    for path, facts, _ in iter_facts(state.tree):
        seen.add(path)
        base = baseline.entries.get(path)
        kind = compare(base.facts if base else None, facts)
        if kind is not None and path not in excluded:
            expected[path] = kind.value
    for path in baseline.entries:
        if path not in seen and path not in excluded:
            expected[path] = "deleted"
    return expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    operations=st.lists(st.sampled_from(OPERATIONS), min_size=FILES, max_size=FILES),
    added=st.integers(0, 3),
)
def test_drift_keys_give_the_same_changes_as_comparing_every_entry(
    tmp_path_factory, operations: list[str], added: int
) -> None:
    tmp = tmp_path_factory.mktemp("keys")
    baseline = baseline_of(tmp)
    root = tmp / "rootfs"
    root.mkdir()
    mutate(root, operations, added)
    for tree in (_native.walk(str(root)), _exported(root)):
        state = FilesystemState("/", "merged", str(root), "walk", tree)
        snapshot = Snapshot(Target("offline", "test"), "2026-01-01T00:00:00Z", (state,))
        report = diff_snapshot(snapshot, baseline)
        got = {change.path: change.change.value for change in report.changes}
        assert got == every_entry_compared(state, baseline)
        for i, operation in enumerate(operations):
            path = f"/app/f{i}"
            assert (path in got) == (operation not in ("keep", "touch", "rewrite")), operation


def _exported(root: Path) -> _native.Tree:
    """The same filesystem as a tar stream (hardlinks as hardlink members)."""
    archive_path = root.parent / "export.tar"
    with tarfile.open(archive_path, "w") as archive:
        archive.add(root, arcname=".")
    return _native.read_layer(str(archive_path)).entries
