"""Native core vs the tools a responder would otherwise use. Prints ratios from one run.

    .venv/bin/python benchmarks/core.py [--files 200000] [--work /var/tmp/drifttools-bench]

Not a test: nothing here asserts a time. Warm page cache throughout (each
input is read once before it is measured); wall-clock seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from drifttools import _native


def timed(label: str, action) -> float:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    print(f"  {label:<48} {seconds:8.2f} s", flush=True)
    return seconds


def shell(command: str) -> None:
    subprocess.run(["bash", "-c", command], check=True, stdout=subprocess.DEVNULL)


def make_tree(root: Path, files: int) -> int:
    """``files`` files of 0-16 KiB in 1,000-file directories; returns total bytes."""
    if (root / ".complete").exists():
        return int((root / ".complete").read_text())
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(7)
    block = rng.randbytes(16384)
    total = 0
    for i in range(files):
        directory = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            directory.mkdir(parents=True)
        size = rng.randint(0, 16384)
        (directory / f"f{i:07d}").write_bytes(block[:size])
        total += size
    (root / ".complete").write_text(str(total))
    return total


def python_walk(root: Path) -> None:
    for current, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(current, name), "rb") as handle:
                hashlib.file_digest(handle, "sha256")


def python_tar_index(path: Path) -> None:
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile():
                hashlib.file_digest(archive.extractfile(member), "sha256")


RSS_PROBE = """
import sys
from drifttools import _native

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset the peak (VmHWM) to the current RSS: imports do not count
base = status("VmRSS:")
tree = _native.walk(sys.argv[1])
print(base, status("VmHWM:"), len(tree))
"""


def rss_per_file(root: Path) -> float:
    output = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(root)], capture_output=True, text=True, check=True
    ).stdout.split()
    base_kib, peak_kib, entries = (int(x) for x in output)
    return (peak_kib - base_kib) * 1024 / entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/drifttools-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs")
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    tree = work / "tree"
    print(f"generating {args.files} files of 0-16 KiB under {tree} ...", flush=True)
    total = make_tree(tree, args.files)
    print(f"tree: {args.files} files, {total / 2**30:.2f} GiB", flush=True)
    shell(f"find {tree} -type f -print0 | xargs -0 cat > /dev/null")  # warm the page cache

    print("walk + SHA-256 of every file (small files)")
    native = timed("drifttools native walk (2 threads)", lambda: _native.walk(str(tree)))
    sha256sum = timed(
        "find | xargs -0 -P2 sha256sum",
        lambda: shell(f"find {tree} -type f -print0 | xargs -0 -P2 -n 1000 sha256sum"),
    )
    openssl = timed(
        "find | xargs -0 -P2 openssl dgst -sha256",
        lambda: shell(f"find {tree} -type f -print0 | xargs -0 -P2 -n 1000 openssl dgst -sha256"),
    )
    python = timed("Python os.walk + hashlib", lambda: python_walk(tree))
    print("walk + SHA-256, MD5 and SHA-1 of every file (small files)")
    legacy = timed(
        "drifttools native walk, legacy hashes too",
        lambda: _native.walk(str(tree), legacy_hashes=True),
    )
    three_sums = timed(
        "find | xargs -0 -P2 md5sum; sha1sum; sha256sum",
        lambda: shell(
            " && ".join(
                f"find {tree} -type f -print0 | xargs -0 -P2 -n 1000 {tool} > /dev/null"
                for tool in ("md5sum", "sha1sum", "sha256sum")
            )
        ),
    )

    big = work / "big.bin"
    if not big.exists() or big.stat().st_size != 1 << 30:
        with big.open("wb") as handle:
            for _ in range(64):
                handle.write(os.urandom(16 << 20))
    big_dir = work / "bigdir"
    big_dir.mkdir(exist_ok=True)
    if not (big_dir / "big.bin").exists():
        os.link(big, big_dir / "big.bin")
    shell(f"cat {big} > /dev/null")
    print("one 1 GiB file")
    native_big = timed("drifttools native walk", lambda: _native.walk(str(big_dir)))
    openssl_big = timed("openssl dgst -sha256", lambda: shell(f"openssl dgst -sha256 {big}"))
    legacy_big = timed(
        "drifttools native walk, legacy hashes too",
        lambda: _native.walk(str(big_dir), legacy_hashes=True),
    )
    three_big = timed(
        "md5sum; sha1sum; sha256sum",
        lambda: shell(f"md5sum {big} && sha1sum {big} && sha256sum {big}"),
    )

    layer = work / "layer.tar"
    layer_gz = work / "layer.tar.gz"
    if not layer_gz.exists():
        shell(f"cd {tree} && tar -cf {layer} d00[0-4]*")  # 50,000 files
        shell(f"gzip -1 -k -c {layer} > {layer_gz}")
    with tarfile.open(layer) as archive:
        members = sum(1 for _ in archive)
    shell(f"cat {layer} {layer_gz} > /dev/null")
    print(f"layer indexing ({members} members, {layer.stat().st_size / 2**20:.0f} MiB tar)")
    native_tar = timed("drifttools read_layer (plain tar)", lambda: _native.read_layer(str(layer)))
    python_tar = timed("Python tarfile + hashlib (plain tar)", lambda: python_tar_index(layer))
    native_gz = timed("drifttools read_layer (gzip)", lambda: _native.read_layer(str(layer_gz)))
    zcat = timed("zcat > /dev/null", lambda: shell(f"zcat {layer_gz} > /dev/null"))
    zcat_sha = timed("zcat | sha256sum", lambda: shell(f"zcat {layer_gz} | sha256sum"))

    per_file = rss_per_file(tree)

    print("\nratios (higher is better for drifttools; target in brackets)")
    print(f"  walk+hash vs find|xargs sha256sum     {sha256sum / native:6.2f}x  [>= 3.5x]")
    print(f"  walk+hash vs find|xargs openssl       {openssl / native:6.2f}x  [>= 1.5x]")
    print(f"  walk+hash vs Python hashlib walk      {python / native:6.2f}x")
    print(
        f"  files/s: drifttools {args.files / native:,.0f},"
        f" sha256sum {args.files / sha256sum:,.0f}, "
        f"openssl {args.files / openssl:,.0f}, python {args.files / python:,.0f}"
    )
    print(f"  1 GiB file vs openssl dgst            {openssl_big / native_big:6.2f}x  [>= 1.6x]")
    print(f"  cost of MD5+SHA-1 (small files)       {legacy / native:6.2f}x the SHA-256-only walk")
    print(
        f"  cost of MD5+SHA-1 (1 GiB file)        {legacy_big / native_big:6.2f}x"
        " the SHA-256-only walk"
    )
    print(f"  3 digests vs md5sum;sha1sum;sha256sum {three_sums / legacy:6.2f}x (small files)")
    print(f"  3 digests vs md5sum;sha1sum;sha256sum {three_big / legacy_big:6.2f}x (1 GiB file)")
    print(f"  layer index vs Python tarfile         {python_tar / native_tar:6.2f}x  [>= 10x]")
    print(f"  gzip layer index vs zcat              {zcat / native_gz:6.2f}x  [>= 0.8x]")
    print(f"  gzip layer index vs zcat|sha256sum    {zcat_sha / native_gz:6.2f}x")
    print(f"  peak RSS per walked file              {per_file:6.0f} B  [<= 300 B]")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"(maxrss of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB)")


if __name__ == "__main__":
    main()
