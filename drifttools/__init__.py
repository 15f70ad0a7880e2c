"""drifttools: what changed in a container compared with its verified image layers.

The public API is re-exported here; everything else is internal.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        ResponseFailed,
        ResponseInputError,
        ResponseRefused,
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
    from drifttools.fix import FixResult, fix
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
        ResponseOptions,
    )
    from drifttools.progress import ProgressEvent, Stage
    from drifttools.respond import Response, release, respond
    from drifttools.scan import BundlePolicy, scan
    from drifttools.version import __version__

#: Where each public name lives: imported on first use (PEP 562), so that ``import drifttools``
#: (and a CLI command) loads only what it uses, not gRPC, YARA, libmagic or fsspec.
_EXPORTS: dict[str, str] = {
    "AcquisitionOptions": "drifttools.options",
    "AllowlistError": "drifttools.analysis.classifiers.allowlist",
    "BaselineEntry": "drifttools.models",
    "BaselineOptions": "drifttools.options",
    "Bundle": "drifttools.evidence.bundle",
    "BundleCorrupt": "drifttools.errors",
    "BundleError": "drifttools.errors",
    "BundleOptions": "drifttools.options",
    "BundlePolicy": "drifttools.scan",
    "BundleResult": "drifttools.evidence.bundle",
    "CacheError": "drifttools.errors",
    "Change": "drifttools.models",
    "ChangeKind": "drifttools.models",
    "ClassifyOptions": "drifttools.options",
    "ContainerInfo": "drifttools.models",
    "ContainerListing": "drifttools.models",
    "ContainerNotFound": "drifttools.errors",
    "ContainerResult": "drifttools.fleet.records",
    "DEFAULT_EXCLUSIONS": "drifttools.analysis.diff",
    "DigestMismatch": "drifttools.errors",
    "DriftError": "drifttools.errors",
    "DriftReport": "drifttools.models",
    "ErrorRecord": "drifttools.models",
    "Exclusion": "drifttools.models",
    "FileFacts": "drifttools.models",
    "FilesystemState": "drifttools.models",
    "Finding": "drifttools.models",
    "FixResult": "drifttools.fix",
    "ImageError": "drifttools.errors",
    "ImageIndex": "drifttools.models",
    "ImageNotFound": "drifttools.errors",
    "ImageRef": "drifttools.models",
    "Layer": "drifttools.models",
    "LayerCache": "drifttools.baseline.cache",
    "LayerCorrupt": "drifttools.errors",
    "MountPoint": "drifttools.models",
    "OutputError": "drifttools.errors",
    "PackageRecord": "drifttools.models",
    "PackageRef": "drifttools.models",
    "PermissionDenied": "drifttools.errors",
    "Posture": "drifttools.models",
    "ProcessRecord": "drifttools.models",
    "ProgressEvent": "drifttools.progress",
    "Provenance": "drifttools.models",
    "RecordCheck": "drifttools.models",
    "Response": "drifttools.respond",
    "ResponseFailed": "drifttools.errors",
    "ResponseInputError": "drifttools.errors",
    "ResponseOptions": "drifttools.options",
    "ResponseRefused": "drifttools.errors",
    "RootfsError": "drifttools.errors",
    "RuleSet": "drifttools.analysis.classifiers.yara",
    "RulesError": "drifttools.analysis.classifiers.yara",
    "RuntimeUnavailable": "drifttools.errors",
    "ScanFilter": "drifttools.fleet.select",
    "Severity": "drifttools.models",
    "Snapshot": "drifttools.models",
    "SocketRecord": "drifttools.models",
    "Stage": "drifttools.progress",
    "Summary": "drifttools.fleet.records",
    "Target": "drifttools.models",
    "Verification": "drifttools.evidence.bundle",
    "__version__": "drifttools.version",
    "bundle": "drifttools.api",
    "classify": "drifttools.analysis.classify",
    "compile_rules": "drifttools.analysis.classifiers.yara",
    "diff": "drifttools.api",
    "diff_checkpoint": "drifttools.api",
    "diff_offline": "drifttools.api",
    "diff_snapshot": "drifttools.analysis.diff",
    "fix": "drifttools.fix",
    "load_image": "drifttools.baseline.image",
    "offline_snapshot": "drifttools.api",
    "open_bundle": "drifttools.evidence.bundle",
    "processes": "drifttools.api",
    "read_rootfs": "drifttools.acquisition.rootfs",
    "release": "drifttools.respond",
    "report_schema": "drifttools.evidence.report",
    "respond": "drifttools.respond",
    "running_containers": "drifttools.api",
    "scan": "drifttools.scan",
    "snapshot": "drifttools.api",
    "summarize": "drifttools.fleet.summarize",
    "verify_bundle": "drifttools.evidence.bundle",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'drifttools' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """The package, whose functions ``scan``, ``respond`` and ``fix`` share their names with
    submodules: importing such a submodule must not replace the function by the module
    (the import system sets the submodule as an attribute of its package)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
    "FixResult",
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
    "Response",
    "ResponseFailed",
    "ResponseInputError",
    "ResponseOptions",
    "ResponseRefused",
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
    "fix",
    "load_image",
    "offline_snapshot",
    "open_bundle",
    "processes",
    "read_rootfs",
    "release",
    "report_schema",
    "respond",
    "running_containers",
    "scan",
    "snapshot",
    "summarize",
    "verify_bundle",
]
