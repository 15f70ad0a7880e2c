"""Containers and networks of the respond tests, all named ``respond-…`` and removed after.

Traffic only ever flows between the test's own containers, on a network the test creates.
The test is the actor that drives traffic (``docker exec ... wget``); drifttools never execs.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from drifttools.response import netns
from tests.command import EXE
from tests.engine import docker, unique

PORT = 8080


def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``drifttools ARGS`` (the installed command, this worktree's code)."""
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, input=input, timeout=300, check=False
    )


def inspect(name: str) -> dict[str, Any]:
    return json.loads(docker("inspect", name))[0]


def reaches(client: str, address: str) -> bool:
    """Whether ``client`` gets the page ``address`` serves (one HTTP/1.0 GET over busybox
    nc, 2 s timeout; busybox's static wget cannot resolve even an address)."""
    result = subprocess.run(
        ["docker", "exec", client, "sh", "-c",
         f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} {PORT}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    return result.returncode == 0 and "respond" in result.stdout


def read_back(pid: int) -> dict[str, Any] | None:
    """The isolation table in the network namespace of ``pid``, as :mod:`netns` reads it."""
    with netns.Namespace(pid, lambda: pid) as namespace:
        return netns.read_back(namespace)


@dataclass
class Scene:
    """Containers started on one test network of our own."""

    image: str
    network: str = field(default_factory=lambda: unique("respond-net"))
    names: list[str] = field(default_factory=list)

    def run(self, *args: str, command: str = "exec sleep 100000") -> str:
        name = unique("respond")
        docker("run", "-d", "--name", name, *args, self.image, "sh", "-c", command)
        self.names.append(name)
        return name

    def server(self) -> tuple[str, str]:
        """A container serving a page on the test network: its name and address."""
        name = self.run(
            "--network",
            self.network,
            command=f"mkdir -p /www && echo respond > /www/index.html && "
            f"exec httpd -f -p {PORT} -h /www",
        )
        address = inspect(name)["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        deadline = time.monotonic() + 20
        while not self.serving(name, address):
            assert time.monotonic() < deadline, "test server did not come up"
            time.sleep(0.2)
        return name, address

    def serving(self, name: str, address: str) -> bool:
        return reaches(name, "127.0.0.1") if address else False

    def client(self) -> str:
        return self.run("--network", self.network)


@contextmanager
def scene(image: str) -> Iterator[Scene]:
    made = Scene(image)
    docker("network", "create", "--internal", made.network)
    try:
        yield made
    finally:
        for name in made.names:
            docker("rm", "-f", name, check=False)
        docker("network", "rm", made.network, check=False)
