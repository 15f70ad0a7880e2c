"""Terminate: SIGKILL through the runtime. Docker keeps the container record (its writable
layer stays readable) unless asked to remove it; containerd's task is killed and deleted.
A Kubernetes pod's container is restarted by its kubelet from the image: the "replace" of
the cycle, watched for and recorded."""

from __future__ import annotations

import time
from typing import Any

from drifttools.errors import ContainerNotFound, ResponseRefused
from drifttools.options import ResponseOptions
from drifttools.response.model import Step, Subject


def plan(subject: Subject, request: ResponseOptions) -> Step:
    if not subject.info.running:
        raise ResponseRefused(f"{subject.label} is not running: nothing to terminate")
    keep = "the record removed" if request.remove else "the record and its writable layer kept"
    how = {
        "docker": f"docker kill (SIGKILL), {keep}",
        "containerd": "containerd Tasks.Kill (SIGKILL, every process) and Tasks.Delete"
        + (", container record and snapshot removed" if request.remove else ""),
    }.get(subject.info.runtime, "SIGKILL through the runtime")
    notes: tuple[str, ...] = ()
    undo = "none: the processes are gone (the image can be started again)"
    if subject.pod is not None:
        namespace, pod, container = subject.pod
        notes = (
            f"pod {namespace}/{pod}: its kubelet restarts container {container or '?'} from "
            "its image (the replacement); the restart is watched for and recorded",
        )
        undo = "none: the kubelet replaces it from its image"
    return Step("terminate", subject.label, how, undo, notes)


def apply(subject: Subject, request: ResponseOptions) -> dict[str, Any]:
    runtime, info = subject.runtime, subject.info
    runtime.terminate(info.id, request.remove)
    result: dict[str, Any] = {"removed": request.remove}
    try:
        result["status_after"] = runtime.resolve(info.id).status
    except ContainerNotFound:
        result["status_after"] = "removed"
    if subject.pod is not None:
        result["restart"] = _watch_restart(subject, request.restart_wait)
    return result


def _watch_restart(subject: Subject, wait: float) -> dict[str, Any]:
    """The container the kubelet started in the terminated one's place, if seen in time."""
    assert subject.pod is not None
    namespace, pod, container = subject.pod
    reference = f"k8s://{namespace}/{pod}" + (f"/{container}" if container else "")
    deadline = time.monotonic() + wait
    while True:
        try:
            info = subject.runtime.resolve(reference)
        except ContainerNotFound:
            info = None
        if info is not None and info.id != subject.info.id and info.running:
            return {"seen": True, "id": info.id, "reference": reference}
        if time.monotonic() >= deadline:
            return {"seen": False, "reference": reference, "waited_seconds": wait}
        time.sleep(0.5)
