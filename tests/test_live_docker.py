"""`drifttools diff <container>` on the real Docker Engine, `docker diff` as the oracle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drifttools
from drifttools import ChangeKind, ContainerNotFound, LayerCache
from drifttools.options import AcquisitionOptions, BaselineOptions
from drifttools.progress import ProgressEvent, Stage
from tests.command import EXE, one_clear_line
from tests.engine import Engine, build_image, docker, unique
from tests.reports import assert_valid_report

# Mutations an intruder (or a test) makes inside the container. Paths exist in the test image.
MUTATIONS = {
    "add": "echo added > /tmp/new-{n}",
    "overwrite": "echo overwritten-{n} > /opt/app/a",
    "same_size": "touch -r /entrypoint.sh /tmp/.ref && sed -i s/100000/999999/ /entrypoint.sh"
    " && touch -r /tmp/.ref /entrypoint.sh && rm /tmp/.ref",
    "chmod": "chmod 4755 /bin/busybox",
    "chown": "chown 1000:1000 /opt/app/sub/c",
    "delete": "rm -f /replaced",
    "delete_dir": "rm -rf /var/log",
    "mkdir": "mkdir -p /srv/d{n}",
    "symlink": "ln -sf /etc/passwd /tmp/link-{n}",
    "shm": "echo payload > /dev/shm/drop-{n}",
}


def docker_diff(name: str) -> dict[str, str]:
    return {line[2:]: line[0] for line in docker("diff", name).splitlines()}


def diff_by(name: str, method: str, cache: LayerCache) -> drifttools.DriftReport:
    """The library's diff of container ``name`` read by ``method`` (upper, merged, export)."""
    return drifttools.diff(
        name, acquisition=AcquisitionOptions(method=method), baseline=BaselineOptions(cache=cache)
    )


def explained(path: str, changes: dict[str, ChangeKind]) -> bool:
    return path in changes or any(p.startswith(path.rstrip("/") + "/") for p in changes)


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> LayerCache:
    return LayerCache(tmp_path_factory.mktemp("cache"))


@pytest.mark.both_drivers
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=6, unique=True))
def test_drift_explains_docker_diff_and_sees_more(
    busybox_image, container, warm_cache: LayerCache, mutations: list[str]
) -> None:
    name = container(busybox_image["tag"])
    script = " && ".join(MUTATIONS[m].format(n=i) for i, m in enumerate(mutations))
    docker("exec", name, "sh", "-c", script)
    oracle = docker_diff(name)

    report = drifttools.diff(name, baseline=BaselineOptions(cache=warm_cache))
    assert_valid_report(report.to_dict())
    found = {c.path: c.change for c in report.changes}
    for path, kind in oracle.items():
        assert explained(path, found), f"docker diff: {kind} {path}; drifttools: nothing"
        if kind == "D":
            assert found[path] is ChangeKind.DELETED
    # what docker diff cannot see, drifttools reports
    if "same_size" in mutations:
        assert found["/entrypoint.sh"] is ChangeKind.MODIFIED
    if "shm" in mutations:
        n = mutations.index("shm")
        assert found[f"/dev/shm/drop-{n}"] is ChangeKind.ADDED
        assert f"/dev/shm/drop-{n}" not in oracle
        shm = next(c for c in report.changes if c.path == f"/dev/shm/drop-{n}")
        assert shm.mount == "/dev/shm"
    assert report.has_drift
    assert docker_diff(name) == oracle  # the scan changed nothing


@pytest.mark.both_drivers
def test_an_image_hardlink_changes_with_its_copied_up_link_only_where_the_driver_keeps_it(
    engine: Engine, busybox_image, container, warm_cache: LayerCache
) -> None:
    """The documented difference between the drivers (docs/docker.md): the upper dir and the
    merged view (--verify-all) both report what the container sees through the other link."""
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", "echo rewritten > /opt/app/a")
    seen = docker("exec", name, "cat", "/opt/app/hard")
    assert seen == ("rewritten\n" if engine.keeps_hardlinks_on_copy_up else "hello\n")
    for method in ("upper", "merged"):
        report = diff_by(name, method, warm_cache)
        found = {c.path: c.change for c in report.changes}
        assert found["/opt/app/a"] is ChangeKind.MODIFIED, method
        if engine.keeps_hardlinks_on_copy_up:
            assert found["/opt/app/hard"] is ChangeKind.MODIFIED, method
        else:
            assert "/opt/app/hard" not in found, method


@pytest.mark.both_drivers
def test_whiteouts_and_an_opaque_directory_in_the_upper_dir_match_the_merged_view(
    busybox_image, container, warm_cache: LayerCache
) -> None:
    """Each driver marks deletions and replaced directories its own way in the upper dir
    (whiteout devices, opaque xattrs): the upper-dir diff must say what the merged view says."""
    name = container(busybox_image["tag"])
    docker(
        "exec",
        name,
        "sh",
        "-c",
        "rm -rf /opt/app/sub && mkdir /opt/app/sub && echo z > /opt/app/sub/z"
        " && rm /entrypoint.sh && rm -rf /var/log && mkdir /var/log",
    )
    reports = {method: diff_by(name, method, warm_cache) for method in ("upper", "merged")}
    found = {
        m: {(c.path, c.change) for c in r.changes if c.mount == "/"} for m, r in reports.items()
    }
    assert found["upper"] == found["merged"]
    changes = dict(found["upper"])
    assert changes["/opt/app/sub/c"] is ChangeKind.DELETED
    assert changes["/opt/app/sub/z"] is ChangeKind.ADDED
    assert changes["/entrypoint.sh"] is ChangeKind.DELETED
    assert "/var/log" not in changes or changes["/var/log"] is ChangeKind.METADATA


@pytest.mark.both_drivers
def test_an_image_without_etc_has_no_drift_in_either_view(
    engine: Engine, container, tmp_path: Path, warm_cache: LayerCache
) -> None:
    """The engine makes /etc for its hosts and resolv.conf files when the image has none;
    like `docker diff`, neither view calls that drift, but a chmod of it is."""
    tag = f"{unique('drifttools-test-noetc')}:1"
    build_image(
        tag,
        tmp_path,
        'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "sleep", "600"]\n',
    )
    name = container(tag)
    assert docker_diff(name) == {}
    for method in ("upper", "merged"):
        report = diff_by(name, method, warm_cache)
        assert report.changes == (), method
    docker("exec", name, "/bin/busybox", "chmod", "0777", "/etc")
    merged = diff_by(name, "merged", warm_cache)
    assert [c.path for c in merged.changes] == ["/etc"]
    docker("rm", "-f", name)
    docker("rmi", tag)


def upper_atimes(upper: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_atime_ns for p in [upper, *upper.rglob("*")] if not p.is_symlink()}


@pytest.mark.both_drivers
def test_the_scan_never_execs_never_writes_and_keeps_atimes(
    busybox_image, container, warm_cache: LayerCache
) -> None:
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", "echo x > /tmp/dropped && echo y > /opt/app/a")
    upper = Path(docker("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", name).strip())
    for path in [upper, *upper.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, (946_684_800, path.lstat().st_mtime))
    before_diff, before_atimes = docker_diff(name), upper_atimes(upper)
    time.sleep(0.2)  # the test's own exec above must fall before the window
    since = f"{time.time():.9f}"
    report = diff_by(name, "merged", warm_cache)
    drifttools.diff(name, baseline=BaselineOptions(cache=warm_cache))
    until = f"{time.time() + 0.2:.9f}"
    events = docker(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        f"container={name}",
        "--format",
        "{{.Action}}",
    ).split()
    assert not [e for e in events if e.startswith("exec")], events
    assert docker_diff(name) == before_diff
    assert upper_atimes(upper) == before_atimes
    assert {"/tmp/dropped", "/opt/app/a"} <= {c.path for c in report.changes}


def test_a_symlink_to_the_host_never_yields_host_content(
    busybox_image, container, warm_cache: LayerCache
) -> None:
    name = container(busybox_image["tag"])
    docker(
        "exec",
        name,
        "sh",
        "-c",
        "ln -s /etc/passwd /tmp/passwd && ln -s / /tmp/hostroot && ln -s /etc /dev/shm/etc",
    )
    host_passwd = Path("/etc/passwd").read_bytes()
    import hashlib

    host_digest = hashlib.sha256(host_passwd).hexdigest()
    for method in ("upper", "merged"):
        report = diff_by(name, method, warm_cache)
        digests = {c.after.sha256 for c in report.changes if c.after}
        assert host_digest not in digests
        paths = {c.path for c in report.changes}
        assert not any(p.startswith(("/tmp/hostroot/", "/dev/shm/etc/")) for p in paths)
        link = next(c for c in report.changes if c.path == "/tmp/passwd")
        assert link.after.kind == "symlink" and link.after.target == "/etc/passwd"


@pytest.mark.both_drivers
def test_processes_mounts_and_posture_are_in_the_report(
    busybox_image, container, warm_cache: LayerCache
) -> None:
    name = unique("drifttools-live")
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--tmpfs",
        "/run/scratch",
        "--cap-add",
        "NET_ADMIN",
        busybox_image["tag"],
        "sh",
        "-c",
        "cp /bin/busybox /tmp/sleep && (/tmp/sleep 100000 &) && exec sleep 100000",
    )
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            report = drifttools.diff(name, baseline=BaselineOptions(cache=warm_cache))
            if any(p.exe == "/tmp/sleep" for p in report.processes):
                break
            time.sleep(0.3)
        dropped = next(p for p in report.processes if p.exe == "/tmp/sleep")
        assert "exe-not-in-image" in dropped.tags
        assert {m.mountpoint: m.kind for m in report.mounts}["/dev/shm"] == "tmpfs"
        assert {m.mountpoint: m.kind for m in report.mounts}["/run/scratch"] == "tmpfs"
        document = report.to_dict()
        assert_valid_report(document)
        posture = document["target"]["posture"]
        assert posture["cap_add"] == ["CAP_NET_ADMIN"] and posture["privileged"] is False
        assert document["target"]["image"]["id"] == busybox_image["id"]
        html = report._repr_html_()
        assert "/tmp/sleep" in html and "<script" not in html
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.both_drivers
def test_a_stopped_container_is_diffed_from_its_upper_dir(
    busybox_image, container, warm_cache: LayerCache
) -> None:
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", "echo x > /tmp/left-behind")
    docker("stop", "-t", "0", name)
    report = drifttools.diff(name, baseline=BaselineOptions(cache=warm_cache))
    assert report.processes == ()
    assert "/tmp/left-behind" in {c.path for c in report.changes}
    assert report.target.details["status"] == "exited"


def test_freeze_pauses_and_always_unpauses(busybox_image, container, warm_cache) -> None:
    name = container(busybox_image["tag"])
    seen = []

    def progress(event: ProgressEvent) -> None:
        if event.stage is Stage.FILESYSTEM:
            seen.append(docker("inspect", "--format", "{{.State.Paused}}", name).strip())

    report = drifttools.diff(
        name,
        progress=progress,
        acquisition=AcquisitionOptions(freeze=True),
        baseline=BaselineOptions(cache=warm_cache),
    )
    assert seen and set(seen) == {"true"}
    assert docker("inspect", "--format", "{{.State.Paused}}", name).strip() == "false"
    assert any("paused" in note for note in report.notes)

    def interrupt(event: ProgressEvent) -> None:
        if event.stage is Stage.FILESYSTEM:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drifttools.diff(
            name,
            progress=interrupt,
            acquisition=AcquisitionOptions(freeze=True),
            baseline=BaselineOptions(cache=warm_cache),
        )
    assert docker("inspect", "--format", "{{.State.Paused}}", name).strip() == "false"


@pytest.mark.both_drivers
def test_export_method_and_cold_cache_give_the_same_changes(
    busybox_image, container, tmp_path: Path
) -> None:
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", "echo x > /tmp/a && rm -rf /var/log && chmod 700 /etc")
    cold = drifttools.diff(name, baseline=BaselineOptions(cache=LayerCache(tmp_path / "cold")))
    assert {layer.source for layer in cold.baseline} == {"engine-store"}
    warm = drifttools.diff(name, baseline=BaselineOptions(cache=LayerCache(tmp_path / "cold")))
    assert {layer.source for layer in warm.baseline} == {"cache"}
    exported = drifttools.diff(
        name,
        acquisition=AcquisitionOptions(method="export"),
        baseline=BaselineOptions(cache=LayerCache(tmp_path / "cold")),
    )
    expected = {(c.path, c.change) for c in cold.changes}
    assert {(c.path, c.change) for c in warm.changes} == expected
    assert {(c.path, c.change) for c in exported.changes if c.mount == "/"} == {
        (p, k) for p, k in expected if not p.startswith("/dev/shm")
    }
    assert any("export" in note for note in exported.notes)


def test_cli_live_diff_ps_and_ls(busybox_image, container, tmp_path: Path) -> None:
    name = container(busybox_image["tag"])
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    clean = subprocess.run([EXE, "diff", name], capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stderr + clean.stdout
    docker("exec", name, "sh", "-c", "echo x > /tmp/dropped")
    result = subprocess.run(
        [EXE, "diff", name, "--format", "json"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1, result.stderr
    assert_valid_report(json.loads(result.stdout))
    ps = subprocess.run(
        [EXE, "ps", name, "--format", "json"], capture_output=True, text=True, env=env
    )
    assert ps.returncode == 0, ps.stderr
    assert any("sleep" in " ".join(p["cmdline"]) for p in json.loads(ps.stdout))
    listing = subprocess.run(
        [EXE, "ls", "--format", "json"], capture_output=True, text=True, env=env
    )
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows[name]["upper_paths"] >= 1


def test_bad_targets_are_one_line_and_exit_2(engine: Engine, tmp_path: Path) -> None:
    one_clear_line(
        subprocess.run([EXE, "diff", "no-such-container-x"], capture_output=True, text=True),
        "no container",
    )
    with pytest.raises(ContainerNotFound):
        drifttools.diff("no-such-container-x")
    dead = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/absent.sock"}
    one_clear_line(
        subprocess.run([EXE, "diff", "web-1"], capture_output=True, text=True, env=dead),
        "cannot reach",
    )
    locked = tmp_path / "locked.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(locked))
    server.listen()
    locked.chmod(0)
    try:
        denied = subprocess.run(
            [
                "setpriv",
                "--bounding-set=-dac_override,-dac_read_search",
                "--",
                sys.executable,
                "-m",
                "drifttools_cli.main",
                "diff",
                "web-1",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_HOST": f"unix://{locked}"},
        )
        one_clear_line(denied, "permission denied")
    finally:
        server.close()


def test_investigation_notebook_runs_end_to_end(busybox_image, container, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", "cp /bin/busybox /tmp/.x && echo evil >> /entrypoint.sh")
    monkeypatch.setenv("DRIFTTOOLS_CONTAINER", name)
    notebook = nbformat.read(Path(__file__).parents[1] / "docs" / "investigation.ipynb", 4)
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
    assert "/tmp/.x" in outputs and "/entrypoint.sh" in outputs


@pytest.mark.both_drivers
def test_trust_host_layers_reads_lower_dirs_unverified(busybox_image, container, tmp_path) -> None:
    name = container(busybox_image["tag"])
    docker("exec", name, "sh", "-c", "echo x > /tmp/a && rm -rf /var/log && chmod 700 /etc")
    verified = drifttools.diff(
        name, baseline=BaselineOptions(cache=LayerCache(tmp_path / "verified"))
    )
    trusted = drifttools.diff(
        name,
        baseline=BaselineOptions(cache=LayerCache(tmp_path / "trusted"), trust_host_layers=True),
    )
    assert {(c.path, c.change) for c in trusted.changes} == {
        (c.path, c.change) for c in verified.changes
    }
    assert not trusted.verified and verified.verified
    assert {layer.source for layer in trusted.baseline} == {"snapshot-lowerdir"}
    assert any("--trust-host-layers" in note for note in trusted.notes)
    assert_valid_report(trusted.to_dict())
    assert not any((tmp_path / "trusted").rglob("*.idx"))  # nothing unverified is cached


def test_proc_root_is_only_read_while_the_pid_is_the_containers(busybox_image, container) -> None:
    from drifttools.acquisition.guard import RootGuard
    from drifttools.acquisition.snapshot import walk_container_root
    from drifttools.errors import RootfsError

    name = container(busybox_image["tag"])
    info = drifttools.acquisition.runtime.runtime_for(name).resolve(name)
    guard = RootGuard.take(info.id, info.pid)
    assert len(walk_container_root(guard, subpath="/opt")) > 0
    with pytest.raises(RootfsError):  # our own pid is not the container's: never its root
        RootGuard.take(info.id, os.getpid())
    docker("stop", "-t", "0", name)
    with pytest.raises(RootfsError, match="no longer the container's"):
        walk_container_root(guard, subpath="/opt")


@pytest.mark.both_drivers
def test_a_lower_dir_changed_on_the_host_after_caching_is_verified_again(
    container, tmp_path: Path
) -> None:
    tag = f"{unique('drifttools-lowerdir')}:1"
    context = tmp_path / "context"
    context.mkdir()
    motd = tag.encode()  # its own layer, never one a build cache shares with another run
    (context / "motd").write_bytes(motd)
    build_image(tag, context, "FROM scratch\nCOPY busybox /bin/busybox\nCOPY motd /etc/motd\n")
    name = container(tag, "/bin/busybox", "sleep", "600")
    try:
        cache = LayerCache(tmp_path / "cache")
        options = BaselineOptions(cache=cache, verify=False)
        cold = drifttools.diff(name, baseline=options)
        assert {layer.source for layer in cold.baseline} == {"engine-store"} and cold.verified
        warm = drifttools.diff(name, baseline=options)
        assert {layer.source for layer in warm.baseline} == {"cache"} and warm.verified
        assert all(layer.verified_at for layer in warm.baseline)
        top = docker("image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", tag)
        (Path(top.strip()) / "etc" / "motd").write_bytes(motd.upper())  # same size, on the host
        trusted = drifttools.diff(name, baseline=replace(options, trust_cache=True))
        assert {layer.source for layer in trusted.baseline} == {"verified-by-cache"}
        assert all(layer.verified_at for layer in trusted.baseline) and not trusted.verified
        assert any(note.startswith("--trust-cache: 2 layer(s)") for note in trusted.notes)
        tampered = drifttools.diff(name, baseline=options)
        assert_valid_report(tampered.to_dict())
        bottom, changed = tampered.baseline
        assert (bottom.source, bottom.verified) == ("cache", True)
        assert (changed.source, changed.verified) == ("engine-store", False)
        assert changed.problems and not tampered.verified
    finally:
        docker("rm", "-f", name, check=False)  # before its image: else the image stays, untagged
        docker("rmi", "-f", tag, check=False)
