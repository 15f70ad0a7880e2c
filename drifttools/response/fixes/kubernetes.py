"""The Kubernetes side of a fix: a pod spec fragment with a tight ``securityContext``.

``readOnlyRootFilesystem: true`` with an ``emptyDir`` for each directory the application
legitimately writes, ``allowPrivilegeEscalation: false``, every capability dropped (and
the ones the processes need added back), ``runAsNonRoot`` when no process runs as root.
Each setting's motivation is in the fragment's annotations.
"""

from __future__ import annotations

import re
from typing import Any

from drifttools.response.fixes.suggest import Fixes


def _dns_label(text: str, fallback: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or fallback


def pod_fragment(fixes: Fixes, container: str) -> dict[str, Any]:
    """A Pod manifest (``v1``) whose container carries the suggested security settings."""
    security: dict[str, Any] = {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": list(fixes.capabilities.detail["drop"])},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fixes.capabilities.detail["add"]:
        security["capabilities"]["add"] = list(fixes.capabilities.detail["add"])
    if fixes.user.detail.get("non_root"):
        security["runAsNonRoot"] = True
        security["runAsUser"] = int(fixes.user.detail["uid"])
    volumes, mounts = [], []
    for number, volume in enumerate(fixes.volumes):
        name = f"drift-{number}"
        empty: dict[str, Any] = {"medium": "Memory"} if volume.detail.get("tmpfs") else {}
        volumes.append({"name": name, "emptyDir": empty})
        mounts.append({"name": name, "mountPath": volume.subject})
    spec_container: dict[str, Any] = {
        "name": _dns_label(container, "app"),
        "image": fixes.image or "IMAGE",
        "securityContext": security,
    }
    if mounts:
        spec_container["volumeMounts"] = mounts
    notes = {
        f"drifttools.io/fix.{number}": f"{s.kind} {s.subject}: {'; '.join(s.motivated_by)}"[:1000]
        for number, s in enumerate(fixes.all)
    }
    spec: dict[str, Any] = {"containers": [spec_container]}
    if volumes:
        spec["volumes"] = volumes
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": _dns_label(container, "app"), "annotations": notes},
        "spec": spec,
    }
