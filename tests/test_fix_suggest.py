"""The fix suggestions, from a report made here (pure code: no engine)."""

from __future__ import annotations

import kubernetes_validate

from drifttools.models import (
    Change,
    ChangeKind,
    DriftReport,
    FileFacts,
    ImageRef,
    PackageRecord,
    ProcessRecord,
    Severity,
    SocketRecord,
    Target,
)
from drifttools.response.fixes.dockerfile import derived_dockerfile, dockerfile_patch
from drifttools.response.fixes.kubernetes import pod_fragment
from drifttools.response.fixes.suggest import suggest


def _file(mode: int = 0o644) -> FileFacts:
    return FileFacts("file", mode, 0, 0, 10, 0)


def _dir() -> FileFacts:
    return FileFacts("dir", 0o755, 0, 0, 0, 0)


def _process(pid: int, exe: str, euid: int, *cmdline: str) -> ProcessRecord:
    return ProcessRecord(
        pid=pid, ns_pid=pid, ppid=1, uid=euid, euid=euid, gid=euid, egid=euid,
        started_at="2026-12-03T09:00:00Z", start_ticks=1, comm=exe.rsplit("/", 1)[1],
        cmdline=cmdline, state="S", exe=exe, exe_state="present", exe_sha256=None,
        exe_size=None, cwd="/",
    )  # fmt: skip


JQ = "/usr/bin/jq"
REPORT = DriftReport(
    target=Target("docker", "f" * 64, "web", ImageRef("web:1", "sha256:" + "a" * 64)),
    acquired_at="2026-12-03T09:00:00Z",
    baseline=(),
    changes=(
        Change("/usr/share/doc/jq", ChangeKind.ADDED, None, _dir()),
        Change(JQ, ChangeKind.ADDED, None, _file(0o755)),
        Change("/srv/cache", ChangeKind.ADDED, None, _dir()),
        Change("/srv/cache/a/b.json", ChangeKind.ADDED, None, _file()),
        Change("/srv/cache/a", ChangeKind.ADDED, None, _dir()),
        Change("/tmp/session", ChangeKind.ADDED, None, _file()),
        Change("/tmp/kworkerd", ChangeKind.ADDED, None, _file(0o755), severity=Severity.HIGH),
        Change("/etc/cron.d/job", ChangeKind.ADDED, None, _file(), severity=Severity.HIGH),
    ),
    processes=(
        _process(10, "/app/server", 1000, "/app/server"),
        _process(11, "/usr/bin/wget", 1000, "wget", "http://198.51.100.1/x"),
    ),
    sockets=(SocketRecord("tcp", "LISTEN", "0.0.0.0:80", "", 1, (10,)),),
    packages=(
        PackageRecord(
            "dpkg",
            "jq",
            "added",
            None,
            "1.6-2.1",
            "amd64",
            "pkg:deb/debian/jq@1.6-2.1",
            files=(JQ, "/usr/share/doc/jq/copyright"),
        ),
    ),
)


def test_each_kind_of_drift_gets_its_fix_and_its_reason() -> None:
    fixes = suggest(REPORT, {"config": {"User": "1000"}})
    assert [(s.subject, s.motivated_by[0]) for s in fixes.installs] == [
        ("dpkg jq=1.6-2.1", "pkg:deb/debian/jq@1.6-2.1 added at runtime")
    ]
    assert {s.subject: s.motivated_by for s in fixes.volumes} == {
        "/srv/cache": ("/srv/cache/a/b.json",),
        "/tmp": ("/tmp/session",),
    }
    assert [s.subject for s in fixes.investigate] == ["/tmp/kworkerd", "/etc/cron.d/job"]
    assert {s.subject for s in fixes.tools} == {"/usr/bin/wget", "apt-get", "dpkg"}
    wget = next(s for s in fixes.tools if s.subject == "/usr/bin/wget")
    assert wget.motivated_by == ("pid 11: wget http://198.51.100.1/x",)
    assert fixes.user.detail == {"non_root": True, "uid": 1000}
    assert fixes.capabilities.detail == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}

    pod = pod_fragment(fixes, "web")
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 1000
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert pod["spec"]["volumes"][1] == {"name": "drift-1", "emptyDir": {"medium": "Memory"}}


def test_the_patch_goes_before_the_last_stages_cmd() -> None:
    original = 'FROM a AS build\nCMD x\nFROM b\nCOPY --from=build / /\nCMD ["/app"]\n'
    patch = dockerfile_patch(original, suggest(REPORT))
    added = [line[1:] for line in patch.splitlines() if line.startswith("+") and line[1:2] != "+"]
    assert "RUN apt-get update && apt-get install -y --no-install-recommends jq=1.6-2.1" in added[1]
    body = patch.splitlines()[3:]
    first = next(i for i, line in enumerate(body) if line.startswith("+"))
    assert body[first - 1] == " COPY --from=build / /"  # in the last stage, not the first
    assert 'VOLUME ["/tmp"]' in added and "RUN mkdir -p /srv/cache" in added
    assert patch.splitlines()[-1] == ' CMD ["/app"]'
    assert derived_dockerfile(suggest(REPORT)).startswith("FROM web:1\n")
