"""Shared fixtures: real images built by the real Docker Engine (present on CI: never skipped).

Each fixture that needs the engine asks for ``engine`` (directly or through another), so a
test of pure code never waits on one; ``pytest --setup-plan`` shows which a test sets up.

A test marked ``both_drivers`` runs twice: on the machine's engine (fuse-overlayfs) and on a
second engine on the kernel's overlay2 driver (``scripts/overlay2-engine``), which production
hosts run. The ``engine`` fixture points ``DOCKER_HOST`` at its engine while it is set up, so
the fixtures built on it (images, containers) and the test itself use that engine.
"""

from __future__ import annotations

import os
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
from tests.engine import (
    OVERLAY2_HOST_VARIABLE,
    Engine,
    build_image,
    build_memfd_image,
    describe_engine,
    docker,
    docker_host,
    overlay2_engine,
    unique,
)
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


#: The second engine's parameter; the machine's own is None, the cache key of an engine
#: fixture no test parametrized, so both share one set-up.
OVERLAY2 = "overlay2"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_drivers: run on the fuse-overlayfs engine and on the overlay2 one"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_drivers"):
        metafunc.parametrize(
            "engine",
            [pytest.param(None, id="fuse-overlayfs"), pytest.param(OVERLAY2, id=OVERLAY2)],
            indirect=True,
            scope="session",
        )


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Tests in the order collected, the overlay2 runs last. The machine's engine is set up
    once (a test on ``[fuse-overlayfs]`` shares it with the unmarked ones, so pytest's own
    grouping by parameter would only split modules and set their fixtures up twice), and
    DOCKER_HOST points at the second engine only for the tests at the end."""
    collected = {id(item): n for n, item in enumerate(items)}
    yield  # -k and -m deselect, pytest groups
    items.sort(key=lambda item: (_on_overlay2(item), collected[id(item)]))


def _on_overlay2(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("engine") == OVERLAY2


@pytest.fixture(scope="session")
def overlay2_host() -> Iterator[str]:
    """The kernel overlay2 engine's DOCKER_HOST: the one ``scripts/test`` started, one already
    up (others use it: left running), or one started here and stopped at the end."""
    given = os.environ.get(OVERLAY2_HOST_VARIABLE)
    if given:
        yield given
        return
    running = overlay2_engine("status")
    host = running or overlay2_engine("start")
    assert host is not None
    yield host
    if running is None:
        overlay2_engine("stop")


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The Docker Engine must answer: on CI it is there, so its absence fails loudly."""
    host = request.getfixturevalue("overlay2_host") if getattr(request, "param", None) else None
    found = describe_engine(host)
    if host is not None:
        assert found.driver == "overlay2", found
    with docker_host(host):
        yield found


@pytest.fixture(scope="session")
def busybox_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The test image, built once, with its ``docker save`` tar."""
    work = tmp_path_factory.mktemp("busybox-image")
    tag = f"{unique('drifttools-test')}:1"
    image_id = build_image(tag, work / "context", BUSYBOX_DOCKERFILE)
    saved = work / "save.tar"
    docker("save", "-o", str(saved), tag)
    yield {"tag": tag, "id": image_id, "save": saved}
    docker("rmi", "-f", tag, check=False)


@pytest.fixture
def container(engine: Engine) -> Iterator:
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
def evidence_scene(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
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
