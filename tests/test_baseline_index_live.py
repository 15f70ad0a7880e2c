"""A warm `drifttools diff` on the real Docker Engine looks its baseline up in the stored
image index instead of loading the image, and a damaged index changes nothing but its file."""

from __future__ import annotations

from pathlib import Path

import drifttools
from drifttools import LayerCache
from drifttools.analysis.diff import diff_snapshot
from drifttools.baseline.index import BaselineStore, IndexedEntries
from drifttools.models import DriftReport
from drifttools.options import DEFAULT_ACQUISITION, BaselineOptions
from drifttools.pipeline import RunOptions, run
from drifttools.progress import no_progress
from drifttools.sources import LiveContainer
from tests.engine import build_image, docker, unique

DRIFT = (
    "echo added > /tmp/new && echo changed > /opt/app/a && rm -rf /var/log /many/d3"
    " && chmod 4755 /bin/busybox"
)


def changes(report: DriftReport) -> list[tuple[str, str]]:
    return [(change.path, change.change.value) for change in report.changes]


def index_file(cache_dir: Path) -> Path:
    (found,) = (cache_dir / "images" / "v1").iterdir()
    return found


def test_the_warm_diff_looks_up_the_index_and_a_damaged_one_is_rebuilt(
    busybox_image, container, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    for i in range(8000):  # an index of several blocks, most of which a diff never reads
        (context / "many" / f"d{i // 500}").mkdir(parents=True, exist_ok=True)
        (context / "many" / f"d{i // 500}" / f"f{i:05d}").write_text(str(i))
    tag = f"{unique('drifttools-index')}:1"
    build_image(tag, context, f"FROM {busybox_image['tag']}\nCOPY many /many\n")
    try:
        _warm_diffs(container(tag, "/bin/sleep", "600"), tmp_path)
    finally:
        docker("rmi", "-f", tag, check=False)


def _warm_diffs(name: str, tmp_path: Path) -> None:
    docker("exec", name, "/bin/sh", "-c", DRIFT)
    cache = LayerCache(tmp_path / "cache")
    options = BaselineOptions(cache=cache)
    cold = drifttools.diff(name, baseline=options)
    assert {layer.source for layer in cold.baseline} == {"engine-store"}
    want = changes(cold)
    assert ("/tmp/new", "added") in want and ("/var/log", "deleted") in want
    assert ("/many/d3/f01999", "deleted") in want
    stored = index_file(tmp_path / "cache")

    live = LiveContainer.resolve(name)
    baseline = live.baseline(options, no_progress)
    entries = baseline.entries
    assert isinstance(entries, IndexedEntries)
    assert [(layer.source, layer.verified) for layer in baseline.layers] == [
        ("cache", True) for _ in cold.baseline
    ]
    snapshot = live.snapshot(DEFAULT_ACQUISITION, no_progress, None)
    report = diff_snapshot(live.complete(snapshot, baseline, DEFAULT_ACQUISITION), baseline)
    assert changes(report) == want
    checked, blocks = entries.native.blocks_checked
    assert entries.scans == 0 and checked < blocks  # looked up, never listed nor read whole
    classified = run(live, RunOptions(baseline=options)).baseline.entries
    assert isinstance(classified, IndexedEntries) and classified.scans == 0  # nor classified

    warm = drifttools.diff(name, baseline=options)
    assert changes(warm) == want
    assert all(layer.source == "cache" and layer.verified_at for layer in warm.baseline)

    # a flipped byte in the middle record, which every lookup's binary search reads first
    data = bytearray(stored.read_bytes())
    count = int.from_bytes(data[16:24], "little")
    records = int.from_bytes(data[24:32], "little")
    data[records + (count // 2) * 32 + 1] ^= 0x01
    stored.write_bytes(bytes(data))
    assert changes(drifttools.diff(name, baseline=options)) == want
    assert stored.read_bytes() != bytes(data)

    stored.write_bytes(stored.read_bytes()[:-100])  # truncated: refused on open, rewritten
    assert changes(drifttools.diff(name, baseline=options)) == want
    digests = [layer.diff_id for layer in warm.baseline]
    found = BaselineStore(cache).open(digests)
    assert found is not None and len(found.entries) == len(baseline.entries)
