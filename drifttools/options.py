"""How each stage of the pipeline runs: one frozen options object per stage.

The library's entry points, the CLI and every command build the same objects, so an
option exists once, with one default, whatever command passes it on:

==========================  ===============================================================
:class:`AcquisitionOptions`  how the container is read (method, freeze, env values, hash cap)
:class:`BaselineOptions`     where the image's layers come from and how strictly they verify
:class:`ClassifyOptions`     YARA, allowlists, scan caps (None: changes keep their base severity)
:class:`BundleOptions`       what an evidence bundle stores and how it is sealed
:class:`ResponseOptions`     what a response does to a container after preserving it
==========================  ===============================================================

The diff stage's only option, the paths it leaves out, is ``exclusions``
(:data:`drifttools.analysis.diff.DEFAULT_EXCLUSIONS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from drifttools.acquisition.rootfs import DEFAULT_HASH_CAP, Hashing
from drifttools.analysis.classifiers.yara import DEFAULT_ENGINE, DEFAULT_MAX_SCAN, DEFAULT_TIMEOUT
from drifttools.analysis.content_diff import (
    DEFAULT_DIFF_MAX_BYTES,
    DEFAULT_DIFF_MAX_LINES,
    DEFAULT_DIFF_MAX_SIZE,
)
from drifttools.baseline.cache import DEFAULT_CACHE, LayerCache

#: How a live container's filesystem can be read (see :mod:`drifttools.acquisition.snapshot`).
METHODS = ("auto", "upper", "merged", "export")

#: A file or executable larger than this is listed as skipped, not stored in a bundle.
DEFAULT_MAX_FILE_SIZE = 256 << 20
#: Blobs stop being stored once they would take more than this in all.
DEFAULT_MAX_TOTAL_SIZE = 4 << 30


@dataclass(frozen=True)
class AcquisitionOptions:
    """How the container is read. Never by exec, never by writing into it.

    ``method``: ``auto`` (the overlay upper dir when readable, else the merged view of a
    running container, else the engine's export), ``upper``, ``merged`` (walk and hash the
    whole filesystem: ``--verify-all``) or ``export``. ``freeze`` pauses the container while
    it is read (always unpaused). ``env_values`` keeps process environment values (they can
    be secrets; names are always kept). Files above ``hash_max_size`` bytes keep their facts
    but are not hashed (None: no cap). ``legacy_hashes`` adds the MD5 and SHA-1 of every
    hashed file and process executable, in the same read as its SHA-256 (many DFIR tools
    and threat-intel feeds key on them); False (``--sha256-only``) is faster.
    """

    method: str = "auto"
    freeze: bool = False
    env_values: bool = False
    hash_max_size: int | None = DEFAULT_HASH_CAP
    legacy_hashes: bool = True

    @property
    def hashing(self) -> Hashing:
        """How the walks of this acquisition hash files."""
        return Hashing(self.hash_max_size, self.legacy_hashes)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")


#: How the entry points read a container by default.
DEFAULT_ACQUISITION = AcquisitionOptions()


@dataclass(frozen=True)
class BaselineOptions:
    """Where the image's layers come from, and how strictly they must verify.

    ``cache``: a :class:`LayerCache`, ``"default"`` (the user's cache directory) or None
    (read and verify every layer again). With ``verify`` a digest mismatch stops the run
    (:class:`~drifttools.errors.DigestMismatch`); without, it is recorded in the report.
    ``trust_host_layers`` reads uncached layers from the engine's own unpacked layer
    directories without verifying them (faster; the report says so). ``trust_cache`` takes
    cached layers as they were verified, without re-checking the engine's copy of them (a
    warm run then costs what the changes cost; the layers are ``verified-by-cache``, with
    the date, not ``verified``).
    """

    cache: LayerCache | Literal["default"] | None = DEFAULT_CACHE
    verify: bool = True
    trust_host_layers: bool = False
    trust_cache: bool = False


#: Where the entry points find layers by default: the user's layer cache, verified.
DEFAULT_BASELINE = BaselineOptions()


@dataclass(frozen=True)
class ClassifyOptions:
    """How to classify. The defaults scan with the bundled rules on yara-x."""

    rules: Sequence[str | Path] = ()  # extra YARA files or directories
    bundled_rules: bool = True
    yara: bool = True
    yara_engine: str = DEFAULT_ENGINE  # yara-x | yara-python
    yara_timeout: int = DEFAULT_TIMEOUT  # seconds per file
    yara_defines: Sequence[str] = ()  # NAME=VALUE externals with fixed values (yara -d)
    yara_tags: Sequence[str] = ()  # only matches of rules with one of these tags (yara -t)
    yara_identifiers: Sequence[str] = ()  # only matches of these rules (yara -i)
    max_scan_size: int = DEFAULT_MAX_SCAN  # bytes of one file read and scanned at most
    allow: Sequence[str | Path] = ()  # allowlist files ([IMAGE-GLOB] PATH-GLOB a line)
    cache_dir: Path | None = None  # compiled rule sets and file samples are kept here if given
    workers: int = 0  # threads reading and examining files; 0: one per core
    diffs: bool = True  # a text diff (or a byte summary) of each modified regular file
    diff_max_size: int = DEFAULT_DIFF_MAX_SIZE  # bytes of either side, at most
    diff_max_lines: int = DEFAULT_DIFF_MAX_LINES  # lines of one diff shown, at most
    diff_max_bytes: int = DEFAULT_DIFF_MAX_BYTES  # bytes of one diff shown, at most


#: What the entry points classify with by default.
DEFAULT_CLASSIFICATION = ClassifyOptions()


@dataclass(frozen=True)
class BundleOptions:
    """What an evidence bundle stores, and how it is sealed.

    A deterministic tar unless ``directory``. Files and executables above
    ``max_file_size`` bytes, and blobs past ``max_total_size`` in all, are listed as
    skipped. ``operator`` and ``case_id`` are recorded; ``sign_key`` is a PEM Ed25519
    private key (unencrypted) the manifest is signed with.
    """

    directory: bool = False
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    max_total_size: int = DEFAULT_MAX_TOTAL_SIZE
    operator: str | None = None
    case_id: str | None = None
    sign_key: str | Path | None = None


#: What a bundle stores by default: a tar, unsigned, within the size caps above.
DEFAULT_BUNDLE = BundleOptions()


@dataclass(frozen=True)
class ResponseOptions:
    """What a response does to a container (:func:`drifttools.respond`), after preserving it.

    The actions run in this order: ``isolate`` (nftables in the container's own network
    namespace: everything but loopback dropped), ``freeze`` (the runtime's cgroup freezer),
    ``terminate`` (SIGKILL through the runtime; the record stays unless ``remove``), then
    ``fix`` (a directory where what stops the drift from recurring is written).
    ``preserve`` False skips the evidence bundle (only when said explicitly); ``force``
    goes on when preservation failed. ``operator`` is recorded (default: the user running).
    ``restart_wait`` is how long a terminated Kubernetes pod's restart is watched for.
    """

    isolate: bool = False
    freeze: bool = False
    terminate: bool = False
    remove: bool = False
    fix: Path | None = None
    dockerfile: Path | None = None  # the image's Dockerfile, for a patch against it
    preserve: bool = True
    force: bool = False
    operator: str | None = None
    restart_wait: float = 10.0


#: A response that only preserves the evidence (plan it, or run it with ``yes``).
DEFAULT_RESPONSE = ResponseOptions()
