"""Classification cost: compiling a public-size rule set vs ``yarac``, YARA over a drifted
set vs the ``yara`` command line on the same files, and the whole classification per
drifted file. Prints ratios from one run.

    .venv/bin/python benchmarks/classify.py [--files 2000] [--rule-files 520]
        [--work /var/tmp/drifttools-classify]

``--no-compile`` skips the cold compile part. Not a test: nothing here asserts a time.
The rule set is generated (tests/yara_sets.py: 10 rules a file, externals, includes,
Latin-1 comments, modules), as big as the public sets responders use. The drifted set is
a mix of ELF executables (copies of the host's busybox with a random tail), shell scripts,
text and random data, all added to a one-layer image; warm page cache; wall-clock seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from drifttools import ClassifyOptions, classify, compile_rules, diff_snapshot, load_image
from drifttools.analysis.classifiers import yara as yara_module
from drifttools.analysis.classifiers.yara import RuleSet, bundled_sources
from drifttools.analysis.classifiers.yara_externals import STANDARD
from drifttools.analysis.classifiers.yara_sources import read_rules
from drifttools.api import offline_snapshot
from drifttools.models import DriftReport, ImageIndex, Snapshot
from tests.tarbuild import directory, file, layer_tar, legacy_archive
from tests.yara_sets import RuleTree, write_rule_tree

BUSYBOX = Path("/bin/busybox")


def run_quiet(command: list[str]) -> None:
    """Run a reference tool, its output thrown away."""
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def timed(label: str, action, repeat: int = 1) -> float:
    """The best of ``repeat`` runs of ``action`` (a shared machine is noisy)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    print(f"  {label:<60} {best:8.3f} s", flush=True)
    return best


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
    parser.add_argument("--rule-files", type=int, default=520)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/drifttools-classify"))
    parser.add_argument("--no-compile", action="store_true", help="skip the cold compile part")
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
    tree = write_rule_tree(work / "public-size", args.rule_files, 10)
    compiled_big = work / "public-size.yarc"
    if args.no_compile:
        run_quiet(
            ["yarac", *_defaults(), *[f"{p.stem}:{p}" for p in tree.top_files], str(compiled_big)]
        )
        compile_ratios = []
    else:
        compile_ratios = cold_compile(tree, compiled_big, work)
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
    run_quiet(["yarac", *sorted(map(str, rules_dir.iterdir())), str(compiled)])
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
        lambda: run_quiet(["yara", "-C", "-p", "1", "--scan-list", str(compiled), str(listing)]),
    )
    cli_threads = timed(
        "yara CLI (-C compiled, --scan-list, default threads)",
        lambda: run_quiet(["yara", "-C", "--scan-list", str(compiled), str(listing)]),
    )
    scan_ratios = parallel_classify(
        tree, compiled_big, rootfs / "srv", (report, snapshot, baseline)
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
    cached = ClassifyOptions(cache_dir=work / "cache")
    classify(report, snapshot, baseline, cached)  # fills the sample cache
    warm = timed(
        "classify() with yara-x, every sample cached (nothing read)",
        lambda: classify(report, snapshot, baseline, cached),
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
    print(f"  classify (samples cached) per drifted file   {warm / n * 1e3:8.3f} ms")
    for label, ratio in (*compile_ratios, *scan_ratios):
        print(f"  {label:<44} {ratio:6.2f}")


def _defaults() -> list[str]:
    return [arg for key in STANDARD for arg in ("-d", f"{key}=")]


def _cold(tree: RuleTree, engine: str, extra: tuple[Path, ...] = ()) -> RuleSet:
    yara_module._COMPILED.clear()  # a new process: nothing compiled, no cache directory
    return compile_rules([tree.root, *extra], engine=engine, bundled=False)


def _alone(tree: RuleTree, engine: str) -> None:
    """The engine's own compile of the sources drifttools hands it (no reading, no checks)."""
    if tree.root not in _SOURCES:
        _SOURCES[tree.root] = read_rules(tree.root)
    sources = _SOURCES[tree.root]
    externals = dict(STANDARD)
    if engine == "yara-python":
        import yara

        yara.compile(sources={s.namespace: s.text for s in sources}, externals=externals)
        return
    import yara_x

    compiler = yara_x.Compiler(relaxed_re_syntax=True)
    for key, value in externals.items():
        compiler.define_global(key, value)
    for source in sources:
        compiler.new_namespace(source.namespace)
        compiler.add_source(source.text, origin=source.origin)
    compiler.build()


_SOURCES: dict[Path, list] = {}


def cold_compile(tree: RuleTree, out: Path, work: Path) -> list[tuple[str, float]]:
    """Cold compile of the generated set: drifttools (each engine) vs yarac."""
    print(f"Cold compile: {tree.rules} rules in {len(tree.top_files)} top files (+ includes):")
    names = [f"{p.stem}:{p}" for p in tree.top_files]
    yarac = timed(
        "yarac (Debian's libyara, one process), best of 3",
        lambda: run_quiet(["yarac", *_defaults(), *names, str(out)]),
        3,
    )
    ratios = []
    for engine in ("yara-x", "yara-python"):
        alone = timed(
            f"{engine} alone on the expanded sources, best of 3",
            lambda e=engine: _alone(tree, e),
            3,
        )
        seconds = timed(
            f"drifttools compile_rules, {engine}, best of 3", lambda e=engine: _cold(tree, e), 3
        )
        ratios.append((f"cold compile {engine} / yarac", seconds / yarac))
        # the floor: what the engine itself takes on the same sources, nothing of ours
        ratios.append((f"  {engine} alone (its floor) / yarac", alone / yarac))
        ratios.append((f"  cold compile {engine} / {engine} alone", seconds / alone))
    bad = work / "broken.yar"
    bad.write_text("".join(f"rule broken{i} {{ condition: $nope }}\n" for i in range(200)))
    for engine in ("yara-x", "yara-python"):
        timed(
            f"  ... {engine} with a file of 200 bad rules more",
            lambda e=engine: _cold(tree, e, (bad,)),
        )
    return ratios


def parallel_classify(
    tree: RuleTree,
    compiled: Path,
    folder: Path,
    drift: tuple[DriftReport, Snapshot, ImageIndex],
    rounds: int = 3,
) -> list[tuple[str, float]]:
    """The drifted files classified with the generated set (one read of each file shared by
    libmagic, ELF facts and YARA, the externals worked out, on a pool of 1 and 2 threads)
    vs ``yara -r -p 2`` on the folder; and the speed-up of 2 workers over 1. The contenders
    take turns, ``rounds`` times, and each keeps its best: a load that comes and goes on a
    shared machine then weighs on all of them alike. CPU seconds (user + system, of this
    process or of the ``yara`` child) are printed beside: on a loaded machine they say what
    the work costs when the wall clock says mostly how busy the machine was."""
    print(f"Classification of the drifted set with the {tree.rules}-rule set:")
    report, snapshot, baseline = drift
    runs: dict[str, Callable[[], object]] = {
        "yara -C -r -p 2 (compiled beforehand)": lambda: run_quiet(
            ["yara", "-C", "-r", "-p", "2", str(compiled), str(folder)]
        )
    }
    for engine in ("yara-x", "yara-python"):
        rules = compile_rules([tree.root], engine=engine, bundled=False)
        for workers in (1, 2):
            options = ClassifyOptions(yara_engine=engine, workers=workers, bundled_rules=False)
            runs[f"drifttools classify(), {engine}, {workers} worker(s)"] = (
                lambda o=options, r=rules: classify(report, snapshot, baseline, o, ruleset=r)
            )
    best = dict.fromkeys(runs, float("inf"))
    cpu = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for label, action in runs.items():
            used = _cpu_seconds()
            start = time.perf_counter()
            action()
            best[label] = min(best[label], time.perf_counter() - start)
            cpu[label] = min(cpu[label], _cpu_seconds() - used)
    for label, seconds in best.items():
        line = f"  {label + f', best of {rounds}':<60} {seconds:8.3f} s"
        print(f"{line}  (CPU {cpu[label]:.3f} s)", flush=True)
    name = "yara -C -r -p 2 (compiled beforehand)"
    ratios = []
    for engine in ("yara-x", "yara-python"):
        one, two = (f"drifttools classify(), {engine}, {w} worker(s)" for w in (1, 2))
        ratios.append((f"classify {engine} 2 workers / yara -p 2", best[two] / best[name]))
        ratios.append(("  the same in CPU seconds", cpu[two] / cpu[name]))
        ratios.append((f"classify {engine} speed-up 2 workers / 1", best[one] / best[two]))
    return ratios


def _cpu_seconds() -> float:
    """User and system seconds of this process and of its children waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(r.ru_utime + r.ru_stime for r in (own, children))


def _yara_version() -> str:
    return subprocess.run(["yara", "--version"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
