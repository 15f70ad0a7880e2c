"""Responses triggered by Falco: alerts in Falco's documented JSON output shape
(``json_output: true``), from a file and from a real HTTP client on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import drifttools
from drifttools.response.falco import policy_from_dict
from tests.command import EXE, one_clear_line
from tests.engine import Engine
from tests.respond_scene import Scene, cli, inspect, scene


def alert(rule: str, priority: str, container: str, time: str, **fields: object) -> dict:
    """An alert as Falco writes it with ``json_output`` and ``json_include_output_property``."""
    output_fields = {
        "container.id": container,
        "container.name": "app",
        "container.image.repository": "respond",
        "evt.time": 1733222400000000000,
        "k8s.ns.name": None,
        "k8s.pod.name": None,
        "proc.cmdline": "kworkerd -o pool",
        "proc.exepath": "/tmp/kworkerd",
        "proc.name": "kworkerd",
        "user.name": "root",
        **fields,
    }
    return {
        "hostname": "node-1",
        "output": f"12:00:00.000000000: {priority} {rule} (container_id={container})",
        "output_fields": output_fields,
        "priority": priority,
        "rule": rule,
        "source": "syscall",
        "tags": ["container", "maturity_stable", "mitre_persistence", "process", "TA0003"],
        "time": time,
    }


DROP = "Drop and execute new binary in container"
SHELL = "Terminal shell in container"
POLICY = """\
window: 300
bundles: {bundles}
responses:
  - rules: ["{drop}"]
    actions: [freeze]
    dry_run: false
    fix: true
  - priority: notice
    actions: [isolate]
"""


@pytest.fixture
def stage(busybox_image: dict) -> Iterator[Scene]:
    with scene(busybox_image["tag"]) as made:
        yield made


def _policy(tmp_path: Path) -> Path:
    (tmp_path / "bundles").mkdir()
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(bundles=tmp_path / "bundles", drop=DROP))
    return path


def test_from_falco_one_response_per_container_per_window(stage: Scene, tmp_path: Path) -> None:
    name = stage.client()
    short = inspect(name)["Id"][:12]
    lines = [
        alert(DROP, "Critical", short, "2026-12-03T09:00:00.000000000Z"),
        alert(DROP, "Critical", short, "2026-12-03T09:00:10.000000000Z"),  # same window
        alert(SHELL, "Notice", "host", "2026-12-03T09:00:11.000000000Z"),
        alert(SHELL, "Notice", "0123456789ab", "2026-12-03T09:00:12.000000000Z"),
        alert("Read sensitive file untrusted", "Debug", short, "2026-12-03T09:00:13.0Z"),
        alert(SHELL, "Notice", short, "2026-12-03T09:06:40.000000000Z"),  # the next window
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\nnot json\n"
    result = cli("respond", "--from-falco", "-", "--policy", str(_policy(tmp_path)), input=text)
    assert result.returncode == 0, result.stderr
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["decision"], d.get("reason")) for d in decisions] == [
        ("responded", None),
        ("skipped", "already responded in this window"),
        ("skipped", "a host process, not a container"),
        ("skipped", "unknown container"),
        ("skipped", "no response of the policy matches"),
        ("planned", None),
        ("skipped", "not a Falco alert: Expecting value: line 1 column 1 (char 0)"),
    ]
    assert inspect(name)["State"]["Paused"] is True
    bundle = Path(decisions[0]["response"]["bundle"]["path"])
    assert drifttools.verify_bundle(bundle).ok
    with drifttools.open_bundle(bundle) as opened:
        planned = next(a for a in opened.actions if a["action"] == "response planned")
    assert planned["detail"]["trigger"]["rule"] == DROP
    assert planned["detail"]["trigger"]["output_fields"]["proc.exepath"] == "/tmp/kworkerd"
    assert [s["action"] for s in planned["detail"]["steps"]] == ["preserve", "freeze", "fix"]
    assert (bundle.with_name(bundle.name + ".fix") / "SUMMARY.md").is_file()


def test_policy_errors_are_clear() -> None:
    with pytest.raises(match="unknown action 'nuke'"):
        policy_from_dict({"responses": [{"actions": ["nuke"]}]})
    with pytest.raises(match="unknown priority"):
        policy_from_dict({"responses": [{"actions": [], "priority": "urgent"}]})


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_listen_answers_falcosidekick_posts(stage: Scene, tmp_path: Path) -> None:
    name = stage.client()
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    process = subprocess.Popen(
        [EXE, "respond", "--listen", "127.0.0.1:0", "--policy", str(_policy(tmp_path)),
         "--secret-file", str(secret)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].strip()
        good = {"X-Drifttools-Secret": "s3cret", "Content-Type": "application/json"}
        posted = alert(SHELL, "Notice", name, "2026-12-03T09:00:00Z")  # as Falcosidekick
        posted["uuid"] = "7e7fa12c-4ab4-4e3b-9fbd-6bd2d3c2b1f5"  # posts it: with its uuid
        shell = json.dumps(posted).encode()
        assert _post(url, shell, {"X-Drifttools-Secret": "wrong"})[0] == 401
        assert _post(url, shell, {})[0] == 401
        too_big = {**good, "Content-Length": str((1 << 20) + 1)}  # refused before it is read
        assert _post(url, b"x", too_big)[0] == 413
        status, answer = _post(url, b"{not json", good)
        assert status == 400 and "not a Falco alert" in answer["error"]
        assert _post(url, b'{"output": "no rule"}', good)[0] == 400
        try:
            urllib.request.urlopen(url, timeout=30)
        except urllib.error.HTTPError as error:
            assert error.code == 405
        status, answer = _post(url, shell, good)
        assert status == 200 and answer["decision"] == "planned", answer
        assert [s["action"] for s in answer["response"]["plan"]] == ["preserve", "isolate"]
        assert inspect(name)["State"]["Running"] is True
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)  # closes the pipes
    recorded = [json.loads(line) for line in out.splitlines()]
    assert [r.get("status") for r in recorded if r["decision"] == "refused"] == [
        401, 401, 413, 400, 400, 405,
    ]  # fmt: skip


def test_listen_and_policy_input_errors_are_one_line(engine: Engine, tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    env_free = {k: v for k, v in os.environ.items() if k != "DRIFTTOOLS_LISTEN_SECRET"}
    result = subprocess.run(
        [EXE, "respond", "--listen", "127.0.0.1:0", "--policy", str(policy)],
        capture_output=True, text=True, env=env_free, timeout=60, check=False,
    )  # fmt: skip
    one_clear_line(result, "shared secret")
    bad = tmp_path / "bad.yaml"
    bad.write_text("responses:\n  - actions: [nuke]\n")
    one_clear_line(cli("respond", "--from-falco", "-", "--policy", str(bad), input=""), "nuke")
    usage = cli("respond", "web-1", "--from-falco", "-", "--policy", str(policy), input="")
    assert usage.returncode == 2 and "no TARGET" in usage.stderr
