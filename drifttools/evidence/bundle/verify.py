"""Verification: every byte of a bundle checked, without an engine.

The tar framing (canonical headers, padding, trailer) or the directory's files; that
``manifest.json`` is in canonical form and names exactly the members present; every
member's SHA-256 and size; blob names against their content; the action log's hash chain
and its head against the manifest's; the signature; the ``<bundle>.sha256`` file beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drifttools.errors import BundleError
from drifttools.evidence.bundle.actions import check_chain
from drifttools.evidence.bundle.layout import (
    ACTIONS,
    BLOBS,
    FORMAT,
    MANIFEST,
    SIGNATURE,
    canonical_manifest,
    sha256_file,
)
from drifttools.evidence.bundle.members import Members, open_members
from drifttools.evidence.bundle.seal import load_public_key


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_bundle`: ``ok`` when ``problems`` is empty."""

    path: Path
    sha256: str  # the bundle's own digest (of manifest.json for a directory)
    members: int
    signed: bool
    key_given: bool
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(path: str | Path, *, public_key: str | Path | None = None) -> Verification:
    """Check every byte of a bundle. Raises :class:`BundleError` only when it cannot be read.

    Checked: the tar framing (canonical headers, padding, trailer) or the
    directory's files; that ``manifest.json`` is in canonical form and names
    exactly the members present; every member's SHA-256 and size; blob names
    against their content; the action log's hash chain (sequence numbers, each
    line naming the digest of the one before, the opening and sealing lines) and its
    head against the one the manifest records; the signature when present (against ``public_key``,
    a PEM Ed25519 public key, when given; a bundle that is not signed fails when
    a key is given); ``<bundle>.sha256`` beside it when present.
    """
    path = Path(path)
    expected_key = load_public_key(public_key) if public_key is not None else None
    members = open_members(path)
    try:
        problems = list(members.problems)
        manifest = _check_manifest(members, problems)
        signed = bool(manifest and manifest.get("signature"))
        if manifest is not None:
            _check_members(members, manifest, problems)
            if ACTIONS in members.spans:
                problems += check_chain(members.read(ACTIONS), manifest.get("actions"), ACTIONS)
            else:
                problems.append(f"{ACTIONS}: missing")
            _check_signature(members, manifest, expected_key, problems)
        elif expected_key is not None:
            problems.append("signature: cannot be checked without a manifest")
        if MANIFEST in members.spans:
            own = members.sha256(MANIFEST) if members.is_dir else sha256_file(path)
        else:
            own = ""
        _check_digest_file(path, own, problems)
        return Verification(
            path=path,
            sha256=own,
            members=len(members.spans),
            signed=signed,
            key_given=expected_key is not None,
            problems=tuple(problems),
        )
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    finally:
        members.close()


def _check_manifest(members: Members, problems: list[str]) -> dict[str, Any] | None:
    if MANIFEST not in members.spans:
        problems.append(f"{MANIFEST}: missing")
        return None
    data = members.read(MANIFEST)
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        problems.append(f"{MANIFEST}: not JSON: {exc}")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: not a {FORMAT} manifest")
        return None
    if canonical_manifest(manifest) != data:
        problems.append(f"{MANIFEST}: not in canonical form (edited?)")
    if manifest.get("algorithm") != "sha256" or not isinstance(manifest.get("members"), list):
        problems.append(f"{MANIFEST}: unknown algorithm or no member list")
        return None
    return manifest


def _check_members(members: Members, manifest: Mapping[str, Any], problems: list[str]) -> None:
    listed: dict[str, Mapping[str, Any]] = {}
    for entry in manifest["members"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            problems.append(f"{MANIFEST}: malformed member entry")
            continue
        listed[entry["path"]] = entry
    present = set(members.spans) - {MANIFEST, SIGNATURE}
    for name in sorted(present - listed.keys()):
        problems.append(f"{name}: not in the manifest")
    for name in sorted(listed.keys() - present):
        problems.append(f"{name}: in the manifest but missing")
    for name in sorted(present & listed.keys()):
        entry = listed[name]
        size = members.spans[name][1]
        if entry.get("size") != size:
            problems.append(f"{name}: size {size}, manifest says {entry.get('size')}")
        digest = members.sha256(name)
        if entry.get("sha256") != digest:
            problems.append(f"{name}: sha256 {digest}, manifest says {entry.get('sha256')}")
        elif name.startswith(BLOBS) and name[len(BLOBS) :] != digest:
            problems.append(f"{name}: blob content does not match its name")


def _check_signature(
    members: Members,
    manifest: Mapping[str, Any],
    expected_key: bytes | None,
    problems: list[str],
) -> None:
    info = manifest.get("signature")
    if info is None:
        if SIGNATURE in members.spans:
            problems.append(f"{SIGNATURE}: present but the manifest names no signature")
        if expected_key is not None:
            problems.append("signature: a key was given but the bundle is not signed")
        return
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if SIGNATURE not in members.spans:
        problems.append(f"{SIGNATURE}: missing (the manifest says the bundle is signed)")
        return
    try:
        raw = bytes.fromhex(info.get("public_key", ""))
        key = Ed25519PublicKey.from_public_bytes(raw)
        key.verify(members.read(SIGNATURE), members.read(MANIFEST))
    except (ValueError, AttributeError, InvalidSignature):
        problems.append(f"{SIGNATURE}: signature does not verify")
        return
    if expected_key is not None and raw != expected_key:
        problems.append("signature: made with another key than the one given")


def _check_digest_file(path: Path, own: str, problems: list[str]) -> None:
    beside = path.with_name(path.name + ".sha256")
    if not beside.is_file():
        return
    recorded = beside.read_text(errors="replace").split(maxsplit=1)
    if not recorded or recorded[0] != own:
        problems.append(f"{beside.name}: the bundle's digest is {own}, the file says otherwise")
