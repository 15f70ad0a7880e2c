"""Release: the undo of isolate and freeze (``drifttools respond TARGET --release``)."""

from __future__ import annotations

from typing import Any

from drifttools.errors import ResponseRefused
from drifttools.options import ResponseOptions
from drifttools.response import netns
from drifttools.response.model import Step, Subject


def plan(subject: Subject, request: ResponseOptions) -> Step:
    if subject.info.pid is None:
        raise ResponseRefused(f"{subject.label} is not running: nothing to release")
    return Step(
        "release",
        subject.label,
        f"unpause if paused; delete nftables table {netns.FAMILY} {netns.TABLE} in "
        f"{netns.namespace_path(subject.info.pid)} if present",
        f"drifttools respond {subject.info.id[:12]} --isolate --freeze --yes",
    )


def apply(subject: Subject, request: ResponseOptions) -> dict[str, Any]:
    info = subject.info
    assert info.pid is not None
    status = subject.runtime.resolve(info.id).status
    if status == "paused":
        subject.runtime.unpause(info.id)
    removed, state = False, None
    if not info.posture.host_network:  # never isolated: no table of ours in the host's
        with netns.Namespace(info.pid, subject.current_pid) as namespace:
            removed, state = netns.release(namespace), netns.read_back(namespace)
    return {
        "unpaused": status == "paused",
        "isolation_removed": removed,
        "status_after": subject.runtime.resolve(info.id).status,
        "read_back": state,
    }
