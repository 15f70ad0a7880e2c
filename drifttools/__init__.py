"""drifttools: what changed in a container compared with its verified image layers.

The public API is re-exported here; everything else is internal.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("drifttools")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

from drifttools.api import (
    diff,
    diff_offline,
    offline_snapshot,
    processes,
    running_containers,
    snapshot,
)
from drifttools.cache import LayerCache
from drifttools.drift import DEFAULT_EXCLUSIONS, diff_snapshot
from drifttools.errors import (
    CacheError,
    ContainerNotFound,
    DigestMismatch,
    DriftError,
    ImageError,
    ImageNotFound,
    LayerCorrupt,
    PermissionDenied,
    RootfsError,
    RuntimeUnavailable,
)
from drifttools.image import load_image
from drifttools.models import (
    BaselineEntry,
    Change,
    ChangeKind,
    ContainerInfo,
    DriftReport,
    ErrorRecord,
    Exclusion,
    FileFacts,
    FilesystemState,
    ImageIndex,
    ImageRef,
    Layer,
    MountPoint,
    ProcessRecord,
    Severity,
    Snapshot,
    SocketRecord,
    Target,
)
from drifttools.report import report_schema
from drifttools.rootfs import read_rootfs

__all__ = [
    "DEFAULT_EXCLUSIONS",
    "BaselineEntry",
    "CacheError",
    "Change",
    "ChangeKind",
    "ContainerInfo",
    "ContainerNotFound",
    "DigestMismatch",
    "DriftError",
    "DriftReport",
    "ErrorRecord",
    "Exclusion",
    "FileFacts",
    "FilesystemState",
    "ImageError",
    "ImageIndex",
    "ImageNotFound",
    "ImageRef",
    "Layer",
    "LayerCache",
    "LayerCorrupt",
    "MountPoint",
    "PermissionDenied",
    "ProcessRecord",
    "RootfsError",
    "RuntimeUnavailable",
    "Severity",
    "Snapshot",
    "SocketRecord",
    "Target",
    "__version__",
    "diff",
    "diff_offline",
    "diff_snapshot",
    "load_image",
    "offline_snapshot",
    "processes",
    "read_rootfs",
    "report_schema",
    "running_containers",
    "snapshot",
]
