"""Take a Snapshot of a live container from the host: processes first, then filesystems.

Never ``exec`` into the container, never write into it. Order of volatility
(RFC 3227): processes, sockets and mounts are read before any file.

Filesystem methods:

* ``upper`` (the default when the engine's overlay upper dir is readable):
  walk only what the container changed; cost grows with the changes, not the image.
* ``merged``: walk the whole filesystem through ``/proc/<pid>/root`` (hashes
  every file: ``--verify-all``); needs a running container.
* ``export``: stream ``docker export`` through the layer reader (remote engines;
  the engine reads every file, which can change atimes: recorded in the notes).

Mounts the container writes to (tmpfs such as ``/dev/shm``, volumes, binds)
are walked through ``/proc/<pid>/root`` with each mount point resolved safely
inside the container's root; they have no baseline, so all they hold is added.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from drifttools import _native
from drifttools.acquisition.cgroups import container_pids
from drifttools.acquisition.guard import RootGuard
from drifttools.acquisition.logs import read_logs
from drifttools.acquisition.mounts import data_mounts, parse_mountinfo
from drifttools.acquisition.processes import read_processes
from drifttools.acquisition.rootfs import (
    DEFAULT_HASHING,
    PSEUDO_FILESYSTEMS,
    Hashing,
    atime_notes,
)
from drifttools.acquisition.runtime import Runtime
from drifttools.clock import now_rfc3339
from drifttools.entries import join_mount
from drifttools.errors import DriftError, LayerCorrupt, RootfsError
from drifttools.models import (
    ContainerInfo,
    ErrorRecord,
    FilesystemState,
    GuardedRoot,
    MountPoint,
    ProcessRecord,
    Snapshot,
    SocketRecord,
    Target,
)
from drifttools.options import AcquisitionOptions
from drifttools.progress import Progress, ProgressEvent, Stage, no_progress, walk_progress

#: Called right after the processes were read, before any file: the moment to take what is
#: most volatile next (the executables behind ``/proc/<pid>/exe``, for evidence bundles).
ProcessHook = Callable[[ContainerInfo, tuple[ProcessRecord, ...]], None]


@contextmanager
def frozen(runtime: Runtime, info: ContainerInfo, freeze: bool, notes: list[str]) -> Iterator[None]:
    """Pause the container for a consistent snapshot; always unpause, even on Ctrl-C."""
    if not freeze or not info.running or info.status == "paused":
        yield
        return
    runtime.pause(info.id)
    notes.append(f"container paused for the snapshot at {now_rfc3339()}")
    try:
        yield
    finally:
        runtime.unpause(info.id)
        notes.append(f"container unpaused at {now_rfc3339()}")


def take_snapshot(
    info: ContainerInfo,
    runtime: Runtime,
    options: AcquisitionOptions,
    *,
    progress: Progress = no_progress,
    after_processes: ProcessHook | None = None,
) -> Snapshot:
    """Snapshot the container ``info`` (resolved by ``runtime``) without touching it.

    Order of volatility (RFC 3227): processes and sockets, then ``after_processes``
    (when given), mounts, the mounts the container writes to (tmpfs first: memory),
    the container's log files on the host (rotation removes them), then the root filesystem.
    """
    acquired_at = now_rfc3339()
    notes: list[str] = []
    errors: list[ErrorRecord] = []
    processes: tuple[ProcessRecord, ...] = ()
    sockets: tuple[SocketRecord, ...] = ()
    mounts = list(info.mounts)
    guard = RootGuard.take(info.id, info.pid) if info.pid is not None else None
    with frozen(runtime, info, options.freeze, notes):
        if info.running:
            progress(ProgressEvent(Stage.PROCESSES))
            pids = container_pids_of(runtime, info, notes)
            processes, sockets = read_processes(
                pids, env_values=options.env_values, legacy_hashes=options.legacy_hashes
            )
            if after_processes is not None:
                after_processes(info, processes)
            mounts = _live_mounts(info)
        progress(ProgressEvent(Stage.MOUNTS))
        hashing = options.hashing
        mount_states = _mount_states(info, mounts, hashing, errors, guard, progress)
        progress(ProgressEvent(Stage.LOGS, 0, len(info.logs)))
        logs = read_logs(info.logs)
        progress(ProgressEvent(Stage.FILESYSTEM))
        rootfs = _rootfs(info, runtime, options.method, hashing, notes, guard, progress)
        filesystems = [rootfs, *mount_states]
        notes.extend(atime_notes(filesystems))
    target = Target(
        runtime=info.runtime,
        id=info.id,
        name=info.name,
        image=None,
        pid=info.pid,
        details={
            "status": info.status,
            "posture": info.posture.to_dict(),
            "engine": dict(info.engine),
        },
    )
    return Snapshot(
        target=target,
        acquired_at=acquired_at,
        filesystems=tuple(filesystems),
        processes=processes,
        sockets=sockets,
        mounts=tuple(mounts),
        notes=tuple(notes),
        errors=tuple(errors),
        finished_at=now_rfc3339(),
        container=info,
        root_guard=guard,
        logs=logs,
    )


def container_pids_of(
    runtime: Runtime, info: ContainerInfo, notes: list[str] | None = None
) -> list[int]:
    """The container's processes: the host's cgroup membership, joined with the runtime's
    own list where it keeps one (containerd's Tasks.ListPids)."""
    pids = set(container_pids(info.id))
    try:
        pids.update(runtime.engine_pids(info))
    except (DriftError, OSError) as exc:
        if notes is not None:
            notes.append(f"{runtime.name} did not list the task's pids: {exc}")
    if not pids and info.pid is not None:
        pids.add(info.pid)
    return sorted(pids)


def _live_mounts(info: ContainerInfo) -> list[MountPoint]:
    try:
        text = Path(f"/proc/{info.pid}/mountinfo").read_text(errors="surrogateescape")
    except OSError as exc:
        raise RootfsError(f"{info.name}: its mounts cannot be read (did it exit?): {exc}") from exc
    return parse_mountinfo(text, info.mounts)


def walk_container_root(
    guard: GuardedRoot, subpath: str | None = None, **options: Any
) -> _native.Tree:
    """Walk ``/proc/<pid>/root`` (or a directory inside it), checking before and after that
    the pid is still the container's: a reused pid must never lend us another root."""
    guard.check()
    tree = _native.walk(guard.root, subpath=subpath, **options)
    guard.check()
    return tree


def _rootfs(
    info: ContainerInfo,
    runtime: Runtime,
    method: str,
    hashing: Hashing,
    notes: list[str],
    guard: RootGuard | None,
    progress: Progress,
) -> FilesystemState:
    walked = walk_progress(progress, Stage.FILESYSTEM)
    if method == "auto":
        if info.upper_dir and os.path.isdir(info.upper_dir):
            method = "upper"
        elif info.running:
            method = "merged"
            notes.append("no readable overlay upper dir: the whole merged view was walked")
        else:
            method = "export"
            notes.append("overlay upper dir not readable here: filesystem read by export")
    if method == "upper":
        if not info.upper_dir:
            raise RootfsError(f"{info.name}: storage driver {info.storage_driver} has no upper dir")
        tree = _native.walk(info.upper_dir, **hashing.walk_options(), progress=walked)
        return FilesystemState("/", "upper", info.upper_dir, "walk", tree, host_root=info.upper_dir)
    if method == "merged":
        if guard is None:
            raise RootfsError(f"{info.name} is not running: its merged view cannot be walked")
        # /dev is the runtime's (its tmpfs mounts are read as mounts)
        tree = walk_container_root(
            guard,
            exclude=[*PSEUDO_FILESYSTEMS, "/dev"],
            one_filesystem=True,
            **hashing.walk_options(),
            progress=walked,
        )
        return FilesystemState(
            "/", "merged", guard.root, "walk", tree, host_root=guard.root, guard=guard
        )
    notes.append(
        f"{runtime.name} export streamed: the engine read every file (this can change atimes)"
    )
    try:
        tree = _native.read_layer(runtime.export_stream(info.id)).entries
    except LayerCorrupt as exc:
        raise RootfsError(f"{info.name}: the exported filesystem is unreadable: {exc}") from exc
    return FilesystemState("/", "merged", f"{runtime.name} export {info.id}", "export", tree)


def _mount_states(
    info: ContainerInfo,
    mounts: list[MountPoint],
    hashing: Hashing,
    errors: list[ErrorRecord],
    guard: RootGuard | None,
    progress: Progress,
) -> list[FilesystemState]:
    walked = walk_progress(progress, Stage.MOUNTS)
    states = []
    for mount in data_mounts(mounts):
        try:
            if guard is not None:
                root, subpath = guard.root, mount.mountpoint
                tree = walk_container_root(
                    guard,
                    subpath=subpath,
                    one_filesystem=True,
                    **hashing.walk_options(),
                    progress=walked,
                )
                source = f"{root}{mount.mountpoint}"
            elif mount.kind in ("volume", "bind") and mount.source:
                root, subpath = mount.source, "/"
                tree = _native.walk(
                    root, one_filesystem=True, **hashing.walk_options(), progress=walked
                )
                source = mount.source
            else:
                continue  # a stopped container's tmpfs is gone
        except NotADirectoryError:
            errors.append(ErrorRecord(mount.mountpoint, "single-file mount: not walked"))
            continue
        except OSError as exc:
            errors.append(
                ErrorRecord(mount.mountpoint, f"mount not readable: {exc.strerror or exc}")
            )
            continue
        states.append(
            FilesystemState(
                mount.mountpoint,
                "merged",
                source,
                "walk",
                tree,
                has_baseline=False,
                host_root=root,
                host_subpath=subpath,
                guard=guard,
            )
        )
    return states


def add_hardlink_siblings(
    snapshot: Snapshot, links: Mapping[str, frozenset[str]], hashing: Hashing = DEFAULT_HASHING
) -> Snapshot:
    """Read, in the merged view, the image's other links of each inode the upper dir changed.

    An upper dir holds the copied-up path only; whether its image hardlinks now
    show the new content depends on the overlay implementation (fuse-overlayfs
    keeps the link, kernel overlayfs breaks it). The merged view says what the
    container really sees, so those paths are read there.
    """
    guard = snapshot.root_guard
    if guard is None or not links:
        return snapshot
    wanted: set[str] = set()
    for state in snapshot.filesystems:
        if state.view != "upper":
            continue
        present = {join_mount(state.prefix, entry.path) for entry in state.tree}
        for path in present & links.keys():
            wanted |= links[path] - present
    if not wanted:
        return snapshot
    root = guard.root
    parts = []
    errors = list(snapshot.errors)
    for parent in _outermost({posixpath.dirname(path) for path in wanted}):
        try:
            tree = walk_container_root(
                guard, subpath=parent, one_filesystem=True, **hashing.walk_options()
            )
        except OSError as exc:  # the container moved or replaced the directory: say so
            errors.append(ErrorRecord(parent, f"image hardlinks not read: {exc.strerror or exc}"))
            continue
        parts.append(
            FilesystemState(
                "/",
                "partial",
                f"{root}{parent}",
                "walk",
                tree,
                top=parent,
                host_root=root,
                host_subpath=parent,
                guard=guard,
            )
        )
    return replace(snapshot, filesystems=(*snapshot.filesystems, *parts), errors=tuple(errors))


def _outermost(directories: set[str]) -> list[str]:
    """The directories not below another one of the set."""
    chosen: list[str] = []
    for directory in sorted(directories):
        if not any(directory == c or directory.startswith(c.rstrip("/") + "/") for c in chosen):
            chosen.append(directory)
    return chosen
