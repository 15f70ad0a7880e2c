"""A rogue container built to fool the walker, and the promises checked against it.

The container (FROM scratch: busybox and a static swapper) swaps regular files with the
host's root disk (a block device node with its numbers), ``/dev/tty`` and a FIFO in a tight
``renameat2(RENAME_EXCHANGE)`` loop, and holds device nodes, a 2000-deep tree with a payload
at the bottom, symlinks at a host canary file and names made of escape sequences.
``strace`` on the drifttools process is the witness where the claim is "never opened".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.command import EXE
from tests.engine import Engine, build_image, compile_c, docker, unique
from tests.reports import assert_valid_report

HERE = Path(__file__).parent
SWAP_SECONDS = 45  # the swapper stops by itself: the container then only sleeps
DEPTH = 2000
OLD = 946_684_800  # 2000-01-01: relatime WOULD update atimes this old on any read
RED = "\x1b[31mred\x1b[0m"
# every open of the traced process and its children, with the path and kind of the fd
STRACE = ("strace", "-f", "-qq", "-yy", "--seccomp-bpf", "-e", "trace=open,openat,openat2")

SETUP = r"""
set -e
B=/bin/busybox
$B mkdir -p /race /nodes /deep /tmp /dev/shm
$B mknod /nodes/tty c 5 0
$B mknod /nodes/disk b {disk}
$B mkfifo /nodes/fifo
for n in f g h; do echo "regular $n" > /race/$n; done
$B mknod /race/f.alt b {disk}
$B mknod /race/g.alt c 5 0
$B mkfifo /race/h.alt
$B ln -s {canary} /canary-abs
$B ln -s ../../../../../../../..{canary} /tmp/canary-up
$B ln -s {canary} /dev/shm/canary
echo red > "/$($B printf '\033[31mred\033[0m')"
echo newline > "/$($B printf 'new\nline')"
echo bytes > "/$($B printf 'bad\377name')"
cd /deep
i=0
while [ $i -lt {depth} ]; do $B mkdir d; cd d; i=$((i+1)); done
echo payload > leaf
$B touch /ready
exec /swap_race {seconds} /race/f /race/f.alt /race/g /race/g.alt /race/h /race/h.alt
"""


@pytest.fixture(scope="module")
def rogue(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("hostile")
    canary = work / "canary.txt"
    secret = f"HOST-CANARY-{os.urandom(8).hex()}"
    canary.write_text(secret)
    os.utime(canary, (OLD, OLD))
    root_dev = os.stat("/").st_dev
    disk = f"{os.major(root_dev)} {os.minor(root_dev)}"  # the host's root filesystem's disk
    context = work / "context"
    context.mkdir()
    compile_c(HERE / "swap_race.c", context / "swap_race", "-static")
    (context / "setup.sh").write_text(
        SETUP.format(disk=disk, canary=canary, depth=DEPTH, seconds=SWAP_SECONDS)
    )
    tag = f"{unique('hostile-native')}:1"
    build_image(
        tag,
        context,
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY swap_race /swap_race\n"
        'COPY setup.sh /setup.sh\nCMD ["/bin/busybox", "sh", "/setup.sh"]\n',
    )
    name = unique("hostile-native")
    docker("run", "-d", "--name", name, tag)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            ["docker", "exec", name, "/bin/busybox", "test", "-e", "/ready"], check=False
        ).returncode:
            assert time.monotonic() < deadline, docker("logs", name, check=False)
            time.sleep(0.2)
        upper = docker("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name).strip()
        pid = int(docker("inspect", "-f", "{{.State.Pid}}", name))
        yield {
            "name": name,
            "upper": Path(upper),
            "pid": pid,
            "canary": canary,
            "secret": secret,
            "disk": disk.replace(" ", ":"),
            "work": work,
        }
    finally:
        docker("rm", "-f", name, check=False)
        docker("rmi", "-f", tag, check=False)


def traced(trace: Path, *command: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``command`` under strace, recording every open with the path and kind of the fd."""
    return subprocess.run(
        [*STRACE, "-o", str(trace), *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **kwargs,
    )


def device_opens(trace: Path, disk: str) -> list[str]:
    """Opens for reading that reached the rogue container's device numbers (the host's root
    disk, ``/dev/tty``: strace shows an fd's device), or ran a driver's open (``ENXIO``), or
    opened a racing name directly instead of reopening a checked handle: a FIFO's fd looks
    like a file's in strace, so only a reopen through ``/proc/self/fd`` of an ``O_PATH``
    handle checked to be a regular file proves a FIFO was not opened."""
    bad = []
    for line in trace.read_text(errors="replace").splitlines():
        if not re.search(r"\bopen(at2?)?\(", line) or "O_PATH" in line:
            continue
        if (
            f"<block {disk}>" in line
            or "<char 5:0>" in line
            or "ENXIO" in line
            or re.search(r'"(/race/)?[fgh](\.alt)?"|"/nodes/|"(tty|disk|fifo)"', line)
        ):
            bad.append(line)
    return bad


RACE_WALKS = """
import collections, json, sys
from drifttools import _native
seen = collections.Counter()
errors = collections.Counter()
for root in sys.argv[1:]:
    for _ in range(150):
        for entry in _native.walk(root, subpath="/race"):
            seen[entry.path + " " + entry.kind] += 1
            if entry.error:
                errors[entry.error] += 1
            elif entry.kind == "file":
                assert entry.sha256 is not None, entry
print(json.dumps({"seen": seen, "errors": errors}))
"""


def test_swap_race_never_opens_a_device_or_fifo(rogue: dict, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    roots = [str(rogue["upper"]), f"/proc/{rogue['pid']}/root"]
    result = traced(trace, sys.executable, "-c", RACE_WALKS, *roots)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    seen = found["seen"]
    # the race was on: the same names were seen as files and as the swapped-in nodes
    assert seen.get("/f file") and seen.get("/f block"), seen
    assert seen.get("/g file") and seen.get("/g char"), seen
    assert seen.get("/h file") and seen.get("/h fifo"), seen
    assert set(found["errors"]) <= {"changed during walk", "vanished"}, found["errors"]
    assert device_opens(trace, rogue["disk"]) == []
    # the handles were taken, and only regular files reopened through /proc/self/fd
    text = trace.read_text(errors="replace")
    assert re.search(r'"[fgh](\.alt)?", [^)]*O_PATH', text)


def test_report_keeps_every_promise(rogue: dict, tmp_path: Path) -> None:
    upper: Path = rogue["upper"]
    shm = Path(f"/proc/{rogue['pid']}/root/dev/shm/canary")  # the container's tmpfs
    links = [upper / "canary-abs", upper / "tmp" / "canary-up", shm]
    for link in links:
        os.utime(link, (OLD, OLD), follow_symlinks=False)
    trace = tmp_path / "trace"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = traced(trace, EXE, "diff", rogue["name"], "--format", "json", env=env)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert_valid_report(report)
    assert device_opens(trace, rogue["disk"]) == []
    # no host byte reached the report; the canary and the symlinks kept their atimes
    assert rogue["secret"] not in result.stdout
    assert rogue["canary"].stat().st_atime == OLD
    assert [link.lstat().st_atime for link in links] == [OLD, OLD, OLD]
    assert not any("atime" in note for note in report["notes"]), report["notes"]
    changes = {change["path"]: change for change in report["changes"]}
    assert changes["/canary-abs"]["target"] == str(rogue["canary"])
    assert changes["/dev/shm/canary"]["target"] == str(rogue["canary"])
    assert changes["/nodes/disk"]["type"] == "block"
    assert changes["/nodes/fifo"]["type"] == "fifo"
    # the payload 2000 directories down is listed and hashed like any file
    leaf = "/deep" + "/d" * DEPTH + "/leaf"
    assert changes[leaf]["sha256"] is not None
    assert changes[leaf]["magic"] == "ASCII text", changes[leaf]  # its content was read too
    assert not [e for e in report["errors"] if "too long" in e["reason"]]
    # hostile names: escaped by the documented rule in JSON, never raw on a terminal
    assert f"/{RED}" in changes
    assert "/new\nline" in changes
    assert "/bad\\xffname" in changes
    table = subprocess.run(
        [EXE, "diff", rogue["name"]], capture_output=True, text=True, env=env, check=False
    )
    assert table.returncode == 1, table.stderr
    assert "\x1b" not in table.stdout and "red" in table.stdout
