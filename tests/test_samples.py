"""Classification on a pool of threads, each file read once, and the sample cache: the same
report whatever the worker count, for both YARA engines; a cached content is not opened
again (strace is the witness); a damaged cache entry is examined again and rewritten."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import magic
import pytest

from drifttools import ClassifyOptions, classify, compile_rules, diff_snapshot, load_image
from drifttools.acquisition.content import ContentReader
from drifttools.analysis.classify import ImageFiles, image_files_from_layers
from drifttools.analysis.sample_cache import SampleCache
from drifttools.api import offline_snapshot
from drifttools.baseline.sources import UnpackedLayer
from drifttools.evidence.report import report_to_dict
from drifttools.models import Change, ChangeKind, DriftReport, ImageIndex, Snapshot
from tests.tarbuild import directory, file, layer_tar, legacy_archive

PASSWD = b"root:x:0:0::/root:/bin/sh\nsvc:x:1001:1001::/:/bin/sh\n"
CONF = b"listen=8080\nworkers=2\n"
TOOL = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\x3e\x00" + b"\0" * 300
RULES = """\
rule dup_in_a { condition: filepath == "/srv/dup-a" }
rule owned_by_svc { condition: owner == "svc" and filename startswith "own" }
rule miner_words { strings: $a = "cpu-max-threads-hint" condition: $a }
"""
STRACE = ("strace", "-f", "-qq", "-yy", "-e", "trace=open,openat,openat2,newfstatat,statx")
#: Names of the added files that a cached run must not open.
ADDED = re.compile(r"/srv/(elf\d|miner\.sh|notes|rand|dup-[ab]|owned|upx)")


@dataclass
class Drifted:
    image: Path
    layer: Path  # the image's layer unpacked: the image side of diffs
    rootfs: Path
    rules: Path
    baseline: ImageIndex
    snapshot: Snapshot
    report: DriftReport


def image_files(baseline: ImageIndex, layer: Path) -> ImageFiles:
    """The image's bytes from its one layer, unpacked in ``layer``."""
    return image_files_from_layers(baseline, [UnpackedLayer(baseline.layers[0].diff_id, layer, "")])


def make_drifted(work: Path) -> Drifted:
    """A fixed drifted tree: ELF copies of busybox, scripts, text, random bytes, the same
    bytes at two paths, a file of another owner, a modified text file and binary, a FIFO
    and a symlink (neither read)."""
    members = [directory("etc"), file("etc/passwd", PASSWD), directory("opt"), directory("srv")]
    members += [file("opt/app.conf", CONF), file("opt/tool", TOOL, 0o755)]
    image = legacy_archive(work / "image.tar", [layer_tar(members)]).path
    layer = work / "layer"
    for folder in ("etc", "opt", "srv"):
        (layer / folder).mkdir(parents=True)
    (layer / "etc/passwd").write_bytes(PASSWD)
    (layer / "opt/app.conf").write_bytes(CONF)
    (layer / "opt/tool").write_bytes(TOOL)
    rootfs = work / "rootfs"
    for folder in ("etc", "opt", "srv"):
        (rootfs / folder).mkdir(parents=True)
        (rootfs / folder).chmod(0o755)
    rootfs.chmod(0o755)
    (rootfs / "etc/passwd").write_bytes(PASSWD)
    (rootfs / "opt/app.conf").write_bytes(CONF + b"debug=true\n\x1b[31mred\n")
    (rootfs / "opt/tool").write_bytes(TOOL + b"patched")
    busybox = Path("/bin/busybox").read_bytes()
    added = {
        "elf0": busybox + b"tail0",
        "elf1": busybox + b"tail1",
        "elf2": busybox[: 300 * 1024],
        "upx": TOOL + b"UPX!" + b"\0" * 16 + b"UPX0\0UPX1\0",
        "miner.sh": b"#!/bin/sh\nxmrig --donate-level=1 randomx cpu-max-threads-hint\n",
        "notes": b"nothing to see\n" * 50,
        "rand": hashlib.sha256(b"seed").digest() * 1024,
        "dup-a": b"same bytes at two paths\n",
        "dup-b": b"same bytes at two paths\n",
        "owned": b"a file of svc\n",
    }
    for name, data in added.items():
        (rootfs / "srv" / name).write_bytes(data)
        (rootfs / "srv" / name).chmod(0o755 if name.startswith(("elf", "miner")) else 0o644)
    os.chown(rootfs / "srv/owned", 1001, 1001)
    os.mkfifo(rootfs / "srv/fifo")
    (rootfs / "srv/link").symlink_to("/etc/passwd")
    rules = work / "mine.yar"
    rules.write_text(RULES)
    baseline = load_image(image)
    snapshot = offline_snapshot(rootfs)
    report = diff_snapshot(snapshot, baseline)
    return Drifted(image, layer, rootfs, rules, baseline, snapshot, report)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Drifted:
    return make_drifted(tmp_path_factory.mktemp("drifted"))


def _options(drifted: Drifted, engine: str, **more) -> ClassifyOptions:
    # A scan cap below busybox's size: the truncated path is taken too.
    return ClassifyOptions(rules=[drifted.rules], yara_engine=engine, max_scan_size=1 << 20, **more)


def _classified(drifted: Drifted, options: ClassifyOptions) -> DriftReport:
    """The classified report, without the seconds the rules took to load (they differ run
    to run)."""
    files = image_files(drifted.baseline, drifted.layer)
    baseline = drifted.baseline
    report = classify(drifted.report, drifted.snapshot, baseline, options, image_files=files)
    return _timeless(report)


def _timeless(report: DriftReport) -> DriftReport:
    assert report.classification is not None
    yara = dict(report.classification["yara"])
    yara["sets"] = [{**s, "seconds": 0.0} for s in yara["sets"]]
    return replace(
        report, classification={**report.classification, "yara": {**yara, "seconds": 0.0}}
    )


@pytest.mark.parametrize("engine", ["yara-x", "yara-python"])
def test_the_report_is_the_same_whatever_the_worker_count(drifted: Drifted, engine: str) -> None:
    one = _classified(drifted, _options(drifted, engine, workers=1))
    for workers in (2, 5):
        assert _classified(drifted, _options(drifted, engine, workers=workers)) == one
    changes = {c.path: c for c in one.changes}
    assert {m["rule"] for m in changes["/srv/dup-a"].yara} == {"dup_in_a"}
    assert changes["/srv/dup-b"].yara == ()  # same bytes, another path
    assert {m["rule"] for m in changes["/srv/owned"].yara} == {"owned_by_svc"}
    assert {"miner_words", "xmrig_miner"} <= {m["rule"] for m in changes["/srv/miner.sh"].yara}
    assert "upx" in changes["/srv/upx"].tags
    assert changes["/srv/elf0"].content["truncated"] and "elf" in changes["/srv/elf0"].tags
    assert changes["/srv/elf0"].magic.startswith("ELF")
    conf = changes["/opt/app.conf"]
    assert conf.change is ChangeKind.MODIFIED and conf.diff is not None
    assert conf.diff.kind == "text" and "+debug=true" in conf.diff.unified
    assert "\\x1b" in conf.diff.unified  # escaped, from the one shared read
    assert changes["/opt/tool"].diff.kind == "binary"
    assert "/srv/fifo" in changes and changes["/srv/fifo"].magic is None


def _max_stall(work: Callable[[], object]) -> tuple[float, float]:
    """How long ``work`` took, and the longest a Python thread beside it waited to run."""
    stop = threading.Event()
    stall = [0.0]

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            stall[0] = max(stall[0], now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.05)
    stall[0] = 0.0
    start = time.perf_counter()
    work()
    took = time.perf_counter() - start
    stop.set()
    ticker.join()
    return took, stall[0]


@pytest.mark.parametrize(
    ("engine", "releases"), [("yara-python", True), ("yara-x", False), ("libmagic", True)]
)
def test_which_engines_release_the_gil(engine: str, releases: bool) -> None:
    """What samples.py's docstring says: libyara and libmagic let Python threads run while
    they work; yara-x's binding holds the GIL for a whole scan (its scans take turns)."""
    if engine == "libmagic":
        cookie = magic.Magic()

        def call(size: int) -> Callable[[], object]:
            data = b"\0" * size  # libmagic is slow on zeros
            return partial(cookie.from_buffer, data)
    else:
        rules = compile_rules(engine=engine)
        rules.scan(b"warm")
        busybox = Path("/bin/busybox").read_bytes()

        def call(size: int) -> Callable[[], object]:
            data = (busybox * (size // len(busybox) + 1))[:size]  # made before it is timed
            return partial(rules.scan, data)

    size = 1 << 20
    took, stall = _max_stall(call(size))
    while took < 0.05 and size < 1 << 28:  # one call long enough to see a stall, on any machine
        size *= 2
        took, stall = _max_stall(call(size))
    # a loaded machine can delay the ticking thread either way: the claim must hold in one
    # of three tries
    tries = [(took, stall), *(_max_stall(call(size)) for _ in range(2))]
    assert any((stall < took / 2) is releases for took, stall in tries), tries


SCRIPT = """
import json, os, sys
from pathlib import Path
from drifttools import ClassifyOptions, classify, diff_snapshot, load_image
from drifttools.analysis.classify import image_files_from_layers
from drifttools.api import offline_snapshot
from drifttools.baseline.sources import UnpackedLayer
from drifttools.evidence.report import report_to_dict
image, layer, rootfs, rules, cache, engine, marker = sys.argv[1:]
baseline = load_image(Path(image))
snapshot = offline_snapshot(rootfs)
report = diff_snapshot(snapshot, baseline)
options = ClassifyOptions(
    rules=[rules], yara_engine=engine, max_scan_size=1 << 20, cache_dir=Path(cache)
)
layers = [UnpackedLayer(baseline.layers[0].diff_id, Path(layer), "")]
files = image_files_from_layers(baseline, layers)
try:
    os.stat(marker)
except FileNotFoundError:
    pass
report = classify(report, snapshot, baseline, options, image_files=files)
print(json.dumps(report_to_dict(report)["changes"]))
"""


def _opens_after(trace: Path, marker: str) -> list[str]:
    lines = trace.read_text(errors="replace").splitlines()
    at = next(i for i, line in enumerate(lines) if marker in line)
    return [line for line in lines[at:] if re.search(r"\bopen(at2?)?\(", line)]


@pytest.mark.parametrize("engine", ["yara-x", "yara-python"])
def test_a_cached_sample_gives_the_same_report_without_opening_the_file(
    drifted: Drifted, engine: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = _classified(drifted, _options(drifted, engine, cache_dir=cache))
    entries = list((cache / "samples" / "v1").glob("*/*"))
    assert len(entries) >= 10
    marker = f"/drifttools-marker-{os.getpid()}-{engine}"
    trace = tmp_path / "trace"
    args = [str(p) for p in (drifted.image, drifted.layer, drifted.rootfs, drifted.rules, cache)]
    done = subprocess.run(
        [*STRACE, "-o", str(trace), sys.executable, "-c", SCRIPT, *args, engine, marker],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    again = json.loads(done.stdout)
    assert again == report_to_dict(first)["changes"]
    opened = [line for line in _opens_after(trace, marker) if ADDED.search(line)]
    assert opened == []
    # the modified text file is still read: its diff needs the bytes
    assert any("/opt/app.conf" in line for line in _opens_after(trace, marker))


def test_a_damaged_cache_entry_is_examined_again_and_rewritten(
    drifted: Drifted, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    options = _options(drifted, "yara-x", cache_dir=cache)
    first = _classified(drifted, options)
    entries = sorted((cache / "samples" / "v1").glob("*/*"))
    damaged = {}
    for index, entry in enumerate(entries[:3]):
        raw = bytearray(entry.read_bytes())
        if index == 0:
            raw[-2] ^= 0x20  # a flipped bit in the payload
        elif index == 1:
            raw = raw[: len(raw) // 2]  # truncated
        else:
            raw = bytearray(b"not an entry")
        entry.write_bytes(raw)
        damaged[entry] = bytes(raw)
    store = SampleCache(cache)
    assert all(store.get(entry.name) is None for entry in damaged)  # detected ...
    for entry in damaged:
        entry.write_bytes(damaged[entry])  # ... (and removed: put them back for classify)
    assert _classified(drifted, options) == first
    for entry in damaged:
        assert entry.read_bytes() != damaged[entry]
        assert store.get(entry.name) is not None


def test_an_exported_tar_is_read_in_one_pass_with_the_same_samples(
    drifted: Drifted, tmp_path: Path
) -> None:
    export = tmp_path / "export.tar"
    with tarfile.open(export, "w") as tar:
        for entry in sorted(drifted.rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    snapshot = offline_snapshot(export)
    assert ContentReader(snapshot).one_pass
    report = diff_snapshot(snapshot, drifted.baseline)
    options = _options(drifted, "yara-x", workers=2)
    files = image_files(drifted.baseline, drifted.layer)
    from_tar = classify(report, snapshot, drifted.baseline, options, image_files=files)
    from_dir = _classified(drifted, options)

    def samples(report: DriftReport) -> dict:
        return {c.path: (c.magic, c.tags, c.yara, c.content, c.diff) for c in report.changes}

    assert samples(from_tar) == samples(from_dir)


@pytest.mark.parametrize("past_the_cap", [False, True])
def test_a_same_size_swap_after_the_walk_is_classified_as_read_and_not_cached(
    tmp_path: Path, past_the_cap: bool
) -> None:
    # The walk hashes one content; before the classification reads the file it is
    # rewritten with other bytes of the same size (past the scan cap: the read hashes
    # what it does not keep). The report says what was classified, and the cache does not
    # keep that sample under the digest the walk took.
    image = legacy_archive(tmp_path / "image.tar", [layer_tar([directory("srv")])]).path
    rootfs = tmp_path / "rootfs"
    (rootfs / "srv").mkdir(parents=True)
    for folder in (rootfs, rootfs / "srv"):
        folder.chmod(0o755)
    tail = b"\0" * (2 << 20) if past_the_cap else b""
    walked = b"quiet bytes, nothing to see here\n" + tail
    swapped = b"swap-marker-ffa9 arrived later!!\n" + tail
    assert len(walked) == len(swapped)
    target = rootfs / "srv/data"
    target.write_bytes(walked)
    rules = tmp_path / "swap.yar"
    rules.write_text('rule swap_marker { strings: $a = "swap-marker-ffa9" condition: $a }\n')
    options = ClassifyOptions(
        rules=[rules], bundled_rules=False, cache_dir=tmp_path / "cache", max_scan_size=1 << 20
    )
    baseline = load_image(image)

    def walked_now() -> tuple[Snapshot, DriftReport]:
        snapshot = offline_snapshot(rootfs)
        return snapshot, diff_snapshot(snapshot, baseline)

    def data_change(snapshot: Snapshot, report: DriftReport) -> Change:
        found = classify(report, snapshot, baseline, options).changes
        (change,) = [c for c in found if c.path == "/srv/data"]
        return change

    snapshot, report = walked_now()
    target.write_bytes(swapped)  # after the walk, before the read
    change = data_change(snapshot, report)
    assert change.after is not None and change.after.sha256 == hashlib.sha256(walked).hexdigest()
    assert [m["rule"] for m in change.yara] == ["swap_marker"]  # the bytes read
    assert change.content["read_sha256"] == hashlib.sha256(swapped).hexdigest()
    assert "changed-since-walk" in change.tags
    assert not list((tmp_path / "cache" / "samples" / "v1").glob("*/*"))

    target.write_bytes(walked)  # the walked content again: its own sample, not the swapped
    change = data_change(*walked_now())
    assert change.yara == ()
    assert "read_sha256" not in change.content and "changed-since-walk" not in change.tags
    assert len(list((tmp_path / "cache" / "samples" / "v1").glob("*/*"))) == 1
