"""drifttools: what changed in a container compared with its verified image layers.

The public API is re-exported here; everything else is internal.
"""

from drifttools.acquisition.rootfs import read_rootfs
from drifttools.analysis.classifiers.allowlist import AllowlistError
from drifttools.analysis.classifiers.yara import RulesError, RuleSet, compile_rules
from drifttools.analysis.classify import classify
from drifttools.analysis.diff import DEFAULT_EXCLUSIONS, diff_snapshot
from drifttools.api import (
    bundle,
    diff,
    diff_checkpoint,
    diff_offline,
    offline_snapshot,
    processes,
    running_containers,
    snapshot,
)
from drifttools.baseline.cache import LayerCache
from drifttools.baseline.image import load_image
from drifttools.errors import (
    BundleCorrupt,
    BundleError,
    CacheError,
    ContainerNotFound,
    DigestMismatch,
    DriftError,
    ImageError,
    ImageNotFound,
    LayerCorrupt,
    OutputError,
    PermissionDenied,
    RootfsError,
    RuntimeUnavailable,
)
from drifttools.evidence.bundle import (
    Bundle,
    BundleResult,
    Verification,
    open_bundle,
    verify_bundle,
)
from drifttools.evidence.report import report_schema
from drifttools.fleet.records import ContainerResult, Summary
from drifttools.fleet.select import ScanFilter
from drifttools.fleet.summarize import summarize
from drifttools.models import (
    BaselineEntry,
    Change,
    ChangeKind,
    ContainerInfo,
    ContainerListing,
    DriftReport,
    ErrorRecord,
    Exclusion,
    FileFacts,
    FilesystemState,
    Finding,
    ImageIndex,
    ImageRef,
    Layer,
    MountPoint,
    PackageRecord,
    PackageRef,
    Posture,
    ProcessRecord,
    Provenance,
    RecordCheck,
    Severity,
    Snapshot,
    SocketRecord,
    Target,
)
from drifttools.options import (
    AcquisitionOptions,
    BaselineOptions,
    BundleOptions,
    ClassifyOptions,
)
from drifttools.progress import ProgressEvent, Stage
from drifttools.scan import BundlePolicy, scan
from drifttools.version import __version__

__all__ = [
    "DEFAULT_EXCLUSIONS",
    "AcquisitionOptions",
    "AllowlistError",
    "BaselineEntry",
    "BaselineOptions",
    "Bundle",
    "BundleCorrupt",
    "BundleError",
    "BundleOptions",
    "BundlePolicy",
    "BundleResult",
    "CacheError",
    "Change",
    "ChangeKind",
    "ClassifyOptions",
    "ContainerInfo",
    "ContainerListing",
    "ContainerNotFound",
    "ContainerResult",
    "DigestMismatch",
    "DriftError",
    "DriftReport",
    "ErrorRecord",
    "Exclusion",
    "FileFacts",
    "FilesystemState",
    "Finding",
    "ImageError",
    "ImageIndex",
    "ImageNotFound",
    "ImageRef",
    "Layer",
    "LayerCache",
    "LayerCorrupt",
    "MountPoint",
    "OutputError",
    "PackageRecord",
    "PackageRef",
    "PermissionDenied",
    "Posture",
    "ProcessRecord",
    "ProgressEvent",
    "Provenance",
    "RecordCheck",
    "RootfsError",
    "RuleSet",
    "RulesError",
    "RuntimeUnavailable",
    "ScanFilter",
    "Severity",
    "Snapshot",
    "SocketRecord",
    "Stage",
    "Summary",
    "Target",
    "Verification",
    "__version__",
    "bundle",
    "classify",
    "compile_rules",
    "diff",
    "diff_checkpoint",
    "diff_offline",
    "diff_snapshot",
    "load_image",
    "offline_snapshot",
    "open_bundle",
    "processes",
    "read_rootfs",
    "report_schema",
    "running_containers",
    "scan",
    "snapshot",
    "summarize",
    "verify_bundle",
]
