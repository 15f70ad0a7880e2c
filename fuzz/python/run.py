"""Run one fuzz target under atheris (libFuzzer): ``python -m fuzz.python.run NAME [ARGS]``.

ARGS are libFuzzer's (corpus directories, ``-max_total_time=8``, ``-artifact_prefix=``).
The drifttools package is instrumented for coverage. An exception the target does not
name as its refusal of bad input is a finding: libFuzzer writes the input as a crash
artifact and exits non-zero.
"""

from __future__ import annotations

import contextlib
import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["drifttools"]):
    from fuzz.python.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz.python.run {{{','.join(TARGETS)}}} [libFuzzer args]")
    target = TARGETS[sys.argv.pop(1)]

    def one_input(data: bytes) -> None:
        with contextlib.suppress(*target.refusals):
            target.run(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
