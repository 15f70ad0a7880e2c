"""Live container diff vs `docker diff` and the `docker save` path, on one Docker Engine.

    .venv/bin/python benchmarks/live.py [--engine HOST] [--files 200000] [--file-size 2048]
    .venv/bin/python benchmarks/live.py --engine HOST --files 1000000 --file-size 9000 --keep-image

Imports (with `docker import`, the tar streamed from here: no file written) an image of
busybox + N files, starts a container, drifts it (1,000 added, 600 changed, 100 deleted
paths), then prints, for the engine at `--engine` (else `DOCKER_HOST`, else the default
socket), the table of issue 15: `docker diff`; `drifttools diff` warm (layer cache filled),
the whole command; `drifttools diff --verify-all`; a cold verified baseline from the engine's
layer store vs the `docker save`-streamed one; and each command's peak RSS.

With more files than the 200k base case (the scale line: 1M files of 9,000 bytes on average
make an image of 8.4 GiB), it times the cold and warm commands on that image and the warm one
on the base image, with the same drift, and prints their ratio (`docker save` of the big
image is left out: minutes, and no target). Medians of `--repeat` runs; `uptime` before and
after (the figures are noisy on a loaded machine). ``--keep-image`` keeps the imported images
for the next run and reuses kept ones (the 8 GiB import takes minutes). Not a test: no
assertion.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from drifttools import ContainerInfo, LayerCache
from drifttools.acquisition.runtimes.docker import DockerRuntime
from drifttools.baseline.container import container_baseline

EXE = str(Path(sys.executable).parent / "drifttools")
BASE_FILES = 200_000
BASE_FILE_SIZE = 2048
FILES_PER_DIRECTORY = 1000
TOOLS = ("sh", "sleep", "echo", "rm", "printf")
PREFIX = "drifttools-bench-live"
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


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss: int  # bytes; 0 when measured in this process


@dataclass(frozen=True)
class Image:
    tag: str
    entries: int  # tar members: the baseline's entries
    size: int  # bytes of file content


def quiet(*command: str) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measured(command: list[str], env: dict[str, str]) -> Run:
    """Wall clock and peak RSS of one command. The RSS comes from GNU time (Debian's ``time``):
    a child forked from this process would count our own memory as its peak."""
    with tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", peak.name, *command],
            env=env,
            stdout=subprocess.DEVNULL,
            check=False,
        )
        seconds = time.perf_counter() - start
        return Run(seconds, int(peak.read().split()[-1]) * 1024)


def timed_here(action: Callable[[], object]) -> Run:
    start = time.perf_counter()
    action()
    return Run(time.perf_counter() - start, 0)


def median(label: str, repeat: int, action: Callable[[], Run]) -> Run:
    runs = [action() for _ in range(repeat)]
    best = Run(statistics.median(r.seconds for r in runs), max(r.peak_rss for r in runs))
    rss = f"  peak RSS {best.peak_rss / 2**20:7.1f} MiB" if best.peak_rss else ""
    print(f"  {label:<48} {best.seconds:8.2f} s{rss}", flush=True)
    return best


def _member(out: BinaryIO, info: tarfile.TarInfo, data: bytes = b"") -> None:
    out.write(info.tobuf(tarfile.GNU_FORMAT))
    if data:
        out.write(data)
        out.write(b"\0" * (-len(data) % tarfile.BLOCKSIZE))


def write_rootfs(out: BinaryIO, files: int, file_size: int, seed: int = 3) -> Image:
    """A root filesystem tar on ``out``: busybox, its tools, ``files`` files of 0 to
    2 x ``file_size`` bytes (drawn from ``seed``) in directories of a thousand."""
    rng = random.Random(seed)
    block = rng.randbytes(2 * file_size + 1)
    now = int(time.time())
    entries, size = 0, 0

    def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
        nonlocal entries
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.linkname = kind, mode, now, link
        info.size = len(data)
        _member(out, info, data)
        entries += 1

    add("bin", tarfile.DIRTYPE, 0o755)
    busybox = Path("/bin/busybox").read_bytes()
    add("bin/busybox", tarfile.REGTYPE, 0o755, busybox)
    for tool in TOOLS:
        add(f"bin/{tool}", tarfile.SYMTYPE, 0o777, link="busybox")
    add("data", tarfile.DIRTYPE, 0o755)
    for i in range(files):
        if i % FILES_PER_DIRECTORY == 0:
            add(f"data/d{i // FILES_PER_DIRECTORY:04d}", tarfile.DIRTYPE, 0o755)
        data = block[: rng.randint(0, 2 * file_size)]
        size += len(data)
        add(f"data/d{i // FILES_PER_DIRECTORY:04d}/f{i:07d}", tarfile.REGTYPE, 0o644, data)
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    return Image("", entries, size + len(busybox))


def import_image(tag: str, files: int, file_size: int) -> Image:
    """``docker import`` of :func:`write_rootfs`, streamed."""
    start = time.perf_counter()
    importer = subprocess.Popen(
        ["docker", "import", "-", tag], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    assert importer.stdin is not None
    with importer.stdin:
        written = write_rootfs(importer.stdin, files, file_size)
    if importer.wait() != 0:
        raise SystemExit(f"docker import of {tag} failed")
    image = Image(tag, written.entries, written.size)
    print(
        f"imported {tag}: {files} files, {image.size / 2**30:.2f} GiB,"
        f" {image.entries} entries, in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    return image


def image_for(files: int, file_size: int, keep: bool) -> Image:
    """The benchmark image of ``files`` files: imported, or with ``keep`` the one a run
    before kept (its entries and size counted again from the same seed, nothing imported)."""
    tag = f"{PREFIX}-{files}x{file_size}:1"
    if keep:
        present = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
        if present.returncode == 0:
            with open(os.devnull, "wb") as sink:
                counted = write_rootfs(sink, files, file_size)
            print(f"kept from an earlier run: {tag}", flush=True)
            return Image(tag, counted.entries, counted.size)
    return import_image(tag, files, file_size)


def remove_image(image: Image, keep: bool) -> None:
    if not keep:
        subprocess.run(["docker", "rmi", "-f", image.tag], capture_output=True, check=False)


def drifted(image: Image, name: str) -> None:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    quiet("docker", "run", "-d", "--name", name, image.tag, "/bin/sleep", "100000")
    quiet("docker", "exec", name, "/bin/sh", "-c", DRIFT)


def cli(name: str, env: dict[str, str], *extra: str) -> Run:
    return measured([EXE, "diff", name, "--format", "json", *extra], env)


def base_table(name: str, image: Image, work: Path, env: dict[str, str], repeat: int) -> None:
    print("timings (wall clock, median of runs)", flush=True)
    docker_diff = median("docker diff", repeat, lambda: measured(["docker", "diff", name], env))
    cold = median("drifttools diff, cold cache (whole command)", 1, lambda: cli(name, env))
    warm = median("drifttools diff, warm cache (whole command)", repeat, lambda: cli(name, env))
    trusted = median(
        "drifttools diff --trust-cache (warm)", repeat, lambda: cli(name, env, "--trust-cache")
    )
    verify_all = median(
        "drifttools diff --verify-all (warm)", repeat, lambda: cli(name, env, "--verify-all")
    )
    runtime = DockerRuntime()
    info = runtime.resolve(name)
    caches = itertools.count()
    store = median(
        "cold baseline from the engine's layer store",
        repeat,
        lambda: timed_here(
            lambda: container_baseline(
                info, runtime, cache=LayerCache(work / f"store-{next(caches)}")
            )
        ),
    )
    saved = median(
        "cold baseline from docker save (streamed)",
        repeat,
        lambda: timed_here(
            lambda: container_baseline(
                info, SaveOnlyRuntime(), cache=LayerCache(work / f"save-{next(caches)}")
            )
        ),
    )
    driver = runtime.driver
    print(f"\n| measure ({image.entries} baseline entries) | {driver} | target |")
    print("|---|---|---|")
    print(f"| `docker diff` | {docker_diff.seconds:.2f} s | — |")
    print(
        f"| warm `drifttools diff` (whole command) | {warm.seconds:.2f} s → "
        f"**{warm.seconds / docker_diff.seconds:.3f}x** | ≤ 0.08x |"
    )
    print(
        f"| warm `drifttools diff --trust-cache` (layers not re-checked) | {trusted.seconds:.2f} s"
        f" → **{trusted.seconds / docker_diff.seconds:.3f}x** | — |"
    )
    print(
        f"| `--verify-all` | {verify_all.seconds:.2f} s → "
        f"**{verify_all.seconds / docker_diff.seconds:.3f}x** | ≤ 0.25x |"
    )
    print(
        f"| cold baseline, layer store vs `docker save` | {store.seconds:.2f} s vs "
        f"{saved.seconds:.2f} s → **{store.seconds / saved.seconds:.3f}x** | ≤ 0.15x |"
    )
    print(
        f"| cold `drifttools diff` (whole command) | {cold.seconds:.2f} s → "
        f"{cold.seconds / docker_diff.seconds:.3f}x | — |"
    )
    rss_lines(image, cold, warm, env)


def rss_lines(image: Image, cold: Run, warm: Run, env: dict[str, str]) -> None:
    interpreter = measured([sys.executable, "-c", "pass"], env).peak_rss
    print(
        f"| peak RSS, cold command | {cold.peak_rss / image.entries:.0f} B per baseline entry"
        " | ≤ 300 B |"
    )
    print(
        f"| peak RSS, warm command | {(warm.peak_rss - interpreter) / 2**20:.1f} MiB above the"
        " interpreter | ≤ 50 MB |"
    )


def scale_table(name: str, image: Image, env: dict[str, str], repeat: int, keep: bool) -> None:
    print("timings (wall clock, median of runs)", flush=True)
    cold = median("drifttools diff, cold cache (whole command)", 1, lambda: cli(name, env))
    warm = median("drifttools diff, warm cache (whole command)", repeat, lambda: cli(name, env))
    trusted = median(
        "drifttools diff --trust-cache (warm)", repeat, lambda: cli(name, env, "--trust-cache")
    )
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    base = image_for(BASE_FILES, BASE_FILE_SIZE, keep)
    try:
        drifted(base, name)
        cli(name, env)  # fills the cache
        base_warm = median(
            f"warm diff, {BASE_FILES} files (whole command)", repeat, lambda: cli(name, env)
        )
        base_trusted = median(
            f"warm diff --trust-cache, {BASE_FILES} files",
            repeat,
            lambda: cli(name, env, "--trust-cache"),
        )
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        remove_image(base, keep)
    driver = DockerRuntime().driver
    print(f"\n| measure | {driver} | target |")
    print("|---|---|---|")
    print(
        f"| warm diff, {image.entries} entries ({image.size / 2**30:.1f} GiB) vs"
        f" {base.entries} entries | {warm.seconds:.2f} s vs {base_warm.seconds:.2f} s →"
        f" **{warm.seconds / base_warm.seconds:.2f}x** | ≤ 1.3x |"
    )
    print(
        f"| the same, `--trust-cache` (no stat walk of the layers) | {trusted.seconds:.2f} s vs"
        f" {base_trusted.seconds:.2f} s → **{trusted.seconds / base_trusted.seconds:.2f}x** |"
        " ≤ 1.3x |"
    )
    rss_lines(image, cold, warm, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", help="DOCKER_HOST of the engine (default: DOCKER_HOST)")
    parser.add_argument("--files", type=int, default=BASE_FILES)
    parser.add_argument("--file-size", type=int, default=BASE_FILE_SIZE, help="mean bytes a file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--keep-image",
        action="store_true",
        help="keep the images for the next run, reuse kept ones",
    )
    args = parser.parse_args()
    if args.files < 3 * FILES_PER_DIRECTORY or args.file_size < 1 or args.repeat < 1:
        parser.error("--files must be at least 3000; --file-size and --repeat at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    if args.engine:
        os.environ["DOCKER_HOST"] = args.engine  # the docker CLI, the SDK, the drifttools CLI
    work = Path(tempfile.mkdtemp(prefix="drifttools-bench-"))
    env = {**os.environ, "DRIFTTOOLS_CACHE_DIR": str(work / "cache"), "DRIFTTOOLS_PROGRESS": "0"}
    name = PREFIX
    engine = DockerRuntime()
    print(f"engine {engine.endpoint}: {engine.driver}, data root {engine.data_root}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    image = image_for(args.files, args.file_size, args.keep_image)
    try:
        drifted(image, name)
        if args.files > BASE_FILES:
            scale_table(name, image, env, args.repeat, args.keep_image)
        else:
            base_table(name, image, work, env, args.repeat)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        remove_image(image, args.keep_image)
        shutil.rmtree(work, ignore_errors=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
