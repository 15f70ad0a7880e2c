"""Classification cost: YARA over a drifted set vs the ``yara`` command line on the same
files, and the whole classification per drifted file. Prints ratios from one run.

    .venv/bin/python benchmarks/classify.py [--files 2000] [--work /var/tmp/drifttools-classify]

Not a test: nothing here asserts a time. The drifted set is a mix of ELF executables
(copies of the host's busybox with a random tail), shell scripts, text and random data,
all added to a one-layer image; warm page cache; wall-clock seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from drifttools import ClassifyOptions, classify, compile_rules, diff_snapshot, load_image
from drifttools.analysis.classifiers.yara import bundled_sources
from drifttools.api import offline_snapshot
from tests.tarbuild import directory, file, layer_tar, legacy_archive

BUSYBOX = Path("/bin/busybox")


def timed(label: str, action) -> float:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    print(f"  {label:<52} {seconds:8.3f} s", flush=True)
    return seconds


def make_drift(root: Path, count: int) -> int:
    """``count`` drifted files under ``root``; returns their total bytes."""
    elf = BUSYBOX.read_bytes()
    total = 0
    for index in range(count):
        kind = index % 4
        folder = root / "srv" / f"d{index // 500}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{index}"
        if kind == 0:
            data = elf + os.urandom(64)
            mode = 0o755
        elif kind == 1:
            data = b"#!/bin/sh\n" + b"echo hello\n" * 200
            mode = 0o755
        elif kind == 2:
            data = b"2024-01-01 GET / 200\n" * 2000
            mode = 0o644
        else:
            data = os.urandom(32 * 1024)
            mode = 0o644
        path.write_bytes(data)
        path.chmod(mode)
        total += len(data)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/drifttools-classify"))
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    (rootfs / "srv").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "motd").write_bytes(b"hi\n")
    for path in (rootfs, rootfs / "srv", rootfs / "etc"):
        path.chmod(0o755)
    (rootfs / "etc" / "motd").chmod(0o644)
    image = legacy_archive(
        work / "image.tar",
        [layer_tar([directory("etc"), file("etc/motd", b"hi\n"), directory("srv")])],
    ).path
    size = make_drift(rootfs, args.files)
    print(f"{args.files} drifted files, {size / 1e6:.1f} MB, yara CLI {_yara_version()}")

    baseline = load_image(image)
    snapshot = offline_snapshot(rootfs)
    report = diff_snapshot(snapshot, baseline)
    files = [rootfs / c.path.lstrip("/") for c in report.changes if c.after.kind == "file"]
    datas = [p.read_bytes() for p in files]  # warm cache; the scan itself is measured below

    rules_dir = work / "rules"
    rules_dir.mkdir()
    for source in bundled_sources():
        (rules_dir / f"{source.namespace}.yar").write_text(source.text)
    compiled = work / "bundled.yarc"
    subprocess.run(
        ["yarac", *sorted(map(str, rules_dir.iterdir())), str(compiled)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    listing = work / "files.txt"
    listing.write_text("\n".join(map(str, files)) + "\n")

    print("YARA over the drifted set (bundled rules, compiled beforehand):")
    results = {}
    for engine in ("yara-x", "yara-python"):
        rules = compile_rules(engine=engine)
        results[engine] = timed(
            f"drifttools {engine} (in-process, bytes)", lambda r=rules: [r.scan(d) for d in datas]
        )
    cli = timed(
        "yara CLI (-C compiled, --scan-list, 1 thread)",
        lambda: subprocess.run(
            ["yara", "-C", "-p", "1", "--scan-list", str(compiled), str(listing)],
            check=True,
            stdout=subprocess.DEVNULL,
        ),
    )
    cli_threads = timed(
        "yara CLI (-C compiled, --scan-list, default threads)",
        lambda: subprocess.run(
            ["yara", "-C", "--scan-list", str(compiled), str(listing)],
            check=True,
            stdout=subprocess.DEVNULL,
        ),
    )
    print("Whole classification (read, libmagic, ELF facts, YARA, heuristics, packages):")
    whole = {}
    for engine in ("yara-x", "yara-python"):
        options = ClassifyOptions(yara_engine=engine)
        compile_rules(engine=engine)  # compiled once, as in a long-running process
        whole[engine] = timed(
            f"classify() with {engine}", lambda o=options: classify(report, snapshot, baseline, o)
        )
    without = timed(
        "classify() without YARA",
        lambda: classify(report, snapshot, baseline, ClassifyOptions(yara=False)),
    )

    n = len(files)
    print("Ratios (lower is faster for drifttools):")
    for engine in ("yara-x", "yara-python"):
        print(f"  {engine} scan / yara CLI 1 thread            {results[engine] / cli:6.2f}")
        print(
            f"  {engine} scan / yara CLI threads             {results[engine] / cli_threads:6.2f}"
        )
    for engine, seconds in whole.items():
        print(f"  classify ({engine}) per drifted file       {seconds / n * 1e3:8.3f} ms")
    print(f"  classify (no YARA) per drifted file          {without / n * 1e3:8.3f} ms")


def _yara_version() -> str:
    return subprocess.run(["yara", "--version"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
