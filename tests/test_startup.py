"""Start-up loads only what a command needs: the library's import and the CLI's main module
pull no gRPC stubs, YARA engine, Docker SDK, dataframes, plotting or object-store client, and a
plain ``diff`` of a Docker container none of the other commands' code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import drifttools

HEAVY = ("grpc", "google.protobuf", "pandas", "yara", "yara_x", "docker", "dissect")
HEAVY += ("matplotlib", "fsspec", "numpy", "asyncio")
#: The code of the commands other than ``diff``: the scan, the response, bundles, exports.
OTHER_COMMANDS = ("drifttools.scan", "drifttools.fleet", "drifttools.respond", "drifttools.fix")
OTHER_COMMANDS += (
    "drifttools.response",
    "drifttools.evidence.bundle",
    "drifttools.evidence.exports",
)
OTHER_COMMANDS += ("drifttools.evidence.notebook", "drifttools.acquisition.runtimes.containerd")
OTHER_COMMANDS += ("drifttools.acquisition.runtimes.checkpoint", "drifttools_cli.fleet")
OTHER_COMMANDS += ("drifttools_cli.respond", "drifttools_cli.evidence", "drifttools_cli.show")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    return set(json.loads(out.stdout))


def among(modules: set[str], names: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == n or m.startswith(n + ".") for n in names)}


def heavy(modules: set[str]) -> set[str]:
    return among(modules, HEAVY)


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


def test_a_plain_json_diff_loads_of_the_heavy_parts_the_docker_sdk_and_yara_only(
    busybox_image, container, tmp_path: Path
) -> None:
    name = container(busybox_image["tag"], "/bin/sleep", "600")
    listing = tmp_path / "modules.json"
    code = (
        "import atexit, json, pathlib, sys\n"
        f"out = pathlib.Path({str(listing)!r})\n"
        "atexit.register(lambda: out.write_text(json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['drifttools', 'diff', {name!r}, '--format', 'json']\n"
        "from drifttools_cli.main import main\n"
        "main()"
    )
    env = {
        **os.environ,
        "DRIFTTOOLS_CACHE_DIR": str(tmp_path / "cache"),
        "DRIFTTOOLS_PROGRESS": "0",
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False)
    assert done.returncode in (0, 1), done.stderr
    modules = set(json.loads(listing.read_text()))
    assert "drifttools.analysis.classify" in modules  # the diff ran, classified
    assert {m.split(".")[0] for m in heavy(modules)} <= {"docker", "yara_x"}
    assert among(modules, OTHER_COMMANDS) == set()
    assert among(modules, ("rich",)) == set()  # JSON, no progress bar: nothing drawn
