"""The acquisition's action log: append-only, each line names the digest of the line before."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from drifttools.clock import rfc3339_ns


def now() -> str:
    """The current time as the action log writes it (RFC 3339, nanoseconds)."""
    return rfc3339_ns(time.time_ns()) or ""


class ActionLog:
    """An append-only log: each line names the digest of the line before it."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, action: str, **detail: Any) -> None:
        previous = hashlib.sha256(self.lines[-1]).hexdigest() if self.lines else None
        entry = {"seq": len(self.lines), "at": now(), "action": action, "prev": previous}
        if detail:
            entry["detail"] = detail
        self.lines.append(json.dumps(entry, sort_keys=True, ensure_ascii=False).encode() + b"\n")

    def data(self) -> bytes:
        """The log as the bundle stores it (JSON lines)."""
        return b"".join(self.lines)
