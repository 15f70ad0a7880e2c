"""Drift of real containers, checked against the engine's own `docker diff`."""

from __future__ import annotations

from pathlib import Path

import pytest

from drifttools import LayerCache, diff_offline
from drifttools.models import ChangeKind
from drifttools.options import BaselineOptions
from tests.engine import Engine, docker, docker_bytes
from tests.reports import assert_valid_report

# The test drifts its own container with exec; drifttools never execs.
MUTATIONS = """
set -e
echo dropped > /tmp/dropped && chmod 755 /tmp/dropped
echo modified-content > /opt/app/a
touch -r /entrypoint.sh /tmp/.ref
sed -i 's/100000/999999/' /entrypoint.sh
touch -r /tmp/.ref /entrypoint.sh && rm /tmp/.ref
chmod 4755 /bin/busybox
chown 1000:1000 /opt/app/sub/c
rm -rf /var/log
rm /replaced && mkdir /replaced
mkdir -p /srv/new
ln -s /etc/passwd /tmp/link
echo in-shm > /dev/shm/payload
"""

EXPECTED = {
    "/tmp/dropped": ChangeKind.ADDED,
    "/tmp/link": ChangeKind.ADDED,
    "/srv": ChangeKind.ADDED,
    "/srv/new": ChangeKind.ADDED,
    "/opt/app/a": ChangeKind.MODIFIED,
    "/opt/app/hard": ChangeKind.MODIFIED,  # a hardlink of /opt/app/a in the image: see below
    "/entrypoint.sh": ChangeKind.MODIFIED,  # same size, mtime put back
    "/bin/busybox": ChangeKind.METADATA,
    "/opt/app/sub/c": ChangeKind.METADATA,
    "/replaced": ChangeKind.TYPE,
    "/var/log": ChangeKind.DELETED,
}


@pytest.fixture
def drifted(busybox_image, container, tmp_path: Path) -> dict:
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", MUTATIONS)
    export = tmp_path / "export.tar"
    export.write_bytes(docker_bytes("export", name))
    upper = docker("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", name).strip()
    return {"name": name, "export": export, "upper": Path(upper)}


def docker_diff(name: str) -> dict[str, str]:
    lines = docker("diff", name).splitlines()
    return {line[2:]: line[0] for line in lines}


def expected_drift(engine: Engine) -> dict[str, ChangeKind]:
    """What the container shows: the image's hardlink of /opt/app/a changed with it only where
    the driver keeps hardlinks on copy-up (fuse-overlayfs, not kernel overlay2)."""
    if engine.keeps_hardlinks_on_copy_up:
        return EXPECTED
    return {p: k for p, k in EXPECTED.items() if p != "/opt/app/hard"}


@pytest.mark.both_drivers
def test_export_diff_finds_every_change_and_explains_docker_diff(
    engine: Engine, busybox_image, drifted, cache_dir: Path
) -> None:
    report = diff_offline(
        image=busybox_image["save"],
        rootfs=drifted["export"],
        baseline=BaselineOptions(cache=LayerCache(cache_dir)),
    )
    assert_valid_report(report.to_dict())
    found = {c.path: c.change for c in report.changes}
    assert found == expected_drift(engine)
    assert report.verified and not report.errors

    oracle = docker_diff(drifted["name"])
    excluded = ("/dev", "/proc", "/sys")
    for path, kind in oracle.items():
        if path.startswith(excluded):
            continue
        explained = path in found or any(p.startswith(path + "/") for p in found)
        assert explained, f"docker diff says {kind} {path}; drifttools has nothing for it"
        if kind == "A":
            assert found.get(path, ChangeKind.ADDED) is ChangeKind.ADDED
        if kind == "D":
            assert found[path] is ChangeKind.DELETED

    assert "/dev/shm/payload" not in oracle  # what docker diff misses; the live path reads it

    modified = next(c for c in report.changes if c.path == "/opt/app/a")
    assert modified.before is not None and modified.after is not None
    assert modified.before.sha256 != modified.after.sha256
    assert report.baseline[modified.layer].created_by.count("echo hello") == 1
    metadata = next(c for c in report.changes if c.path == "/bin/busybox")
    assert (metadata.before.mode, metadata.after.mode) == (0o755, 0o4755)


@pytest.mark.both_drivers
def test_overlay_upper_dir_gives_the_same_drift_as_the_export(
    busybox_image, drifted, cache_dir: Path
) -> None:
    cache = LayerCache(cache_dir)
    report = diff_offline(
        image=busybox_image["save"],
        rootfs=drifted["upper"],
        upper=True,
        baseline=BaselineOptions(cache=cache),
    )
    assert_valid_report(report.to_dict())
    found = {c.path: c.change for c in report.changes}
    # The upper dir holds the copied-up /opt/app/a only, on either driver: whether the image's
    # hardlink /opt/app/hard shows it is the merged view's to say (the live diff reads it there).
    expected = {p: k for p, k in EXPECTED.items() if p != "/opt/app/hard"}
    assert found == expected


def test_an_unchanged_container_has_no_drift(
    busybox_image, container, tmp_path: Path, cache_dir: Path
) -> None:
    name = container(busybox_image["tag"])
    export = tmp_path / "export.tar"
    export.write_bytes(docker_bytes("export", name))
    report = diff_offline(
        image=busybox_image["save"],
        rootfs=export,
        baseline=BaselineOptions(cache=LayerCache(cache_dir)),
    )
    assert report.changes == ()
    assert {e.path for e in report.exclusions} >= {"/proc", "/sys", "/dev", "/etc/hosts"}
    assert_valid_report(report.to_dict())
