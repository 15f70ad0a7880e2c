"""A real Debian bookworm image, and what people and intruders do in its containers.

The base is made by ``tests/images/debian-bookworm.sh`` (debootstrap --variant=minbase,
python3 and pip from Debian's .debs) and ``docker import``; its inputs are cached under
``~/.cache/drifttools-test/`` by the script's hash, the imported image kept in the engine
under a tag with that hash. On top, a Python application layer (six and idna installed by
pip from wheels) and a stage the operations below use: the .debs and wheels the script
downloaded, and a harmless miner look-alike. The scenarios drift a container the way a
responder finds them; they are shell run with ``docker exec`` (the test is the actor:
drifttools never execs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.engine import compile_c, docker, unique

HERE = Path(__file__).parent
SCRIPT = HERE / "images" / "debian-bookworm.sh"
CACHE = Path(os.environ.get("DRIFTTOOLS_TEST_CACHE", Path.home() / ".cache" / "drifttools-test"))
KEY = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:16]
BASE_TAG = f"drifttools-test/debian-bookworm:{KEY}"
SITE = "/usr/local/lib/python3.11/dist-packages"

APP_DOCKERFILE = f"""\
FROM {BASE_TAG}
COPY stage /opt/stage
RUN python3 -m pip install -q --no-index --no-cache-dir --break-system-packages \\
    --find-links /opt/stage/wheels/app six==1.16.0 idna==3.7
COPY app.py /opt/app/app.py
CMD ["python3", "/opt/app/app.py"]
"""
APP = "import time\n\nimport idna\nimport six\n\nwhile True:\n    time.sleep(3600)\n"


def _running(exe: str) -> str:
    """Shell that waits (10 s at most) until a process of the container runs ``exe``."""
    return (
        f"for _ in $(seq 100); do readlink /proc/[0-9]*/exe | grep -qx {exe} && break;"
        " sleep 0.1; done"
    )


#: What people do in a running container, each an operation a responder sees every day.
BENIGN: dict[str, str] = {
    "package install (dpkg -i procps jq)": "dpkg -i /opt/stage/debs/install/*.deb",
    "package upgrade (dpkg -i, security update)": "dpkg -i /opt/stage/debs/upgrade/*.deb",
    "conffile edit (/etc/gai.conf)": (
        "sed -i 's|^#precedence ::ffff:0:0/96  100|precedence ::ffff:0:0/96  100|' /etc/gai.conf"
    ),
    "log rotation": (
        'for i in 1 2 3; do echo "GET /$i 200" >> /var/log/app.log; done'
        " && mv /var/log/app.log /var/log/app.log.1 && gzip /var/log/app.log.1"
        " && : > /var/log/app.log"
    ),
    "caches": "mkdir -p /root/.cache/app /var/cache/app && date > /root/.cache/app/token"
    " && date > /var/cache/app/index",
    "shell history": "printf 'ps aux\\ntop\\nexit\\n' > /root/.bash_history",
    "pip install (six upgrade, charset-normalizer)": (
        "python3 -m pip install -q --no-index --break-system-packages"
        " --find-links /opt/stage/wheels/runtime six==1.17.0 charset-normalizer==3.3.2"
    ),
    "debugging tool left running (top)": (
        "dpkg -i /opt/stage/debs/install/*.deb"
        " && (setsid top -b -d 3600 </dev/null >/dev/null 2>&1 &) && " + _running("/usr/bin/top")
    ),
}

#: An intruder's steps, each with the path it leaves and the ATT&CK id it must be found by.
ATTACKS: dict[str, tuple[str, str, str]] = {
    "trojaned package binary (/usr/bin/id)": (
        "cp /opt/stage/trojan /usr/bin/id",
        "/usr/bin/id",
        "T1554",
    ),
    "trojan written through a merged-/usr alias (/bin/ls)": (
        "cp /opt/stage/trojan /bin/ls",
        "/usr/bin/ls",
        "T1554",
    ),
    "trojan inside a freshly installed package (jq)": (
        "dpkg -i /opt/stage/debs/install/*.deb && cp /opt/stage/trojan /usr/bin/jq",
        "/usr/bin/jq",
        "T1554",
    ),
    "swapped shared library (libpam, through /lib)": (
        "cat /usr/lib/x86_64-linux-gnu/libpamc.so.0.82.1 > /lib/x86_64-linux-gnu/libpam.so.0.85.1",
        "/usr/lib/x86_64-linux-gnu/libpam.so.0.85.1",
        "T1554",
    ),
    "cron job": (
        "mkdir -p /etc/cron.d && echo '* * * * * root /tmp/kworkerd' > /etc/cron.d/sync",
        "/etc/cron.d/sync",
        "T1053.003",
    ),
    "ssh key": (
        "mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh"
        "+wyqDHpSQEIQczXkVx9q mdrfckr' > /root/.ssh/authorized_keys",
        "/root/.ssh/authorized_keys",
        "T1098.004",
    ),
    "setuid shell": (
        "cp /bin/bash /var/tmp/.bash && chmod 4755 /var/tmp/.bash",
        "/var/tmp/.bash",
        "T1548.001",
    ),
    "uid-0 account": (
        "echo 'sysupd:x:0:0::/root:/bin/bash' >> /etc/passwd",
        "/etc/passwd",
        "T1136.001",
    ),
    "miner": (
        "cp /opt/stage/payload /tmp/kworkerd && chmod 755 /tmp/kworkerd"
        " && (setsid /tmp/kworkerd </dev/null >/dev/null 2>&1 &) && " + _running("/tmp/kworkerd"),
        "/tmp/kworkerd",
        "T1105",
    ),
    "ld.so.preload": (  # last: every later program would read it
        "echo /usr/local/lib/libsystemd-shim.so > /etc/ld.so.preload",
        "/etc/ld.so.preload",
        "T1574.006",
    ),
}
TROJAN = b'#!/bin/sh\n(/tmp/kworkerd >/dev/null 2>&1 &)\nexec /bin/true "$@"\n'


def inputs() -> Path:
    """The script's outputs for this version of it, built once on this machine."""
    directory = CACHE / f"debian-bookworm-{KEY}"
    if not directory.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["bash", str(SCRIPT), str(directory)],
            check=True,
            env={**os.environ, "PYTHON": sys.executable},
            timeout=1800,
        )
    return directory


def base_image() -> str:
    """The imported base image's tag (imported once per engine)."""
    present = subprocess.run(["docker", "image", "inspect", BASE_TAG], capture_output=True)
    if present.returncode != 0:
        docker("import", str(inputs() / "rootfs.tar"), BASE_TAG)
    return BASE_TAG


def build_app(context: Path) -> str:
    """The application image, built in ``context``; its tag (remove it when done)."""
    source = inputs()
    base_image()
    stage = context / "stage"
    shutil.copytree(source / "debs", stage / "debs")
    shutil.copytree(source / "wheels", stage / "wheels")
    compile_c(HERE / "miner.c", stage / "payload", "-static")
    (stage / "trojan").write_bytes(TROJAN)
    (stage / "trojan").chmod(0o755)
    (context / "app.py").write_text(APP)
    (context / "Dockerfile").write_text(APP_DOCKERFILE)
    tag = f"{unique('drifttools-debian-app')}:1"
    docker("build", "-q", "-t", tag, str(context))
    return tag


def deb_fields(directory: Path) -> list[dict[str, str]]:
    """Package, Version and Architecture of each .deb in ``directory`` (dpkg-deb's word)."""
    found = []
    for deb in sorted(directory.glob("*.deb")):
        fields = subprocess.run(
            ["dpkg-deb", "--show", "--showformat", "${Package}\t${Version}\t${Architecture}", deb],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\t")
        found.append(dict(zip(("name", "version", "architecture"), fields, strict=True)))
    return found


def drift(container: str, script: str) -> None:
    """Run ``script`` in the container as root, as a person with a shell in it would."""
    docker("exec", container, "bash", "-ec", script)
