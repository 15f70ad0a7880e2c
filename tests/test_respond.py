"""``drifttools respond`` on the real Docker Engine: plan, preserve, isolate, freeze,
terminate, release; every step in a bundle that verifies."""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import drifttools
from drifttools.evidence.bundle.layout import ACTIONS
from drifttools.options import ResponseOptions
from tests.command import one_clear_line
from tests.engine import docker
from tests.respond_scene import Scene, cli, inspect, reaches, read_back, scene

FAST = ("--no-yara",)


@pytest.fixture
def stage(busybox_image: dict) -> Iterator[Scene]:
    with scene(busybox_image["tag"]) as made:
        yield made


def _events(since: str, name: str) -> list[str]:
    out = docker(
        "events", "--since", since, "--until", str(int(time.time()) + 1),
        "--filter", f"container={name}", "--format", "{{.Action}}",
    )  # fmt: skip
    return out.split()


def test_plan_changes_nothing(stage: Scene, tmp_path: Path) -> None:
    name = stage.client()
    before = inspect(name)
    since = f"{time.time():.9f}"
    result = cli(
        "respond", name, "--isolate", "--freeze", "--terminate", "--fix", str(tmp_path / "f")
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "nothing is changed without --yes" in lines[0]
    steps = [line.split(":")[0].split(". ")[1] for line in lines if line[:4].strip()[:1].isdigit()]
    assert steps == ["preserve", "isolate", "freeze", "terminate", "fix"]
    assert sum(line.startswith("     undo: ") for line in lines) == 5
    assert inspect(name) == before
    assert _events(since, name) == []
    assert not list(Path.cwd().glob(f"{name}-*.bundle.tar"))
    assert not (tmp_path / "f").exists()
    assert read_back(before["State"]["Pid"]) is None


def test_freeze_release_terminate_in_a_bundle_that_verifies(stage: Scene, tmp_path: Path) -> None:
    name = stage.client()
    frozen = tmp_path / "frozen.tar"
    result = cli("respond", name, "--freeze", "--bundle", str(frozen), "--yes", *FAST)
    assert result.returncode == 0, result.stderr
    assert inspect(name)["State"]["Paused"] is True
    result = cli("respond", name, "--release", "--yes")
    assert result.returncode == 0, result.stderr
    state = inspect(name)["State"]
    assert state["Paused"] is False and state["Running"] is True

    killed, fixed = tmp_path / "killed.tar", tmp_path / "fix"
    result = cli(
        "respond", name, "--terminate", "--fix", str(fixed), "--bundle", str(killed), "--yes",
        *FAST,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    state = inspect(name)["State"]  # the record is kept
    assert state["Running"] is False and state["ExitCode"] == 137

    for path, acted in ((frozen, ("freeze",)), (killed, ("terminate", "fix"))):
        assert cli("verify", str(path)).returncode == 0
        with drifttools.open_bundle(path) as opened:
            entries = opened.actions
        kinds = [(e["action"], (e.get("detail") or {}).get("step")) for e in entries]
        planned = next(e for e in entries if e["action"] == "response planned")
        assert [s["action"] for s in planned["detail"]["steps"]] == ["preserve", *acted]
        assert planned["detail"]["operator"]["host"]
        for step in ("preserve", *acted):
            assert ("response step started", step) in kinds
            ended = next(
                e for e in entries
                if e["action"] == "response step ended" and e["detail"]["step"] == step
            )  # fmt: skip
            assert ended["detail"]["ok"] is True, ended
        # preservation first, the action after it, the seal last
        assert kinds.index(("response step ended", "preserve")) < kinds.index(
            ("response step started", acted[0])
        )
        assert kinds.index(("members staged", None)) < kinds.index(
            ("response step ended", "preserve")
        )
        assert kinds[-1] == ("acquisition record written; sealing", None)
    fix_ended = next(
        e for e in entries if e["action"] == "response step ended" and e["detail"]["step"] == "fix"
    )
    for file_name, digest in fix_ended["detail"]["result"]["files"].items():
        assert hashlib.sha256((fixed / file_name).read_bytes()).hexdigest() == digest
    _flip_a_byte(killed, ACTIONS)
    failed = cli("verify", str(killed))
    assert failed.returncode == 1 and ACTIONS in failed.stderr


def _flip_a_byte(bundle: Path, member: str) -> None:
    with tarfile.open(bundle) as archive:
        offset = archive.getmember(member).offset_data
    with open(bundle, "r+b") as handle:
        handle.seek(offset + 20)
        byte = handle.read(1)
        handle.seek(offset + 20)
        handle.write(bytes([byte[0] ^ 1]))


def test_library_plan_and_remove(stage: Scene, tmp_path: Path) -> None:
    name = stage.client()
    planned = drifttools.respond(name, options=ResponseOptions(terminate=True, remove=True))
    assert not planned.executed and [s.action for s in planned.plan] == ["preserve", "terminate"]
    assert "record removed" in planned.plan[1].how
    done = drifttools.respond(
        name,
        options=ResponseOptions(terminate=True, remove=True, preserve=False),
        yes=True,
    )
    assert done.ok and done.bundle is None
    assert done.outcomes[0].result["status_after"] == "removed"
    assert docker("ps", "-a", "-q", "--filter", f"name={name}") == ""
    log = [json.loads(line) for line in done.log.splitlines()]
    assert [e["action"] for e in log] == [
        "response planned", "response step started", "response step ended",
    ]  # fmt: skip


def test_bad_input_is_one_line(stage: Scene) -> None:
    one_clear_line(cli("respond", "respond-no-such-container", "--freeze"), "no container")
    name = stage.client()
    usage = cli("respond", name, "--remove")
    assert usage.returncode == 2 and "--remove goes with --terminate" in usage.stderr


def test_isolation_proven_by_traffic_and_released(stage: Scene) -> None:
    server, address = stage.server()
    client, other = stage.client(), stage.client()
    assert reaches(client, address) and reaches(other, address)
    pid = inspect(client)["State"]["Pid"]
    for _ in range(2):  # idempotent: the table is replaced, not doubled
        result = cli("respond", client, "--isolate", "--no-bundle", "--yes", "--format", "json")
        assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout)["outcomes"][0]["result"]["read_back"]
    assert {hook: chain["policy"] for hook, chain in reported["chains"].items()} == {
        "input": "drop", "output": "drop", "forward": "drop",
    }  # fmt: skip
    assert read_back(pid) == reported
    assert not reaches(client, address)
    assert reaches(other, address)  # the server still answers the others
    assert read_back(inspect(server)["State"]["Pid"]) is None
    released = cli("respond", client, "--release", "--yes", "--format", "json")
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout)["outcomes"][0]["result"]["isolation_removed"] is True
    assert read_back(pid) is None
    assert reaches(client, address)
    again = cli("respond", client, "--release", "--yes", "--format", "json")
    assert json.loads(again.stdout)["outcomes"][0]["result"]["isolation_removed"] is False


def test_host_network_refused(stage: Scene) -> None:
    name = stage.run("--network", "host")
    for extra in ((), ("--yes",)):
        one_clear_line(cli("respond", name, "--isolate", *extra), "host's network")
    assert inspect(name)["State"]["Running"] is True


def test_failed_preservation_stops_the_response(stage: Scene, tmp_path: Path) -> None:
    name = stage.client()
    taken = tmp_path / "taken.tar"
    taken.write_bytes(b"")
    one_clear_line(cli("respond", name, "--freeze", "--bundle", str(taken), "--yes"), "exists")
    assert inspect(name)["State"]["Paused"] is False
