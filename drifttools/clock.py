"""Timestamps as the reports write them: RFC 3339, UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339_ns(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as RFC 3339 UTC, e.g. ``2026-01-01T10:00:00.000000001Z``."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def now_rfc3339() -> str:
    """The current time as RFC 3339 UTC with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
