"""Shared fixtures: real images built by the real Docker Engine (present on CI: never skipped)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from drifttools import report_schema
from tests.engine import build_image, docker, unique

#: A busybox image whose layers delete a file, replace a directory's content,
#: hardlink a file and replace a directory by a file (legacy builder, 4 layers).
BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /opt/app/sub /var/log /tmp /root/.ssh \\
 && echo hello > /opt/app/a && echo b > /opt/app/sub/b && ln /opt/app/a /opt/app/hard \\
 && echo gone > /etc/gone && mkdir /replaced && echo x > /replaced/x \\
 && printf '#!/bin/sh\\nexec sleep 100000\\n' > /entrypoint.sh && chmod 755 /entrypoint.sh
RUN rm /etc/gone && rm -rf /opt/app/sub && mkdir /opt/app/sub && echo new > /opt/app/sub/c \\
 && rm -rf /replaced && echo file > /replaced
CMD ["/entrypoint.sh"]
"""


@pytest.fixture(scope="session")
def engine() -> None:
    """The Docker Engine must answer: on CI it is there, so its absence fails loudly."""
    result = subprocess.run(["docker", "info"], capture_output=True, check=False)
    assert result.returncode == 0, f"Docker Engine not reachable: {result.stderr.decode()[:300]}"


@pytest.fixture(scope="session")
def busybox_image(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The test image, built once, with its ``docker save`` tar."""
    work = tmp_path_factory.mktemp("busybox-image")
    tag = f"{unique('drifttools-test')}:1"
    image_id = build_image(tag, work / "context", BUSYBOX_DOCKERFILE)
    saved = work / "save.tar"
    docker("save", "-o", str(saved), tag)
    yield {"tag": tag, "id": image_id, "save": saved}
    docker("rmi", "-f", tag, check=False)


@pytest.fixture
def container(engine: None) -> Iterator:
    """Start containers for a test; all removed afterwards."""
    started: list[str] = []

    def run(image: str, *command: str) -> str:
        name = unique("drifttools-test")
        docker("run", "-d", "--name", name, image, *command)
        started.append(name)
        return name

    yield run
    for name in started:
        docker("rm", "-f", name, check=False)


def assert_valid_report(document: dict) -> None:
    """Every report the tests produce must validate against the shipped schema."""
    jsonschema.validate(document, report_schema())
    json.dumps(document)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
