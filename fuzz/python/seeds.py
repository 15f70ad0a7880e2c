"""Write the committed seed inputs of every fuzz target: ``python -m fuzz.python.seeds``.

One small, well-formed input a target (``seeds/<target>/<name>``), so that the fuzzer
starts from what the real files look like. Regenerable: the seeds are this file's output.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tempfile
from pathlib import Path

from drifttools.evidence.bundle.actions import SEALING, STARTED, ActionLog
from drifttools.evidence.bundle.layout import write_tar
from drifttools.evidence.bundle.seal import seal
from drifttools.evidence.report import report_to_dict
from fuzz.python.targets import _BUNDLE_MEMBERS, SEPARATOR, _tar
from tests.reports import synthetic_report

SEEDS = Path(__file__).parent / "seeds"


def joined(*files: bytes) -> bytes:
    return SEPARATOR.join(files)


def rpm_header(tags: list[tuple[int, int, list[str] | list[int]]]) -> bytes:
    """An rpm header blob (no lead, no region tag): index entries then the data store."""
    index, store = b"", b""
    for tag, kind, values in tags:
        if kind == 4:  # INT32, aligned
            store += b"\0" * (-len(store) % 4)
            data = struct.pack(f">{len(values)}i", *values)
        else:
            data = b"".join(str(v).encode() + b"\0" for v in values)
        index += struct.pack(">IIiI", tag, kind, len(store), len(values))
        store += data
    return struct.pack(">II", len(tags), len(store)) + index + store


def oci_chain() -> bytes:
    """An index naming a manifest naming a config (digests by position, see the target)."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
        "history": [{"created_by": "COPY x /x"}, {"created_by": "ENV a=b", "empty_layer": True}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{2:064x}",
            "size": 1,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + "b" * 64,
                "size": 10,
            }
        ],
    }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": f"sha256:{1:064x}",
                "size": 1,
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    }
    return joined(*(json.dumps(d).encode() for d in (index, manifest, config)))


def pstree() -> bytes:
    entry = bytes([0x08, 0x07, 0x10, 0x01, 0x18, 0x07, 0x20, 0x07])  # pid 7, ppid 1, pgid, sid
    return struct.pack("<II", 0x54564319, 0x50273030) + struct.pack("<I", len(entry)) + entry


def _log() -> bytes:
    log = ActionLog()
    log.add(STARTED, reference="web-1")
    log.add("snapshot taken", filesystems=["upper"])
    log.add(SEALING)
    return log.data()


def bundle_members() -> dict[str, bytes]:
    document = report_to_dict(synthetic_report(2))
    acquired = {key: document.pop(key) for key in ("acquired_at", "notes")}
    change = document["changes"][0]["path"]
    content = {
        "report.json": json.dumps(document).encode(),
        "acquisition/record.json": json.dumps({"report": acquired, "operator": "a"}).encode(),
        "evidence.json": json.dumps({"executables": [], "files": [], "skipped": []}).encode(),
        "image.json": json.dumps({"id": "sha256:" + "2" * 64}).encode(),
        "container/inspect.json": json.dumps({"Id": "synthetic"}).encode(),
        "facts.json": json.dumps({change: {"atime_ns": 1, "inode": 2, "nlink": 1}}).encode(),
    }
    return {name: content.get(name, b"") or _log() for name in _BUNDLE_MEMBERS}


def bundle_tar(members: dict[str, bytes]) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "b"
        for name, data in members.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        blob = b"dropped\n"
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "blobs" / "sha256" / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
        seal(root, None)
        buffer = io.BytesIO()
        write_tar(root, buffer)
        return buffer.getvalue()


def seeds() -> dict[str, dict[str, bytes]]:
    status = (
        b"Package: p\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0-1\n"
        b"Conffiles:\n /etc/p.conf 0123456789abcdef0123456789abcdef\n /etc/q newconffile\n"
        b"\nPackage: gone\nStatus: deinstall ok config-files\n"
    )
    md5sums = b"0123456789abcdef0123456789abcdef  usr/bin/p\nbad line\n"
    apk_db = (
        b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nF:lib\nR:ld-musl-x86_64.so.1\n"
        b"Z:Q1hjUTPyt3a/MzMTRmQ0xEpGOTYK8=\nR:libc.so\n\nP:busybox\nV:1.36\nF:bin\nR:sh\n"
    )
    rpm_blob = rpm_header(
        [
            (1000, 6, ["bash"]),
            (1001, 6, ["5.2"]),
            (1002, 6, ["1.el9"]),
            (1022, 6, ["x86_64"]),
            (1116, 4, [0, 1]),
            (1117, 8, ["bash", "bashrc"]),
            (1118, 8, ["/usr/bin/", "/etc/"]),
            (1035, 8, ["ab" * 32, "cd" * 32]),
            (1037, 4, [0, 1]),
            (5011, 4, [8]),
        ]
    )
    metadata = b"Metadata-Version: 2.1\nName: P_kg\nVersion: 1.0\n\nbody\n"
    record = (
        b"p/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n"
        b'p-1.dist-info/METADATA,,\n../../../bin/p,sha256=,\n"q,x.py",md5=abc,1\n'
    )
    stat = b"42 (a) b)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10 18446744\n"
    proc_status = b"Name:\tsh\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nNSpid:\t42\t1\n"
    mountinfo = (
        b"22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u\n"
        b"23 22 0:22 / /dev/shm rw - tmpfs shm rw\n"
        b"24 22 8:1 /vol /data\\040x rw shared:1 - ext4 /dev/sda1 rw\n"
    )
    tcp = (
        b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt uid "
        b"timeout inode\n"
        b"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 "
        b"1234 1 0000000000000000 100 0 0 10 0\n"
        b"   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 "
        b"0A 00000000:00000000 00:00000000 00000000 0 0 99 1\n"
    )
    unix = (
        b"Num       RefCount Protocol Flags    Type St Inode Path\n"
        b"0000000000000000: 00000002 00000000 00010000 0001 01 5678 /run/a.sock\n"
        b"0000000000000000: 00000003 00000000 00000000 0001 03 5679 /tmp/x\ny\n"
    )
    diff = _tar({"etc/motd": b"hi\n", "tmp/.wh.gone": b""})
    checkpoint = joined(
        json.dumps({"id": "abc", "name": "web", "rootfsImageName": "web:1"}).encode(),
        json.dumps(
            {
                "mounts": [{"destination": "/data", "type": "bind", "source": "/v"}],
                "process": {"capabilities": {"bounding": ["CAP_CHOWN"]}},
                "linux": {"namespaces": [{"type": "pid"}]},
            }
        ).encode(),
        json.dumps(["/etc/gone", "tmp/x"]).encode(),
        pstree(),
        diff,
    )
    members = bundle_members()
    return {
        "dpkg": {"status": joined(status, md5sums, b"/.\n/usr/bin/p\n", md5sums, b"/a\n/b\np\n")},
        "apk": {"installed": apk_db},
        "rpm": {"header": rpm_blob},
        "python": {"dist-info": joined(metadata, record)},
        "npm": {"package.json": b'{"name": "p", "version": "1.0.0"}'},
        "proc": {"proc": joined(stat, proc_status, mountinfo, tcp, unix)},
        "oci": {"index": oci_chain()},
        "checkpoint": {"archive": checkpoint},
        "bundle-verify": {"bundle.tar": bundle_tar(members)},
        "bundle-read": {"members": joined(*(members[name] for name in _BUNDLE_MEMBERS))},
    }


def main() -> None:
    for target, files in seeds().items():
        directory = SEEDS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (directory / name).write_bytes(data)


if __name__ == "__main__":
    main()
