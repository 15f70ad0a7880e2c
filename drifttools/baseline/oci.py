"""OCI image documents, for every reader of images: index -> this platform's manifest -> config.

One resolver serves image archives and layout directories (:mod:`drifttools.baseline.image`)
and containerd's content store, live or on a dead host's disk: it follows a descriptor
through any image index to the manifest of the wanted platform (``os/arch`` or
``os/arch/variant``), checks each document against the digest that named it, reads and
parses the config, and checks it lists one diff_id per layer. A document that does not
hash to its digest is recorded in the manifest's ``problems``, not raised: the caller
decides whether an unverified image is acceptable. A malformed digest is refused.
"""

from __future__ import annotations

import hashlib
import json
import platform as host_platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drifttools.errors import ImageError
from drifttools.models import Descriptor, ImageManifest

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}

#: Reads the blob of a digest (``sha256:<hex>``), whole: documents are small.
ReadBlob = Callable[[str], bytes]


def host_platform_name() -> str:
    """This machine's platform in OCI terms, e.g. ``linux/amd64``."""
    machine = host_platform.machine()
    return f"linux/{_ARCHES.get(machine, machine)}"


def blob_name(digest: str, location: str) -> str:
    """Where an image layout keeps the blob of ``digest``: ``blobs/sha256/<hex>``."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ImageError(f"{location}: unsupported or malformed digest {digest!r}")
    return f"blobs/sha256/{hexdigest}"


@dataclass(frozen=True)
class ImageConfig:
    """An image config blob, its digest checked, with what the baseline needs from it."""

    digest: str  # sha256:<hex> of the bytes: the image id
    data: dict[str, Any]
    diff_ids: list[str]
    steps: list[str | None]  # created_by of each layer, None when history does not say
    problems: list[str]

    @classmethod
    def parse(cls, raw: bytes, expected_digest: str | None, location: str) -> ImageConfig:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        problems = []
        if expected_digest is not None and expected_digest != digest:
            problems.append(f"config hashes to {digest}, its reference says {expected_digest}")
        data = parse_json(raw, "image config", location)
        diff_ids = list(data.get("rootfs", {}).get("diff_ids", []))
        history = [h for h in data.get("history", []) if not h.get("empty_layer")]
        steps = [h.get("created_by") for h in history]
        if len(steps) != len(diff_ids):
            steps = [None] * len(diff_ids)
        return cls(digest, data, diff_ids, steps, problems)

    def check_layer_count(self, layers: int, location: str) -> None:
        """Raise :class:`ImageError` unless the config lists one diff_id per layer."""
        if len(self.diff_ids) != layers:
            raise ImageError(
                f"{location}: config lists {len(self.diff_ids)} diff_ids for {layers} layers"
            )


def resolve_image(
    target: Descriptor, read_blob: ReadBlob, platform: str, location: str
) -> tuple[ImageManifest, ImageConfig]:
    """Follow ``target`` (an index or a manifest) to ``platform``'s manifest and its config."""
    problems: list[str] = []
    descriptor = target
    document = _checked_json(descriptor, read_blob, problems, location)
    while _is_index(descriptor, document):
        descriptor = pick_platform(document.get("manifests", []), platform, location)
        document = _checked_json(descriptor, read_blob, problems, location)
    config_descriptor = Descriptor.of(document.get("config") or {})
    blob_name(config_descriptor.digest, location)
    config_bytes = read_blob(config_descriptor.digest)
    layers = tuple(Descriptor.of(layer) for layer in document.get("layers", []))
    for layer in layers:
        blob_name(layer.digest, location)  # refused now, before any layer is read
    config = ImageConfig.parse(config_bytes, config_descriptor.digest, location)
    config.check_layer_count(len(layers), location)
    manifest = ImageManifest(
        target=target,
        digest=descriptor.digest,
        config=config_descriptor,
        layers=layers,
        platform=platform,
        problems=tuple(problems),
    )
    return manifest, config


def pick_platform(
    descriptors: Sequence[Mapping[str, Any]], wanted: str, location: str
) -> Descriptor:
    """The entry of an image index for ``wanted`` (``os/arch`` or ``os/arch/variant``)."""
    available = []
    for descriptor in descriptors:
        spec = descriptor.get("platform") or {}
        name = f"{spec.get('os')}/{spec.get('architecture')}"
        variant = f"{name}/{spec['variant']}" if spec.get("variant") else name
        if wanted in (name, variant):
            return Descriptor.of(descriptor)
        available.append(variant)
    raise ImageError(f"{location}: no manifest for platform {wanted} (has {available})")


def parse_json(data: bytes, what: str, location: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImageError(f"{location}: {what} is not valid JSON: {exc}") from exc


def _is_index(descriptor: Descriptor, document: Mapping[str, Any]) -> bool:
    return (
        descriptor.media_type in INDEX_TYPES
        or document.get("mediaType") in INDEX_TYPES
        or "manifests" in document
    )


def _checked_json(
    descriptor: Descriptor, read_blob: ReadBlob, problems: list[str], location: str
) -> dict[str, Any]:
    """The JSON document ``descriptor`` names; a digest mismatch goes to ``problems``."""
    name = blob_name(descriptor.digest, location)
    data = read_blob(descriptor.digest)
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != descriptor.digest:
        problems.append(f"{name} hashes to {actual}, its descriptor says {descriptor.digest}")
    return parse_json(data, name, location)
