"""OCI image documents, for every reader of images: index -> this platform's manifest -> config.

One resolver serves image archives and layout directories (:mod:`drifttools.baseline.image`)
and containerd's content store, live or on a dead host's disk: it follows a descriptor
through any image index to the manifest of the wanted platform (``os/arch`` or
``os/arch/variant``), checks each document against the digest that named it, reads and
parses the config, and checks it lists one diff_id per layer. A document that does not
hash to its digest is recorded in the manifest's ``problems``, not raised: the caller
decides whether an unverified image is acceptable. A malformed digest, a document of the
wrong shape (a list where an object belongs) and an index that names itself again are
refused (:class:`ImageError`).
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
_HEX = frozenset("0123456789abcdef")
#: Indexes followed at most from the descriptor given to a manifest (Docker writes one).
_MAX_INDEXES = 8

#: Reads the blob of a digest (``sha256:<hex>``), whole: documents are small.
ReadBlob = Callable[[str], bytes]


def host_platform_name() -> str:
    """This machine's platform in OCI terms, e.g. ``linux/amd64``."""
    machine = host_platform.machine()
    return f"linux/{_ARCHES.get(machine, machine)}"


def blob_name(digest: str, location: str) -> str:
    """Where an image layout keeps the blob of ``digest``: ``blobs/sha256/<hex>``."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not _HEX.issuperset(hexdigest):
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
        data = json_object(parse_json(raw, "image config", location), "image config", location)
        rootfs = json_object(data.get("rootfs", {}), "image config rootfs", location)
        diff_ids = rootfs.get("diff_ids", [])
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise ImageError(f"{location}: image config diff_ids is not a list of digests")
        everything = json_objects(data.get("history", []), "image config history", location)
        history = [h for h in everything if not h.get("empty_layer")]
        steps = [h["created_by"] if isinstance(h.get("created_by"), str) else None for h in history]
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
    followed = 0
    while _is_index(descriptor, document):
        followed += 1
        if followed > _MAX_INDEXES:
            raise ImageError(f"{location}: image indexes nested over {_MAX_INDEXES} deep (a loop?)")
        descriptor = pick_platform(document.get("manifests", []), platform, location)
        document = _checked_json(descriptor, read_blob, problems, location)
    config_descriptor = Descriptor.of(
        json_object(document.get("config") or {}, "manifest config", location)
    )
    blob_name(config_descriptor.digest, location)
    config_bytes = read_blob(config_descriptor.digest)
    layers = tuple(
        Descriptor.of(layer)
        for layer in json_objects(document.get("layers", []), "manifest layers", location)
    )
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
    for descriptor in json_objects(descriptors, "index manifests", location):
        spec = json_object(descriptor.get("platform") or {}, "index platform", location)
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


def json_object(value: Any, what: str, location: str) -> dict[str, Any]:
    """``value`` when it is a JSON object; else :class:`ImageError` naming ``what``."""
    if not isinstance(value, dict):
        raise ImageError(f"{location}: {what} is not a JSON object")
    return value


def json_objects(value: Any, what: str, location: str) -> list[dict[str, Any]]:
    """``value`` when it is a list of JSON objects; else :class:`ImageError`."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ImageError(f"{location}: {what} is not a list of JSON objects")
    return value


def _is_index(descriptor: Descriptor, document: Mapping[str, Any]) -> bool:
    media_type = document.get("mediaType")
    return (
        descriptor.media_type in INDEX_TYPES
        or (isinstance(media_type, str) and media_type in INDEX_TYPES)
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
    return json_object(parse_json(data, name, location), name, location)
