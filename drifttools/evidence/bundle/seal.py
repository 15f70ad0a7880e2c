"""Sealing: the manifest over every staged member, its Ed25519 signature, the digest file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from drifttools.errors import BundleError
from drifttools.evidence.bundle.actions import chain_head
from drifttools.evidence.bundle.layout import (
    ACTIONS,
    FORMAT,
    MANIFEST,
    SIGNATURE,
    canonical_manifest,
    files_under,
    sha256_file,
)


def write_digest_file(stage: Path, final: Path, digest: str, name: str) -> None:
    """The ``sha256sum`` line of the bundle, staged (renamed beside the bundle at the end)."""
    if final.exists():
        raise BundleError(f"{final}: already exists")
    with open(stage / "digest", "w") as handle:
        handle.write(f"{digest}  {name}\n")
        handle.flush()
        os.fsync(handle.fileno())


def seal(root: Path, signer: Any) -> int:
    """Write ``manifest.json`` (and its signature) over every member staged under ``root``,
    the action log's chain head included."""
    members = sorted(files_under(root))
    actions = root / ACTIONS
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "algorithm": "sha256",
        "members": [
            {
                "path": name,
                "sha256": sha256_file(root / name),
                "size": (root / name).stat().st_size,
            }
            for name in members
        ],
        "actions": chain_head(actions.read_bytes()) if actions.is_file() else None,
        "signature": None,
    }
    if signer is not None:
        from cryptography.hazmat.primitives import serialization

        public = signer.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        manifest["signature"] = {"algorithm": "ed25519", "public_key": public.hex()}
    data = canonical_manifest(manifest)
    (root / MANIFEST).write_bytes(data)
    if signer is not None:
        (root / SIGNATURE).write_bytes(signer.sign(data))
    return len(members)


def load_private_key(path: str | Path) -> Any:
    """An Ed25519 private key from a PEM file (unencrypted), to sign with."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a usable PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> bytes:
    """The raw bytes of an Ed25519 public key from a PEM file, to check a signature by."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a usable PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
