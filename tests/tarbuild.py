"""Build real layer tars and image archives for tests (no fixtures on disk, all regenerated)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard
from hypothesis import strategies as st

MTIME = 1_700_000_000


@dataclass(frozen=True)
class Member:
    """One member of a layer: file, dir, symlink, hardlink, fifo, whiteout or opaque marker."""

    path: str  # relative, no leading slash: "etc/passwd"
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""  # symlink target, or hardlink target (relative member path)
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()


def file(path: str, data: bytes, mode: int = 0o644) -> Member:
    return Member(path, "file", data, mode)


def directory(path: str, mode: int = 0o755) -> Member:
    return Member(path, "dir", mode=mode)


def symlink(path: str, target: str) -> Member:
    return Member(path, "symlink", mode=0o777, target=target)


def hardlink(path: str, target: str) -> Member:
    return Member(path, "hardlink", target=target)


def whiteout(path: str) -> Member:
    """Deletes ``path`` of lower layers."""
    parent, _, name = path.rpartition("/")
    return Member(f"{parent}/.wh.{name}" if parent else f".wh.{name}", "file", mode=0)


def opaque(directory_path: str) -> Member:
    """Hides everything lower layers have below ``directory_path``."""
    return Member(f"{directory_path}/.wh..wh..opq", "file", mode=0)


def layer_tar(members: Sequence[Member], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed layer tar of ``members``, in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for member in members:
            info = tarfile.TarInfo(member.path)
            info.mode, info.uid, info.gid, info.mtime = member.mode, member.uid, member.gid, MTIME
            if member.xattrs:
                info.pax_headers = {
                    f"SCHILY.xattr.{k}": v.decode("latin-1") for k, v in member.xattrs
                }
            payload = None
            if member.kind == "file":
                info.size = len(member.data)
                payload = io.BytesIO(member.data)
            elif member.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif member.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, member.target
            elif member.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, member.target
            elif member.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            else:
                raise ValueError(member.kind)
            archive.addfile(info, payload)
    return buffer.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    assert compression == "none"
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BuiltImage:
    path: Path
    config_digest: str
    diff_ids: list[str]
    layer_digests: list[str]


def _config(diff_ids: list[str], steps: Sequence[str] | None) -> bytes:
    history = [
        {"created_by": step} for step in (steps or [f"layer {i}" for i in range(len(diff_ids))])
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    return json.dumps(config, sort_keys=True).encode()


def _blob_store(layers: Sequence[bytes], compression: str, steps: Sequence[str] | None):
    blobs: dict[str, bytes] = {}
    diff_ids = [sha256(layer) for layer in layers]
    descriptors = []
    for layer in layers:
        blob = compress(layer, compression)
        blobs[f"blobs/sha256/{sha256(blob)[7:]}"] = blob
        suffix = {"none": "", "gzip": "+gzip", "zstd": "+zstd"}[compression]
        descriptors.append(
            {
                "mediaType": f"application/vnd.oci.image.layer.v1.tar{suffix}",
                "digest": sha256(blob),
                "size": len(blob),
            }
        )
    config = _config(diff_ids, steps)
    blobs[f"blobs/sha256/{sha256(config)[7:]}"] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": descriptors,
        }
    ).encode()
    blobs[f"blobs/sha256/{sha256(manifest)[7:]}"] = manifest
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha256(manifest),
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": "test:1"},
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    blobs["index.json"] = index
    blobs["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    return blobs, sha256(config), diff_ids, [d["digest"] for d in descriptors]


def oci_layout(
    root: Path,
    layers: Sequence[bytes],
    compression: str = "gzip",
    steps: Sequence[str] | None = None,
) -> BuiltImage:
    """Write an OCI image layout directory holding ``layers`` (uncompressed tars)."""
    blobs, config_digest, diff_ids, digests = _blob_store(layers, compression, steps)
    for name, data in blobs.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return BuiltImage(root, config_digest, diff_ids, digests)


def _write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))


def oci_archive(
    path: Path,
    layers: Sequence[bytes],
    compression: str = "gzip",
    steps: Sequence[str] | None = None,
) -> BuiltImage:
    """A ``docker save`` tar as Docker 25+ writes it: OCI layout plus a legacy manifest.json."""
    blobs, config_digest, diff_ids, digests = _blob_store(layers, compression, steps)
    blobs["manifest.json"] = json.dumps(
        [
            {
                "Config": f"blobs/sha256/{config_digest[7:]}",
                "RepoTags": ["test:1"],
                "Layers": [f"blobs/sha256/{d[7:]}" for d in digests],
            }
        ]
    ).encode()
    _write_tar(path, blobs)
    return BuiltImage(path, config_digest, diff_ids, digests)


def legacy_archive(
    path: Path, layers: Sequence[bytes], steps: Sequence[str] | None = None, tag: str = "test:1"
) -> BuiltImage:
    """A `docker save` tar in the legacy layout (Docker < 25 writes it; `docker load` reads it)."""
    diff_ids = [sha256(layer) for layer in layers]
    config = _config(diff_ids, steps)
    files = {f"{sha256(config)[7:]}.json": config}
    names = []
    for layer in layers:
        name = f"{sha256(layer)[7:]}/layer.tar"
        files[name] = layer
        names.append(name)
    files["manifest.json"] = json.dumps(
        [{"Config": f"{sha256(config)[7:]}.json", "RepoTags": [tag], "Layers": names}]
    ).encode()
    _write_tar(path, files)
    return BuiltImage(path, sha256(config), diff_ids, [])


def busybox_like_layers() -> list[bytes]:
    """Four layers shaped like conftest's busybox test image, made without the engine.

    A binary, its applet symlinks, then a layer of files (a hardlink among them) and one
    that deletes a file (whiteout), replaces a directory's content (opaque) and replaces a
    directory by a file.
    """
    applets = ["sh", "ls", "sleep"]
    return [
        layer_tar([directory("bin"), file("bin/busybox", b"\x7fELF busybox stand-in", 0o755)]),
        layer_tar(
            [directory("bin"), *(symlink(f"bin/{name}", "/bin/busybox") for name in applets)]
        ),
        layer_tar(
            [
                directory("etc"),
                file("etc/gone", b"gone\n"),
                directory("opt"),
                directory("opt/app"),
                file("opt/app/a", b"hello\n"),
                hardlink("opt/app/hard", "opt/app/a"),
                directory("opt/app/sub"),
                file("opt/app/sub/b", b"b\n"),
                directory("replaced"),
                file("replaced/x", b"x\n"),
                directory("tmp", 0o1777),
                directory("var"),
                directory("var/log"),
                file("entrypoint.sh", b"#!/bin/sh\nexec sleep 100000\n", 0o755),
            ]
        ),
        layer_tar(
            [
                directory("etc"),
                whiteout("etc/gone"),
                directory("opt/app/sub"),
                opaque("opt/app/sub"),
                file("opt/app/sub/c", b"new\n"),
                file("replaced", b"file\n"),
            ]
        ),
    ]


DIRS = ["a", "a/b", "c"]
NAMES = ["x", "y", "a", "b"]


@st.composite
def layer_stacks(draw: st.DrawFn) -> list[bytes]:
    """Stacks of 1-4 layers mixing files, dirs, symlinks, hardlinks, whiteouts, opaque dirs."""
    layers = []
    for number in range(draw(st.integers(1, 4))):
        members: list[Member] = []
        used: set[str] = set()
        files_here: list[str] = []
        for _ in range(draw(st.integers(0, 7))):
            parent = draw(st.sampled_from(["", *DIRS]))
            path = f"{parent}/{draw(st.sampled_from(NAMES))}".lstrip("/")
            if path in used or any(
                path.startswith(u + "/") or u.startswith(path + "/") for u in used
            ):
                continue
            op = draw(
                st.sampled_from(
                    ["file", "file", "dir", "symlink", "hardlink", "whiteout", "opaque"]
                    if number
                    else ["file", "file", "dir", "symlink", "hardlink"]
                )
            )
            parents = [p for p in DIRS if path.startswith(p + "/")]
            if op == "opaque":
                members += [directory(p) for p in parents if p not in used]
                members += [directory(path), opaque(path)]
            elif op == "whiteout":
                members += [directory(p) for p in parents if p not in used]
                members.append(whiteout(path))
            else:
                members += [directory(p) for p in parents if p not in used]
                if op == "file":
                    data = draw(st.binary(max_size=64))
                    members.append(file(path, data, draw(st.sampled_from([0o644, 0o755, 0o4755]))))
                    files_here.append(path)
                elif op == "dir":
                    members.append(directory(path, draw(st.sampled_from([0o755, 0o700]))))
                elif op == "symlink":
                    members.append(
                        symlink(path, draw(st.sampled_from(["/etc/passwd", "../x", "x"])))
                    )
                elif op == "hardlink" and files_here:
                    members.append(hardlink(path, draw(st.sampled_from(files_here))))
            used.update(parents)
            used.add(path)
        layers.append(layer_tar(members))
    return layers
