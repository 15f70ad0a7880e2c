"""Timestamps as the reports write them: RFC 3339, UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def rfc3339_ns(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as RFC 3339 UTC, e.g. ``2026-01-01T10:00:00.000000001Z``."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{_second(seconds)}.{fraction:09d}Z"


@lru_cache(maxsize=1 << 16)
def _second(seconds: int) -> str:
    """The whole second as text (cached: the files of a report share few seconds)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def now_rfc3339() -> str:
    """The current time as RFC 3339 UTC with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
