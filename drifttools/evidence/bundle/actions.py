"""The acquisition's action log: append-only, each line names the digest of the line before.

Line ``n`` is one JSON object with ``seq`` = ``n`` and ``prev`` = the SHA-256 (hex) of line
``n - 1``'s exact bytes (``null`` for the first line). The log opens with
:data:`STARTED` and ends with :data:`SEALING`, so a line removed at either end breaks the
chain too. The manifest records the chain's head (:func:`chain_head`: the number of lines
and the SHA-256 of the last), so the signature covers it; :func:`check_chain` is what
``verify`` runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from drifttools.clock import rfc3339_ns

STARTED = "bundle started"
SEALING = "acquisition record written; sealing"


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


def chain_head(data: bytes) -> dict[str, Any]:
    """What the manifest records of a log: ``{"entries": N, "head": sha256 of line N-1}``."""
    lines = data.splitlines(keepends=True)
    head = hashlib.sha256(lines[-1]).hexdigest() if lines else None
    return {"entries": len(lines), "head": head}


def check_chain(data: bytes, recorded: Any, name: str) -> list[str]:
    """Every break of the log's hash chain, and of its head against the manifest's
    ``recorded`` one, as problem lines prefixed with ``name`` (empty when it holds)."""
    problems: list[str] = []
    lines = data.splitlines(keepends=True)
    previous: str | None = None
    action: Any = None
    for seq, line in enumerate(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            problems.append(f"{name}: line {seq + 1} is not a JSON object")
            action = None
        else:
            if entry.get("seq") != seq:
                problems.append(f"{name}: line {seq + 1} has seq {entry.get('seq')!r}, not {seq}")
            if entry.get("prev") != previous:
                problems.append(f"{name}: line {seq + 1} does not name the line before it")
            action = entry.get("action")
            if seq == 0 and action != STARTED:
                problems.append(f"{name}: does not open with {STARTED!r}")
        previous = hashlib.sha256(line).hexdigest()
    if not lines or not line.endswith(b"\n"):
        problems.append(f"{name}: empty or not ended by a newline")
    elif action != SEALING:
        problems.append(f"{name}: does not end with {SEALING!r}")
    if recorded != chain_head(data):
        problems.append(f"{name}: its chain head is not the one the manifest records")
    return problems
