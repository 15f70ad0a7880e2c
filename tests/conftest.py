"""Shared fixtures: real images built by the real Docker Engine (present on CI: never skipped).

Each fixture that needs the engine asks for ``engine`` (directly or through another), so a
test of pure code never waits on one; ``pytest --setup-plan`` shows which a test sets up.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import drifttools
from drifttools.acquisition.cgroups import container_pids
from drifttools.acquisition.processes import read_processes
from drifttools.options import BaselineOptions
from tests import containerd_daemon
from tests.engine import build_image, build_memfd_image, docker, unique
from tests.evidence_scene import SCENE, SCENE_DOCKERFILE

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


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def containerd_image_tar(busybox_image: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox test image, re-tagged for containerd, as a ``docker save`` tar."""
    docker("tag", busybox_image["tag"], containerd_daemon.IMAGE)
    saved = tmp_path_factory.mktemp("ctd-image") / "image.tar"
    docker("save", "-o", str(saved), containerd_daemon.IMAGE)
    docker("rmi", containerd_daemon.IMAGE, check=False)
    return saved


@pytest.fixture(scope="session")
def evidence_scene(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The running scene of :mod:`tests.evidence_scene`, a warm layer cache, a signing key pair."""
    work = tmp_path_factory.mktemp("bundle-scene")
    tag = f"{unique('drifttools-bundle')}:1"
    build_memfd_image(tag, work / "context", SCENE_DOCKERFILE)
    name = unique("drifttools-bundle")
    docker("run", "-d", "--name", name, tag, "sh", "-c", SCENE)
    try:
        container_id = docker("inspect", "--format", "{{.Id}}", name).strip()
        deadline = time.monotonic() + 30
        while True:
            records, _ = read_processes(container_pids(container_id))
            states = {r.cmdline[-1]: r.exe_state for r in records if r.cmdline}
            if states.get("100003") == "memfd" and states.get("100004") == "present":
                break
            assert time.monotonic() < deadline, f"scene not up: {states}"
            time.sleep(0.1)
        cache = drifttools.LayerCache(work / "cache")
        drifttools.diff(
            name, baseline=BaselineOptions(cache=cache)
        )  # warm: every bundle reads the layers the same way
        key = Ed25519PrivateKey.generate()
        private, public = work / "key.pem", work / "key.pub"
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        yield {
            "name": name,
            "id": container_id,
            "cache": cache,
            "key": private,
            "pub": public,
            "work": work,
        }
    finally:
        docker("rm", "-f", name, check=False)
        docker("rmi", "-f", tag, check=False)
