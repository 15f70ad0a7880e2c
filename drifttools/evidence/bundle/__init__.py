"""Evidence bundles: collect a container's evidence once, seal it, verify it, read it back.

One module a step: :mod:`.layout` (the format and its one byte form), :mod:`.collect` (the
sink of a pipeline run), :mod:`.actions` (the hash-chained action log), :mod:`.seal`
(manifest, signature, digest file), :mod:`.members` and :mod:`.verify` (every byte checked),
:mod:`.read` (the report model back, blobs on demand, no engine needed).
"""

from drifttools.evidence.bundle.collect import BundleResult, BundleWriter
from drifttools.evidence.bundle.read import Bundle, is_bundle, open_bundle
from drifttools.evidence.bundle.verify import Verification, verify_bundle

__all__ = [
    "Bundle",
    "BundleResult",
    "BundleWriter",
    "Verification",
    "is_bundle",
    "open_bundle",
    "verify_bundle",
]
