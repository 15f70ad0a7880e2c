"""The real Docker Engine, driven through its own CLI, for building test images and oracles.

Tests may exec into their own test containers to drift them; drifttools never does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from drifttools.baseline.images.layer_store import chain_ids

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static, installed by scripts/setup
BUSYBOX_SHA256 = hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()
BUSYBOX_MD5 = hashlib.md5(BUSYBOX.read_bytes()).hexdigest()
BUSYBOX_SHA1 = hashlib.sha1(BUSYBOX.read_bytes()).hexdigest()
MEMFD_EXEC = Path(__file__).parent / "memfd_exec.c"  # runs a program from a memfd
OVERLAY2_ENGINE = Path(__file__).parents[1] / "scripts" / "overlay2-engine"
#: The second engine's DOCKER_HOST when ``scripts/test`` started it (then it also stops it).
OVERLAY2_HOST_VARIABLE = "DRIFTTOOLS_OVERLAY2_HOST"


@dataclass(frozen=True)
class Engine:
    """One Docker Engine the live tests run against."""

    driver: str  # its storage driver, as ``docker info`` says
    data_root: Path
    host: str | None  # DOCKER_HOST; None: the machine's own engine

    @property
    def keeps_hardlinks_on_copy_up(self) -> bool:
        """Whether a write to one link of an image hardlink shows through its other links.

        fuse-overlayfs copies the inode up once for all its links; the kernel's overlayfs
        as Docker mounts it (no ``index``) copies up the written path only, so the other
        links keep the image's content (docs/docker.md).
        """
        return self.driver == "fuse-overlayfs"


def describe_engine(host: str | None) -> Engine:
    """The engine at ``host`` (None: the machine's), which must answer."""
    with docker_host(host):
        result = subprocess.run(
            ["docker", "info", "--format", "{{.Driver}} {{.DockerRootDir}}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert result.returncode == 0, f"Docker Engine {host} not reachable: {result.stderr[:300]}"
    driver, data_root = result.stdout.split()
    return Engine(driver, Path(data_root), host)


@contextmanager
def docker_host(host: str | None) -> Iterator[None]:
    """``DOCKER_HOST`` set to ``host`` for the docker CLI, the SDK and drifttools' subprocesses
    (None leaves the environment as it is)."""
    if host is None:
        yield
        return
    before = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = before


def overlay2_engine(action: str) -> str | None:
    """``scripts/overlay2-engine ACTION``: the DOCKER_HOST it prints (None: ``status`` says
    the engine is not up)."""
    result = subprocess.run(
        [str(OVERLAY2_ENGINE), action], capture_output=True, text=True, timeout=120, check=False
    )
    if action == "status" and result.returncode == 1:
        return None
    assert result.returncode == 0, f"overlay2-engine {action}: {result.stderr[-500:]}"
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else None


def docker(*args: str, input: bytes | None = None, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], input=input, capture_output=True, check=False, timeout=300
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)} failed: {result.stderr.decode(errors='replace')}"
        )
    return result.stdout.decode(errors="replace")


def docker_bytes(*args: str) -> bytes:
    return subprocess.run(["docker", *args], capture_output=True, check=True, timeout=300).stdout


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def build_image(tag: str, context: Path, dockerfile: str) -> str:
    """Build ``dockerfile`` in ``context`` with a static busybox beside it; return the image id."""
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, context / "busybox")
    (context / "Dockerfile").write_text(dockerfile)
    docker("build", "-q", "-t", tag, str(context))
    return docker("image", "inspect", "--format", "{{.Id}}", tag).strip()


def export_paths(tar_bytes: bytes) -> dict[str, tuple]:
    """What ``docker export`` holds, read by Python's own tarfile (an oracle we did not write)."""
    import hashlib
    import io
    import tarfile

    found: dict[str, tuple] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        members = archive.getmembers()
        data = {}
        for member in members:
            if member.isfile():
                data[member.name] = hashlib.sha256(archive.extractfile(member).read()).hexdigest()
        for member in members:
            path = "/" + member.name.strip("/")
            if member.isfile():
                found[path] = ("file", member.mode & 0o7777, data[member.name], None)
            elif member.islnk():
                found[path] = ("file", member.mode & 0o7777, data[member.linkname], None)
            elif member.isdir():
                found[path] = ("dir", member.mode & 0o7777, None, None)
            elif member.issym():
                found[path] = ("symlink", member.mode & 0o7777, None, member.linkname)
            else:
                found[path] = ("other", member.mode & 0o7777, None, None)
    found.pop("/", None)
    return found


def compile_c(source: Path, output: Path, *flags: str) -> Path:
    """Compile a test helper with the machine's gcc (``-static`` for FROM-scratch images)."""
    subprocess.run(
        ["gcc", *flags, "-O2", "-o", str(output), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return output


def build_memfd_image(tag: str, context: Path, dockerfile: str) -> str:
    """:func:`build_image` with the static memfd helper beside busybox (``COPY memfd_exec``)."""
    context.mkdir(parents=True, exist_ok=True)
    compile_c(MEMFD_EXEC, context / "memfd_exec", "-static")
    return build_image(tag, context, dockerfile)


def copy_docker_container(name: str, target: Path) -> Path:
    """Copy what one stopped container needs out of /var/lib/docker (``cp -a``)."""
    inspect = json.loads(docker("inspect", name))[0]
    image = json.loads(docker("image", "inspect", inspect["Image"]))[0]
    source = Path(json.loads(docker("info", "--format", "{{json .DockerRootDir}}")))
    driver = inspect["Driver"]
    root = target / "var-lib-docker"
    wanted = [
        Path("containers") / inspect["Id"],
        Path("image") / driver / "imagedb" / "content" / "sha256" / inspect["Image"][7:],
        Path("image") / driver / "layerdb" / "mounts" / inspect["Id"],
    ]
    for chain in chain_ids(image["RootFS"]["Layers"]):
        record = Path("image") / driver / "layerdb" / "sha256" / chain[7:]
        wanted.append(record)
        wanted.append(Path(driver) / (source / record / "cache-id").read_text().strip())
    mount_id = (source / wanted[2] / "mount-id").read_text().strip()
    wanted.append(Path(driver) / mount_id)
    for relative in wanted:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(source / relative), str(root / relative)], check=True)
    return root


def run_drifted(image: str, prefix: str, script: str) -> str:
    """Start a container of ``image`` that runs the shell ``script`` and sleeps; return its
    name once the script has run (the test's own container: it may exec into it)."""
    name = unique(prefix)
    docker(
        "run",
        "-d",
        "--name",
        name,
        image,
        "sh",
        "-c",
        f"{script}; touch /tmp/ready; exec sleep 600",
    )
    deadline = time.monotonic() + 30
    while "ready" not in docker("exec", name, "ls", "/tmp"):
        assert time.monotonic() < deadline, f"{name}: its script did not finish"
        time.sleep(0.1)
    return name
