"""`drifttools scan` of a whole node vs the shell loop a responder writes. Ratios from one run.

    .venv/bin/python benchmarks/scan.py [--images 4] [--per-image 10] [--files 20000]

Imports IMAGES images of busybox + FILES small files each (distinct layers), starts
PER-IMAGE containers of each, drifts each a little (30 files added, 2 changed, 1 deleted;
one of them also gets kill-chain traces: a cron job, an SSH key, a setuid copy of a shell,
a dropped binary run from /tmp), then times, wall clock:

* the loop: ``for c in $(docker ps -q ...); do docker diff $c; done``
* ``drifttools scan`` (every changed file hashed, classified, replicas compared), with an
  empty layer cache and with a warm one;
* the cost of one more container of an image already read: ``scan`` of one container of an
  image vs of all its PER-IMAGE containers (warm), per extra container, against the cost of
  its changes alone (the pipeline for that container with its image's baseline at hand:
  its processes and upper dir read, every change hashed, diffed and classified).

Not a test: no assertion. Everything it makes is named ``scan-bench-*`` and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.live import build_image, timed
from drifttools import LayerCache
from drifttools.acquisition.runtimes.docker import DockerRuntime
from drifttools.options import BaselineOptions
from drifttools.pipeline import RunOptions, run
from drifttools.scan import ImageBaselines, ScanContainer

EXE = str(Path(sys.executable).parent / "drifttools")
PREFIX = "scan-bench"
DRIFT = """
i=0; while [ $i -lt 30 ]; do echo added-$i > /data/d0000/new-$i; i=$((i+1)); done
echo changed >> /data/d0001/f0001000; echo changed >> /data/d0001/f0001001
rm /data/d0002/f0002000
"""
KILL_CHAIN = """
mkdir -p /etc/cron.d /root/.ssh
echo '* * * * * root /tmp/.x/kworkerd' > /etc/cron.d/sync
echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN attacker' > /root/.ssh/authorized_keys
cp /bin/busybox /var/tmp/.sh && chmod 4755 /var/tmp/.sh
mkdir -p /tmp/.x && cp /bin/busybox /tmp/.x/kworkerd && (/tmp/.x/kworkerd sleep 100000 &)
"""


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument("--files", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    env = {**os.environ, "DRIFTTOOLS_PROGRESS": "0"}
    tags = [f"{PREFIX}-{i}:1" for i in range(args.images)]
    names: list[str] = []
    try:
        for number, tag in enumerate(tags):
            print(f"importing {tag}: busybox + {args.files} files ...", flush=True)
            build_image(tag, args.files, work / tag, seed=number)
            for replica in range(args.per_image):
                name = f"{PREFIX}-{number}-{replica}"
                docker("run", "-d", "--name", name, tag, "/bin/sleep", "100000")
                docker("exec", name, "/bin/sh", "-c", DRIFT)
                names.append(name)
        docker("exec", names[-1], "/bin/sh", "-c", KILL_CHAIN)
        total = len(names)
        ids = " ".join(docker("ps", "-q", "--filter", f"name={PREFIX}-").split())
        print(f"\n{total} containers of {args.images} images; timings (wall clock)")
        loop = timed(
            f"shell loop: docker diff of each of {total}",
            lambda: subprocess.run(
                ["sh", "-c", f"for c in {ids}; do docker diff $c; done"],
                check=True,
                stdout=subprocess.DEVNULL,
            ),
        )

        outputs: list[str] = []

        def scan(cache: Path, *pattern: str) -> None:
            done = subprocess.run(
                [EXE, "scan", "--runtime", "docker", "--format", "json", *pattern],
                env={**env, "DRIFTTOOLS_CACHE_DIR": str(cache)},
                capture_output=True,
                text=True,
                check=False,
            )
            outputs.append(done.stdout)

        every = ("--name", f"{PREFIX}-*")
        cold = timed("drifttools scan, empty layer cache", lambda: scan(work / "cold", *every))
        warm = timed("drifttools scan, warm layer cache", lambda: scan(work / "cold", *every))
        one = timed(
            "drifttools scan of one container of image 0 (warm)",
            lambda: scan(work / "cold", "--name", f"{PREFIX}-0-0"),
        )
        group = timed(
            f"drifttools scan of the {args.per_image} containers of image 0 (warm)",
            lambda: scan(work / "cold", "--name", f"{PREFIX}-0-*"),
        )
        summary = json.loads(outputs[0])["summary"]
        rows = summary["containers"]
        drifted = sum(
            sum(r["counts"].get(k, 0) for k in ("added", "modified", "deleted")) for r in rows
        )
        print(
            f"  (cold scan: {summary['scanned']} scanned, {summary['failed']} failed, {drifted} "
            f"changes; most severe: {rows[0]['container']['name']} {rows[0]['severity']})"
        )
        runtime = DockerRuntime()
        source = ScanContainer(runtime.resolve(f"{PREFIX}-0-1"), runtime, ImageBaselines())
        options = RunOptions(baseline=BaselineOptions(cache=LayerCache(work / "cold")))
        run(source, options)  # its image's baseline made, kept in memory
        changes = timed(
            "its changes alone: one container's run, its baseline at hand",
            lambda: run(source, options),
        )
        extra = (group - one) / max(1, args.per_image - 1)
        print("\nratios (lower is better for drifttools; target in brackets)")
        print(f"  scan (cold cache) / docker diff loop             {cold / loop:6.3f}  [<= 0.2]")
        print(f"  scan (warm cache) / docker diff loop             {warm / loop:6.3f}  [<= 0.2]")
        print(
            f"  one more container of a seen image / its changes alone {extra / changes:6.3f}"
            f"  [<= 2]  ({extra:.3f} s / {changes:.3f} s)"
        )
        print(f"  per container: scan {warm / total:6.3f} s, docker diff {loop / total:6.3f} s")
    finally:
        if names:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
