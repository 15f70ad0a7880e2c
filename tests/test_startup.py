"""Start-up loads only what a command needs: the library's import and the CLI's main module
pull no gRPC stubs, YARA engine, Docker SDK, dataframes, plotting or object-store client."""

from __future__ import annotations

import json
import subprocess
import sys

import drifttools

HEAVY = ("grpc", "google.protobuf", "pandas", "yara", "yara_x", "docker", "dissect")
HEAVY += ("matplotlib", "fsspec", "numpy", "asyncio")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    return set(json.loads(out.stdout))


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}


def test_import_drifttools_loads_none_of_its_heavy_parts() -> None:
    modules = loaded_after("import drifttools")
    assert heavy(modules) == set()
    assert "magic" not in modules
    assert {m for m in modules if m.startswith("drifttools.")} <= {"drifttools._native"}


def test_the_cli_main_module_loads_none_of_them() -> None:
    assert heavy(loaded_after("import drifttools_cli.main")) == set()


def test_every_public_name_resolves_on_first_use() -> None:
    assert sorted(drifttools.__all__) == sorted(drifttools._EXPORTS)
    for name in drifttools.__all__:
        assert getattr(drifttools, name) is not None
    assert "diff" in dir(drifttools)
    try:
        drifttools.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
