"""Process evidence read from the host's /proc, against real containers of the real engine.

One container holds the whole scene: processes running from /tmp, from a deleted file,
from a memfd, from a changed image file, under another uid and under a hostile name, a
listening TCP socket and a bound unix socket. The test image (FROM scratch: busybox and
our memfd helper) is built here and ``docker save``d, so tags meet a real baseline.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from drifttools import _native, load_image
from drifttools.acquisition import processes as procs
from drifttools.acquisition.cgroups import container_pids
from drifttools.acquisition.processes import VANISHED, read_processes
from drifttools.acquisition.sockets import unix_sockets
from drifttools.analysis.process_tags import tag_processes
from drifttools.models import ProcessRecord, SocketRecord
from tests.engine import BUSYBOX, BUSYBOX_SHA256, Engine, build_memfd_image, docker, unique

RFC3339_MICRO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

PROCS_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY memfd_exec /bin/memfd_exec
COPY memfd_exec /opt/busybox.app
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /tmp /etc && echo "app:x:1000:1000::/tmp:/bin/sh" > /etc/passwd \\
 && echo "app:x:1000:" > /etc/group
"""

#: The name of a program whose comm and argv[0] hold ") ", an escape sequence and a
#: byte that is not UTF-8. Busybox runs it: a name starting "busybox" is the multi-call
#: binary itself, which takes the applet from argv[1].
HOSTILE = b"/tmp/busybox) \xff\x1b[31m 1"

#: The container's command: it starts the scene, then becomes ``sleep 100000`` (pid 1).
SCENE = r"""
cp /bin/busybox /tmp/busybox.x
cp /bin/busybox /tmp/busybox.y
cp /bin/busybox /opt/busybox.app
h="$(printf '/tmp/busybox) \377\033[31m 1')"
cp /bin/busybox "$h"
export DRIFTTOOLS_SECRET=hunter2
start-stop-daemon -S -c 1000:1000 -x /tmp/busybox.x -- sleep 100001 &
/tmp/busybox.y sleep 100002 &
y=$!
memfd_exec /bin/busybox sleep 100003 &
"$h" sleep 100004 &
/opt/busybox.app sleep 100005 &
nc -l -p 8080 &
syslogd -n -O /tmp/syslog &
i=0
while [ "$(readlink /proc/$y/exe)" != /tmp/busybox.y ] && [ $i -lt 200 ]; do
  sleep 0.05; i=$((i+1))
done
rm /tmp/busybox.y
exec sleep 100000
"""

#: Each process of the scene, by the argument that tells it apart.
ROLES = {
    "100000": "main",
    "100001": "other-uid",
    "100002": "deleted",
    "100003": "memfd",
    "100004": "hostile",
    "100005": "modified",
    "8080": "nc",
    "/tmp/syslog": "syslogd",
}


@pytest.fixture(scope="module")
def procs_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The scene's image, with the static memfd helper compiled here, and its saved tar."""
    work = tmp_path_factory.mktemp("procs-image")
    tag = f"{unique('drifttools-procs')}:1"
    build_memfd_image(tag, work / "context", PROCS_DOCKERFILE)
    saved = work / "save.tar"
    docker("save", "-o", str(saved), tag)
    yield {"tag": tag, "save": saved}
    docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def scene(procs_image: dict) -> Iterator[dict]:
    """The running scene: its container id, name and each process by role, once all are up."""
    name = unique("drifttools-procs")
    docker("run", "-d", "--name", name, procs_image["tag"], "sh", "-c", SCENE)
    try:
        container_id = docker("inspect", "--format", "{{.Id}}", name).strip()
        deadline = time.monotonic() + 30
        while True:
            roles = _by_role(read_processes(container_pids(container_id))[0])
            deleted = roles.get("deleted")
            if (
                len(roles) == len(ROLES)
                and deleted is not None
                and deleted.exe_state == "deleted"
                and roles["nc"].sockets
                and roles["syslogd"].sockets
            ):
                break
            assert time.monotonic() < deadline, f"scene not up: {sorted(roles)}"
            time.sleep(0.1)
        yield {"id": container_id, "name": name}
    finally:
        docker("rm", "-f", name, check=False)


def _by_role(records: tuple[ProcessRecord, ...]) -> dict[str, ProcessRecord]:
    found = {}
    for record in records:
        if record.cmdline and record.cmdline[-1] in ROLES:
            found[ROLES[record.cmdline[-1]]] = record
    return found


def _read(
    scene: dict, *, env_values: bool = False
) -> tuple[dict[str, ProcessRecord], tuple[SocketRecord, ...]]:
    records, sockets = read_processes(container_pids(scene["id"]), env_values=env_values)
    return _by_role(records), sockets


@pytest.mark.both_drivers
def test_container_pids_are_the_engines(scene: dict) -> None:
    # docker top lists the container's processes by host pid, from the engine's side.
    top = docker("top", scene["name"], "-o", "pid").split()[1:]
    assert container_pids(scene["id"]) == sorted(int(pid) for pid in top)
    assert container_pids(scene["id"][:12]) == []  # only the full id names a container


def test_container_pids_cgroup_layouts(tmp_path: Path) -> None:
    cid = "0123456789abcdef" * 4
    other = "f" * 64
    layouts = {
        101: f"12:pids:/docker/{cid}\n1:name=systemd:/docker/{cid}\n",
        102: f"0::/system.slice/docker-{cid}.scope\n",
        103: f"0::/docker/{cid}\n",
        104: f"0::/kubepods/burstable/pod1b2c/{cid}\n",
        105: f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{cid}.scope\n",
        106: f"0::/docker/{cid}/init.scope\n",  # a cgroup nested in the container's
        201: f"0::/machine.slice/libpod-conmon-{cid}.scope\n",  # podman's monitor, outside
        202: f"0::/docker/{other}\n",
        203: f"0::/docker/{cid}x\n",
        204: "0::/\n",
    }
    for pid, text in layouts.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    (tmp_path / "self").mkdir()
    assert container_pids(cid, proc=tmp_path) == [101, 102, 103, 104, 105, 106]
    with pytest.raises(ValueError):
        container_pids("../docker", proc=tmp_path)


@pytest.mark.both_drivers
def test_executables_states_and_hashes(scene: dict) -> None:
    roles, _ = _read(scene)
    main = roles["main"]
    assert main.ns_pid == 1
    assert main.exe == "/bin/busybox" and main.exe_state == "present"
    assert main.cmdline == ("sleep", "100000")
    assert main.cwd == "/"
    assert main.ppid not in container_pids(scene["id"])  # the runtime's shim, on the host

    expected = {
        "other-uid": ("/tmp/busybox.x", "present", ("/tmp/busybox.x", "sleep", "100001")),
        "deleted": ("/tmp/busybox.y", "deleted", ("/tmp/busybox.y", "sleep", "100002")),
        "memfd": ("/memfd:payload", "memfd", ("sleep", "100003")),
        "modified": ("/opt/busybox.app", "present", ("/opt/busybox.app", "sleep", "100005")),
    }
    for role, (exe, state, cmdline) in expected.items():
        record = roles[role]
        assert (record.exe, record.exe_state, record.cmdline) == (exe, state, cmdline), role
        assert record.ppid == main.pid, role
    for role, record in roles.items():
        # Every executable, deleted and memfd ones too, is the busybox the scene copied.
        assert record.exe_sha256 == BUSYBOX_SHA256, role
        assert record.exe_size == BUSYBOX.stat().st_size, role
        assert record.ns_pid is not None and record.ns_pid != record.pid, role
        assert record.state in ("S", "R"), role
        assert RFC3339_MICRO.fullmatch(record.started_at), role
        assert record.libraries == (), role  # static: only the executable is mapped
        assert record.errors == (), role
    started = docker("inspect", "--format", "{{.State.StartedAt}}", scene["name"]).strip()
    assert abs(_epoch(main.started_at) - _epoch(started)) < 2.5  # btime has 1 s steps
    assert roles["memfd"].start_ticks >= main.start_ticks


def _epoch(stamp: str) -> float:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{fraction or 0}")


def test_ids_and_descriptors(scene: dict) -> None:
    roles, _ = _read(scene)
    other = roles["other-uid"]
    assert (other.uid, other.euid, other.gid, other.egid) == (1000, 1000, 1000, 1000)
    main = roles["main"]
    assert (main.uid, main.euid, main.gid, main.egid) == (0, 0, 0, 0)
    kinds = {f.fd: f.kind for f in main.fds}
    assert kinds[0] == "file" and kinds[1] == "pipe" and kinds[2] == "pipe"
    assert [f.target for f in roles["syslogd"].fds if f.kind == "file"] == ["/tmp/syslog"]


def test_environment_names_and_values_only_on_request(scene: dict) -> None:
    roles, _ = _read(scene)
    for record in roles.values():
        assert "DRIFTTOOLS_SECRET" in record.env_names and "PATH" in record.env_names
        assert record.env is None
    roles, _ = _read(scene, env_values=True)
    for role in ("memfd", "deleted", "hostile"):
        env = roles[role].env
        assert env is not None and env["DRIFTTOOLS_SECRET"] == "hunter2", role


def test_sockets_linked_to_their_processes(scene: dict) -> None:
    roles, sockets = _read(scene)
    nc = roles["nc"]
    [listening] = [s for s in sockets if s.protocol.startswith("tcp")]
    assert listening.state == "LISTEN" and listening.local.endswith(":8080")
    assert listening.local in ("0.0.0.0:8080", "[::]:8080")
    assert listening.remote == "" and listening.pids == (nc.pid,)
    assert nc.sockets == (listening,)
    assert any(f.kind == "socket" and f.target == f"socket:[{listening.inode}]" for f in nc.fds)
    [log] = [s for s in sockets if s.protocol == "unix"]
    assert (log.local, log.state, log.pids) == ("/dev/log", "UNCONNECTED", (roles["syslogd"].pid,))
    assert roles["main"].sockets == ()


def test_hostile_names_kept_verbatim(scene: dict) -> None:
    roles, _ = _read(scene)
    hostile = roles["hostile"]
    assert hostile.cmdline == (_native.escape_path(HOSTILE), "sleep", "100004")
    assert hostile.cmdline[0] == "/tmp/busybox) \\xff\x1b[31m 1"
    # comm is the first 15 bytes of the name; the stat fields after it still parse
    assert hostile.comm == _native.escape_path(os.path.basename(HOSTILE)[:15])
    assert hostile.ppid == roles["main"].pid and hostile.state == "S"
    assert hostile.start_ticks >= roles["main"].start_ticks
    assert hostile.exe == hostile.cmdline[0] and hostile.exe_state == "present"


@pytest.mark.both_drivers
def test_tags_against_the_image(scene: dict, procs_image: dict) -> None:
    baseline = load_image(procs_image["save"]).entries
    roles = _by_role(tag_processes(tuple(_read(scene)[0].values()), baseline))
    assert roles["main"].tags == ()
    assert roles["nc"].tags == ()
    assert roles["other-uid"].tags == ("exe-not-in-image",)
    assert roles["deleted"].tags == ("exe-deleted", "exe-not-in-image")
    assert roles["memfd"].tags == ("memfd",)
    assert roles["modified"].tags == ("exe-modified",)

    libraries = (
        "/bin/busybox",
        "/usr/lib/evil.so",
        "/memfd:lib (deleted)",
        "/bin/busybox (deleted)",
    )
    main = dataclasses.replace(roles["main"], libraries=libraries, tags=("earlier",))
    [tagged] = tag_processes([main], baseline)
    assert tagged.tags == ("earlier", "library-not-in-image", "library-memfd", "library-deleted")


def test_the_scan_never_execs_into_the_container(scene: dict) -> None:
    def exec_events(since: int, until: int) -> str:
        return docker(
            "events",
            "--since",
            str(since),
            "--until",
            str(until),
            "--filter",
            f"container={scene['name']}",
            "--filter",
            "event=exec_create",
            "--format",
            "{{json .}}",
        ).strip()

    since = int(time.time()) - 1
    read_processes(container_pids(scene["id"]), env_values=True)
    until = int(time.time()) + 1
    time.sleep(max(0.0, until - time.time()))
    assert exec_events(since, until) == ""
    # the check can fail: an exec of our own is seen
    docker("exec", scene["name"], "true")
    assert "exec_create" in exec_events(until, int(time.time()) + 1)


def test_host_sockets_tcp_udp_and_ipv6() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        udp.bind(("127.0.0.1", 0))
        with accepted:
            [me], sockets = read_processes([os.getpid()])
            port = server.getsockname()[1]
            by_local = {(s.protocol, s.local, s.remote): s for s in me.sockets}
            assert by_local[("tcp", f"127.0.0.1:{port}", "")].state == "LISTEN"
            near = f"127.0.0.1:{client.getsockname()[1]}"
            far = f"127.0.0.1:{port}"
            assert by_local[("tcp", near, far)].state == "ESTABLISHED"
            assert by_local[("tcp", far, near)].state == "ESTABLISHED"
            udp_local = f"127.0.0.1:{udp.getsockname()[1]}"
            assert by_local[("udp", udp_local, "")].state == "UNCONN"
            assert all(s.pids == (os.getpid(),) for s in me.sockets)
            assert set(me.sockets) <= set(sockets)
    if socket.has_ipv6 and os.path.exists("/proc/net/tcp6"):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as six:
            six.bind(("::1", 0))
            six.listen()
            [me], _ = read_processes([os.getpid()])
            local = f"[::1]:{six.getsockname()[1]}"
            assert [s.state for s in me.sockets if s.local == local] == ["LISTEN"]


def test_host_process_libraries() -> None:
    # The test's own Python is dynamically linked: its maps name real files.
    [me], _ = read_processes([os.getpid()])
    assert me.exe is not None and me.exe not in me.libraries
    assert any("libc" in path for path in me.libraries)
    assert all(path.startswith("/") and "[" not in path for path in me.libraries)
    assert len(set(me.libraries)) == len(me.libraries)


def test_unix_table_paths_with_newlines_and_abstract_names() -> None:
    table = (
        b"Num       RefCount Protocol Flags    Type St Inode Path\n"
        b"0000000000000000: 00000002 00000000 00010000 0001 01 100 /run/a\nb\n"
        b"0000000000000000: 00000002 00000000 00000000 0001 03 101 @abstract@x\n"
        b"0000000000000000: 00000003 00000000 00000000 0001 03 102\n"
        b"0000000000000000: 00000002 00000000 00000000 0002 01 103 /tmp/\xff\n"
    )
    found = [(s.local, s.state, s.inode) for s in unix_sockets(table)]
    assert found == [
        ("/run/a\nb", "LISTEN", 100),
        ("@abstract@x", "CONNECTED", 101),
        ("", "CONNECTED", 102),
        ("/tmp/\\xff", "UNCONNECTED", 103),
    ]


def test_zombie_kept_and_reaped_process_dropped() -> None:
    child = subprocess.Popen(["sleep", "0"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    time.sleep(0.05)  # a zombie younger than a clock tick cannot be told from a pid reuse
    [zombie], _ = read_processes([child.pid])
    assert zombie.state == "Z" and zombie.comm == "sleep"
    assert zombie.exe_state == "unreadable" and zombie.exe is None
    assert any(error.startswith("exe: ") for error in zombie.errors)
    assert VANISHED not in zombie.errors
    child.wait()
    assert read_processes([child.pid]) == ((), ())  # gone before anything could be read


def test_process_reaped_during_the_read(monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(["sleep", "100"])
    read_environment = procs._environment

    def reap_then_read(*args: object, **kwargs: object) -> object:
        child.kill()
        child.wait()
        return read_environment(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(procs, "_environment", reap_then_read)
    [record], _ = read_processes([child.pid])
    assert record.pid == child.pid and record.comm == "sleep" and record.ppid == os.getpid()
    assert record.exe_sha256 is not None  # read before the process went away
    assert VANISHED in record.errors
    # what was read after the reap came from nowhere: not from a process reusing the pid
    assert record.cmdline == () and record.env_names == ()
    assert any(error.startswith("cmdline: ") for error in record.errors)
