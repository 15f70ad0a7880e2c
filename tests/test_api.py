"""The baseline made on a background thread hands back its value or its exception."""

from __future__ import annotations

import threading

import pytest

from drifttools.errors import ImageNotFound
from drifttools.pipeline import in_background


def test_background_work_returns_its_value_from_another_thread() -> None:
    result = in_background(lambda: threading.current_thread().name, name="drift-test")
    assert result() == "drift-test"


def test_background_work_raises_its_error_where_it_is_awaited() -> None:
    def fail() -> None:
        raise ImageNotFound("no such image: web:1")

    result = in_background(fail, name="drift-test")
    with pytest.raises(ImageNotFound, match="web:1"):
        result()
