"""The progress callback the library accepts. Drawing it is the caller's business.

A callback receives ``(stage, done, total)``: a short stage name such as
``"layer 2/5"`` or ``"walk"``, the units done so far, and the total when known.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int | None], None]


def no_progress(stage: str, done: int, total: int | None) -> None:
    """The default callback: report nothing."""
