"""The installed ``drifttools`` command, and the shape of its usage errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

EXE = shutil.which("drifttools") or str(Path(__file__).parents[1] / ".venv" / "bin" / "drifttools")


def one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """``result`` failed with exit 2 and one ``drifttools: error:`` line naming ``words``."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("drifttools: error:")
    for word in words:
        assert word in lines[0], lines[0]
