"""Live container diff vs `docker diff` and the `docker save` path. Ratios from one run.

    .venv/bin/python benchmarks/live.py [--files 200000]

Builds (with `docker import`) an image of busybox + N small files, starts a
container, drifts it (1,000 added, 600 changed, 100 deleted paths), then times:
`docker diff`; `drifttools diff` warm (layer cache filled), the whole command;
`drifttools diff --verify-all`; a cold verified baseline from the engine's
layer store vs the `docker save`-streamed baseline. Not a test: no assertion.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drifttools import ContainerInfo, LayerCache
from drifttools.acquisition.runtimes.docker import DockerRuntime
from drifttools.baseline.container import container_baseline

EXE = str(Path(sys.executable).parent / "drifttools")
DRIFT = """
i=0; while [ $i -lt 1000 ]; do echo added-$i > /data/d0000/new-$i; i=$((i+1)); done
i=0; while [ $i -lt 600 ]; do
  echo changed >> /data/d0001/f$(printf %07d $((1000+i))); i=$((i+1))
done
i=0; while [ $i -lt 100 ]; do rm /data/d0002/f$(printf %07d $((2000+i))); i=$((i+1)); done
"""


class SaveOnlyRuntime(DockerRuntime):
    """The same engine without host access to its store: the baseline comes from `docker save`."""

    def image_config(self, info: ContainerInfo) -> bytes | None:
        return None

    def stored_layers(self, info):  # type: ignore[no-untyped-def]
        return None


def timed(label: str, action) -> float:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    print(f"  {label:<52} {seconds:8.2f} s", flush=True)
    return seconds


def run(*command: str) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_image(tag: str, files: int, work: Path, seed: int = 3) -> None:
    """Import ``tag``: busybox and ``files`` small files (their bytes drawn from ``seed``)."""
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for tool in ("sh", "sleep", "echo", "rm", "printf"):
        (root / "bin" / tool).symlink_to("busybox")
    rng = random.Random(seed)
    block = rng.randbytes(4096)
    for i in range(files):
        directory = root / "data" / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            directory.mkdir(parents=True)
        (directory / f"f{i:07d}").write_bytes(block[: rng.randint(0, 4096)])
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "import", "-", tag], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL
    )
    tar.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    args = parser.parse_args()
    tag, name = "drifttools-bench:1", "drifttools-bench"
    work = Path(tempfile.mkdtemp(prefix="drifttools-bench-"))
    cache_dir = work / "cache"
    env = {**os.environ, "DRIFTTOOLS_CACHE_DIR": str(cache_dir), "DRIFTTOOLS_PROGRESS": "0"}
    try:
        print(f"building {tag}: busybox + {args.files} files ...", flush=True)
        build_image(tag, args.files, work)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        run("docker", "run", "-d", "--name", name, tag, "/bin/sleep", "100000")
        run("docker", "exec", name, "/bin/sh", "-c", DRIFT)

        def cli(*extra: str) -> None:
            subprocess.run(
                [EXE, "diff", name, "--format", "json", *extra],
                env=env,
                stdout=subprocess.DEVNULL,
                check=False,
            )

        print("timings (wall clock)")
        docker_diff = timed("docker diff", lambda: run("docker", "diff", name))
        cold_cli = timed("drifttools diff, cold cache (whole command)", cli)
        warm = timed("drifttools diff, warm cache (whole command)", cli)
        verify_all = timed("drifttools diff --verify-all (warm)", lambda: cli("--verify-all"))
        runtime = DockerRuntime()
        info = runtime.resolve(name)
        store = timed(
            "cold baseline from the engine's layer store",
            lambda: container_baseline(info, runtime, cache=LayerCache(work / "c1")),
        )
        saved = timed(
            "cold baseline from docker save (streamed)",
            lambda: container_baseline(info, SaveOnlyRuntime(), cache=LayerCache(work / "c2")),
        )
        print("\nratios (lower is better for drifttools; target in brackets)")
        print(f"  warm drifttools diff / docker diff          {warm / docker_diff:6.3f}  [<= 0.15]")
        print(
            f"  --verify-all / docker diff                  {verify_all / docker_diff:6.3f}"
            "  [<= 0.35]"
        )
        print(f"  cold baseline: layer store / docker save    {store / saved:6.3f}  [<= 0.2]")
        print(f"  cold drifttools diff / docker diff          {cold_cli / docker_diff:6.3f}")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
