"""Every fuzz target (fuzz/python/targets.py) on its committed seeds and on each input the
fuzzer once crashed it with (fuzz/python/regressions/<target>/): each is read, or refused
with the target's documented error, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.python.targets import TARGETS

FUZZ = Path(__file__).parents[1] / "fuzz" / "python"
INPUTS = sorted(
    (kind, path)
    for kind in ("seeds", "regressions")
    for path in (FUZZ / kind).glob("*/*")
    if path.is_file()
)


def test_every_target_has_a_seed() -> None:
    assert {path.parent.name for kind, path in INPUTS if kind == "seeds"} == set(TARGETS)


@pytest.mark.parametrize(
    ("kind", "path"), INPUTS, ids=[f"{kind}/{p.parent.name}/{p.name}" for kind, p in INPUTS]
)
def test_an_input_is_read_or_refused_cleanly(kind: str, path: Path) -> None:
    target = TARGETS[path.parent.name]
    try:
        target.run(path.read_bytes())
    except target.refusals:
        assert kind == "regressions", f"a seed is refused: {path}"
