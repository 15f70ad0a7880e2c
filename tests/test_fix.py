"""Fix at the source, end to end on the real engine: a container whose entrypoint installs a
package (pip, from a local wheel directory) and writes a cache drifts; ``drifttools fix``
writes the patch; applied, built and run, the new container no longer shows that drift."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import drifttools
from tests import debian
from tests.engine import Engine, docker, unique
from tests.respond_scene import cli

DOCKERFILE = """\
FROM {base}
COPY wheels /opt/wheels
ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/wheels PIP_BREAK_SYSTEM_PACKAGES=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
COPY entrypoint.sh /entrypoint.sh
CMD ["/entrypoint.sh"]
"""
ENTRYPOINT = """\
#!/bin/sh
python3 -m pip install -q --no-cache-dir six==1.17.0
mkdir -p /srv/app-cache && echo warm > /srv/app-cache/index
echo ready
exec sleep 100000
"""
SITE = debian.SITE


def _run_until_ready(image: str, started: list[str]) -> str:
    name = unique("respond-fix")
    docker("run", "-d", "--name", name, image)
    started.append(name)
    deadline = time.monotonic() + 60
    while "ready" not in docker("logs", name):
        assert time.monotonic() < deadline, docker("logs", name)
        time.sleep(0.2)
    return name


@pytest.fixture
def context(engine: Engine, tmp_path: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    directory = tmp_path / "context"
    directory.mkdir()
    shutil.copytree(debian.inputs() / "wheels" / "runtime", directory / "wheels")
    (directory / "Dockerfile").write_text(DOCKERFILE.format(base=debian.base_image()))
    (directory / "entrypoint.sh").write_text(ENTRYPOINT)
    (directory / "entrypoint.sh").chmod(0o755)
    containers: list[str] = []
    images: list[str] = []
    yield directory, containers, images
    for name in containers:
        docker("rm", "-f", "-v", name, check=False)  # -v: the VOLUME the fix adds
    for tag in images:
        docker("rmi", "-f", tag, check=False)


def _build(context: Path, images: list[str]) -> str:
    tag = f"{unique('respond-fix')}:1"
    docker("build", "-q", "-t", tag, str(context))
    images.append(tag)
    return tag


def _diff(name: str, cache: Path) -> dict:
    result = cli("diff", name, "--no-yara", "--cache-dir", str(cache), "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_fix_patch_stops_the_drift(
    context: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    directory, containers, images = context
    drifted = _run_until_ready(_build(directory, images), containers)
    bundle = tmp_path / "drifted.tar"
    made = cli("bundle", drifted, "-o", str(bundle), "--no-yara", "--cache-dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    with drifttools.open_bundle(bundle) as opened:  # the drift the fix is about
        assert [p.after for p in opened.report.packages if p.name == "six"] == ["1.17.0"]
    out = tmp_path / "fix"
    result = cli("fix", str(bundle), "-o", str(out), "--dockerfile", str(directory / "Dockerfile"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "Dockerfile.patch", "SUMMARY.md", "allowlist.txt", "pod.yaml",
    ]  # fmt: skip
    patch = (out / "Dockerfile.patch").read_text()
    assert "+RUN python3 -m pip install --no-cache-dir six==1.17.0" in patch
    assert '+VOLUME ["/srv/app-cache"]' in patch
    summary = (out / "SUMMARY.md").read_text()
    assert "/srv/app-cache/index" in summary and "pkg:pypi/six@1.17.0" in summary
    assert "/srv/app-cache/**" in (out / "allowlist.txt").read_text()

    pod = yaml.safe_load((out / "pod.yaml").read_text())
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["volumeMounts"] == [{"name": "drift-0", "mountPath": "/srv/app-cache"}]

    subprocess.run(["patch", "-p1", "-d", str(directory)], input=patch, text=True, check=True)
    fixed = _run_until_ready(_build(directory, images), containers)
    after = _diff(fixed, tmp_path)
    root = [c["path"] for c in after["changes"] if c["mount"] == "/"]
    assert not [p for p in root if p.startswith(("/srv", f"{SITE}/six"))], root
    assert not [p for p in after["packages"] if p["name"] == "six"], after["packages"]


def test_fix_of_a_bad_input_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    result = cli("fix", str(junk), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "not a drifttools report or bundle" in result.stderr
    assert not (tmp_path / "out").exists()
