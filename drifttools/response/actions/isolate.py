"""Isolate: drop every packet but loopback, inside the container's own network namespace."""

from __future__ import annotations

from typing import Any

from drifttools.errors import ResponseRefused
from drifttools.options import ResponseOptions
from drifttools.response import netns
from drifttools.response.model import Step, Subject


def _pid(subject: Subject) -> int:
    if subject.info.pid is None:
        raise ResponseRefused(f"{subject.label} is not running: it has no network to isolate")
    return subject.info.pid


def plan(subject: Subject, request: ResponseOptions) -> Step:
    pid = _pid(subject)
    netns.check_own_namespace(pid, subject.info.posture.host_network)
    return Step(
        "isolate",
        subject.label,
        f"nftables table {netns.FAMILY} {netns.TABLE} in {netns.namespace_path(pid)}: "
        "input, output and forward dropped but loopback (and Docker's embedded DNS), "
        "read back",
        f"drifttools respond {subject.info.id[:12]} --release (deletes the table)",
    )


def apply(subject: Subject, request: ResponseOptions) -> dict[str, Any]:
    pid = _pid(subject)
    with netns.Namespace(pid, subject.current_pid) as namespace:
        netns.check_own_namespace(pid, subject.info.posture.host_network, namespace)
        state = netns.isolate(namespace)
    return {"pid": pid, "netns": netns.namespace_path(pid), "read_back": state}
