"""Errors that stop a run.

Errors that must not stop a forensic run (a file that vanished, a layer whose
digest does not match) are values in the report instead. Every exception here
derives from :class:`DriftError`; where a builtin means the same thing, the
class inherits it too, so ``except FileNotFoundError`` keeps working.
"""

from __future__ import annotations


class DriftError(Exception):
    """Base of every error drifttools raises on purpose."""


class ImageError(DriftError):
    """An image archive or layout could not be read as an image."""


class ImageNotFound(ImageError, FileNotFoundError):
    """The image archive, layout directory or a blob it names does not exist."""


class LayerCorrupt(ImageError, ValueError):
    """A layer stream is not a readable tar (truncated, bad header, over a cap)."""


class DigestMismatch(ImageError):
    """Content does not hash to the digest its manifest or config claims."""


class LayerStoreError(ImageError, ValueError):
    """The engine's layer store cannot serve this image (driver, malformed record)."""


class LayerStoreMismatch(LayerStoreError, DigestMismatch):
    """The layer database holds another layer than the one expected at a chain id."""


class RootfsError(DriftError):
    """The container filesystem given could not be read."""


class CacheError(DriftError):
    """The layer cache directory cannot be used."""


class IndexCorrupt(DriftError, ValueError):
    """A stored tree or layer index is damaged (bad magic, version or checksum; truncated)."""


class MalformedPath(DriftError, ValueError):
    """Path text has a malformed escape (a backslash not followed by ``\\\\`` or ``xNN``)."""


class ContainerRuntimeError(DriftError):
    """Base of the errors a container runtime gives."""


class ContainerNotFound(ContainerRuntimeError, LookupError):
    """No container answers to the name or id given."""


class RuntimeUnavailable(ContainerRuntimeError, ConnectionError):
    """The container engine cannot be reached (no socket, daemon down)."""


class PermissionDenied(ContainerRuntimeError, PermissionError):
    """The engine or the host files refused us (not root, socket permissions)."""


class BundleError(DriftError):
    """A bundle cannot be written or read (bad key, output exists, not a bundle path)."""


class BundleCorrupt(BundleError, ValueError):
    """A bundle failed verification: what failed is in the message."""


class AllowlistError(DriftError, ValueError):
    """An allowlist file cannot be read or has a malformed line."""


class RulesError(DriftError, ValueError):
    """No rule of the rule set compiles, or a rules path cannot be read."""


class ScanTimeout(DriftError, TimeoutError):
    """A scan took longer than its timeout."""


class BoltError(DriftError, ValueError):
    """The file is not a bbolt database, or a page of it is corrupt."""


class ContentUnavailable(DriftError, OSError):
    """The bytes of a path cannot be read again (vanished, streamed export, not a file)."""


class NotRegularFile(ContentUnavailable, ValueError):
    """The path names a directory, FIFO, socket or device, not a regular file (never opened)."""


class ProcessGone(DriftError, ProcessLookupError):
    """A recorded process exited (or its pid was reused) before what was asked could be read."""


class ResponseRefused(DriftError, ValueError):
    """A response action would do harm or cannot be done here (the host's network namespace,
    a container that is not running): nothing was changed."""


class ResponseFailed(DriftError):
    """A response action was tried and failed (what the tool or the engine said is in the
    message); the actions before it stand and are logged."""


class ResponseInputError(DriftError, ValueError):
    """What a response or a fix was given cannot be read: a Falco policy or alert, a file
    that is neither a report nor a bundle (what is wrong is in the message)."""


class OutputError(DriftError, OSError):
    """A destination (an fsspec URL) that cannot be written or read, or is not a URL."""
