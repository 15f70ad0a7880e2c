"""The one data model every layer of drifttools speaks.

Frozen dataclasses: runtimes and image readers produce them, the diff engine
compares them, renderers and bundles serialise them. Nothing here does I/O.

Paths are text. Linux paths are bytes; bytes that are not UTF-8 are written
``\\xNN`` and a literal backslash ``\\\\`` (see :func:`drifttools._native.escape_path`),
a rule that round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from drifttools.evidence.report import report_to_dict, report_to_json

if TYPE_CHECKING:
    from drifttools._native import Entry, Tree


class GuardedRoot(Protocol):
    """What the model needs of the pid-reuse guard of a ``/proc/<pid>/root``
    (:class:`drifttools.acquisition.guard.RootGuard`)."""

    @property
    def root(self) -> str:
        """The host path of the container's root, ``/proc/<pid>/root``."""
        ...

    def check(self) -> None:
        """Raise :class:`~drifttools.errors.RootfsError` unless the pid is still the
        container's process."""
        ...


class ChangeKind(StrEnum):
    """What happened to a path, compared with the image."""

    ADDED = "added"
    MODIFIED = "modified"  # content (bytes or symlink target)
    METADATA = "metadata"  # mode, owner, xattrs, capabilities; never mtime alone
    TYPE = "type"  # file <-> dir <-> symlink ...
    DELETED = "deleted"


class Severity(StrEnum):
    """How much a change or finding matters, lowest first."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANKS[self]


#: Severity ranks worked out once (``rank`` is read for every finding of every change).
_SEVERITY_RANKS = {level: index for index, level in enumerate(Severity)}


NO_XATTRS: Mapping[str, bytes] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What is known of one filesystem object, in the image or in the container."""

    kind: str  # file | dir | symlink | char | block | fifo | socket | unknown
    mode: int  # permission bits with setuid/setgid/sticky (st_mode & 0o7777)
    uid: int
    gid: int
    size: int
    mtime_ns: int
    sha256: str | None = None  # regular files only
    target: str | None = None  # symlink target, never followed
    xattrs: Mapping[str, bytes] = field(default_factory=lambda: NO_XATTRS)
    rdev: tuple[int, int] | None = None  # devices: (major, minor)
    atime_ns: int | None = None
    ctime_ns: int | None = None
    btime_ns: int | None = None
    inode: int | None = None
    nlink: int | None = None
    md5: str | None = None  # regular files, read with the SHA-256 (unless opted out)
    sha1: str | None = None

    @property
    def capabilities(self) -> bytes | None:
        """The raw ``security.capability`` xattr, if any."""
        return self.xattrs.get("security.capability")


@dataclass(frozen=True, slots=True)
class Layer:
    """One image layer as the baseline used it, with how it was verified."""

    diff_id: str  # sha256:<hex> of the uncompressed tar, from the image config
    digest: str | None  # sha256:<hex> of the blob as stored, when the format names it
    media_type: str
    size: int  # bytes of the blob as stored
    created_by: str | None  # the history step (Dockerfile instruction) that made it
    verified: bool  # every digest of this layer checked and equal
    # how it was read: "archive" (an image archive or layout, hashed now), "stream" (an
    # engine's image export), "engine-store" (the engine's layer store or content store),
    # "snapshot-lowerdir" (unpacked, not verifiable), "cache" (the cached index, this input
    # re-checked: blob digest or lower-dir fingerprint) or "verified-by-cache" (the cached
    # index, this input not re-checkable here: not verified)
    source: str
    problems: tuple[str, ...] = ()
    verified_at: str | None = None  # from the cache: when the cache verified it (RFC 3339)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Which image the baseline is: what the user named and its content id."""

    ref: str | None  # a tag such as "web:1.2", when known
    id: str  # sha256:<hex> of the image config
    platform: str = "linux/amd64"
    config: Mapping[str, Any] = field(default_factory=dict)  # the raw config JSON: evidence


def facts_from_entry(entry: Entry) -> FileFacts:
    """The facts of one native entry (a hardlink is resolved by the caller)."""
    rdev = (entry.rdev_major, entry.rdev_minor) if entry.kind in ("char", "block") else None
    xattrs = MappingProxyType(dict(entry.xattrs)) if entry.xattrs else NO_XATTRS
    return FileFacts(
        kind=entry.kind,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        sha256=entry.sha256,
        target=entry.target,
        xattrs=xattrs,
        rdev=rdev,
        atime_ns=entry.atime_ns,
        ctime_ns=entry.ctime_ns,
        btime_ns=entry.btime_ns,
        inode=entry.inode,
        nlink=entry.nlink,
        md5=entry.md5,
        sha1=entry.sha1,
    )


class BaselineEntry:
    """A path of the image's merged view and the layer that gave it.

    Its facts are made from the layer's native entry on first use: an image of
    200,000 files is merged without 200,000 Python fact objects, and a diff
    then only pays for the paths it looks at.
    """

    __slots__ = ("_facts", "_index", "_source", "layer")

    def __init__(
        self,
        layer: int,
        facts: FileFacts | None = None,
        *,
        source: Tree | None = None,
        index: int = 0,
    ) -> None:
        self.layer = layer  # index into ImageIndex.layers
        self._facts = facts
        self._source = source
        self._index = index

    @property
    def facts(self) -> FileFacts:
        if self._facts is None:
            assert self._source is not None
            self._facts = facts_from_entry(self._source[self._index])
        return self._facts

    @property
    def origin(self) -> tuple[Tree, int] | None:
        """The layer entry (tree, position) the facts come from (for a hardlink, its
        target's); None when they were given (an implicit directory's made-up ones)."""
        return None if self._source is None else (self._source, self._index)

    def __repr__(self) -> str:
        return f"BaselineEntry(layer={self.layer}, facts={self.facts!r})"


@dataclass(frozen=True)
class ImageIndex:
    """The image as it should look: all layers applied, each path traced to its layer."""

    image: ImageRef
    layers: tuple[Layer, ...]
    entries: Mapping[str, BaselineEntry]
    links: Mapping[str, frozenset[str]] = field(default_factory=dict)  # hardlink groups
    errors: tuple[ErrorRecord, ...] = ()  # entries of the layers that could not be read
    problems: tuple[str, ...] = ()  # image-level digest mismatches (manifest, config)
    #: The paths of ``entries`` the package readers read, collected from the layers when
    #: they are merged and kept with the image's index (no run lists every entry); None:
    #: found by listing ``entries`` (a baseline given as a plain mapping).
    database_paths: frozenset[str] | None = None

    @property
    def verified(self) -> bool:
        """True when every digest of the image and of each of its layers matched."""
        return all(layer.verified for layer in self.layers) and not self.problems


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """Something that could not be read, and why. Never silently dropped."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A path the diff left out on purpose, with the reason, listed in the report."""

    path: str
    reason: str
    subtree: bool = True


@dataclass(frozen=True, slots=True)
class MountPoint:
    """One mount of the container, from /proc/<pid>/mountinfo (or the engine's record)."""

    mountpoint: str  # where the container sees it
    fstype: str  # tmpfs, ext4, overlay, proc ...
    source: str  # the mount source field (device, "shm", "tmpfs" ...)
    root: str  # the path within the source filesystem that is mounted (bind mounts)
    options: str
    kind: str  # rootfs | tmpfs | volume | bind | engine | pseudo


class PostureSource(StrEnum):
    """Which record a posture was read from; it says how the capabilities are written."""

    DOCKER = "docker"  # Docker's HostConfig: changes to the engine's default capability set
    OCI_SPEC = "oci-spec"  # an OCI runtime spec (containerd, a checkpoint): the effective set


@dataclass(frozen=True, slots=True)
class Posture:
    """How exposed the host is to a container: the investigator's context.

    One shape for every runtime. What a record does not say is None: Docker's record
    lists capability changes, not the effective set, and leaves the user namespace to
    the daemon's ``userns-remap``; an OCI spec lists the effective set and its
    namespaces, but no ``--userns`` mode.
    """

    source: PostureSource
    privileged: bool
    user: str  # "uid:gid" (OCI spec) or Docker's --user, "root (image default)" when unset
    read_only_rootfs: bool
    host_pid: bool
    host_network: bool
    host_ipc: bool
    host_uts: bool
    seccomp: str  # Docker: "default", "unconfined" or a profile; OCI: "profile" | "unconfined"
    apparmor: str | None
    no_new_privileges: bool
    capabilities: tuple[str, ...] | None = None  # the effective set, sorted (OCI spec)
    cap_add: tuple[str, ...] = ()  # added to the engine's default set (Docker)
    cap_drop: tuple[str, ...] = ()  # dropped from it (Docker)
    user_namespace: bool | None = None  # in a user namespace of its own (OCI spec)
    userns_mode: str | None = None  # Docker's --userns setting ("host"), when set
    devices: tuple[str | None, ...] = ()  # host device paths handed in
    sensitive_mounts: tuple[str, ...] = ()  # mounted host paths that hand it the host
    host_paths: tuple[str, ...] = ()  # host paths bind-mounted in

    def to_dict(self) -> dict[str, Any]:
        """The report's ``target.posture``: each record's vocabulary, as report v1 writes it
        (Docker: ``cap_add``, ``cap_drop`` and ``userns`` the mode; OCI spec:
        ``capabilities`` and ``userns`` whether it has its own)."""
        if self.source is PostureSource.OCI_SPEC:
            capabilities: dict[str, Any] = {"capabilities": list(self.capabilities or ())}
            userns: Any = self.user_namespace
        else:
            capabilities = {"cap_add": list(self.cap_add), "cap_drop": list(self.cap_drop)}
            userns = self.userns_mode
        return {
            "privileged": self.privileged,
            **capabilities,
            "user": self.user,
            "read_only_rootfs": self.read_only_rootfs,
            "host_pid": self.host_pid,
            "host_network": self.host_network,
            "host_ipc": self.host_ipc,
            "host_uts": self.host_uts,
            "userns": userns,
            "seccomp": self.seccomp,
            "apparmor": self.apparmor,
            "no_new_privileges": self.no_new_privileges,
            "devices": list(self.devices),
            "sensitive_mounts": list(self.sensitive_mounts),
            "host_paths": list(self.host_paths),
        }


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: how an index or a manifest names a blob."""

    digest: str  # sha256:<hex>
    media_type: str = ""
    size: int | None = None  # bytes, when the descriptor says

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Descriptor:
        """The descriptor in OCI JSON (``digest``, ``mediaType``, ``size``)."""
        return cls(str(data.get("digest", "")), str(data.get("mediaType", "")), data.get("size"))


@dataclass(frozen=True)
class ImageManifest:
    """An image's manifest, reached from ``target`` through any index (this platform's
    entry), each document checked against the digest that named it."""

    target: Descriptor  # where the chain starts: an image record's target, an index entry
    digest: str  # the manifest's own digest
    config: Descriptor
    layers: tuple[Descriptor, ...]  # bottom first
    platform: str  # the platform chosen, e.g. linux/amd64
    problems: tuple[str, ...] = ()  # documents that did not hash to their digest


@dataclass(frozen=True, slots=True)
class LogSource:
    """One log file of a container on the host, as its runtime names it (never read here)."""

    path: str  # host path
    format: str  # json-file | local (Docker's log drivers) | cri (containerd/Kubernetes)
    aliases: tuple[str, ...] = ()  # host symlinks naming it (``/var/log/containers/...``)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A log file of the container as it was read: its digest, size and time range.

    The entries stay in the file (a bundle keeps its bytes); the report says what it is.
    """

    path: str  # host path (escaped by the path rule)
    format: str  # json-file | local | cri
    rotated: bool  # a rotated file (``.1``, ``.gz``, ``0.log.2026...``), not the current one
    compressed: bool  # gzip
    size: int  # bytes as stored
    sha256: str | None  # of the bytes as stored; None when unreadable
    entries: int | None = None  # log entries (lines) counted while read
    first_at: str | None = None  # RFC 3339 UTC of the first entry
    last_at: str | None = None  # RFC 3339 UTC of the last entry
    aliases: tuple[str, ...] = ()
    reason: str | None = None  # why it could not be read (fully)


@dataclass(frozen=True)
class ContainerInfo:
    """What a runtime knows of a container: ids, image, state, storage, posture.

    Runtime-neutral: no engine client escapes ``runtimes/``; the engine's own
    JSON is kept verbatim in ``raw`` because it is evidence (written, never read back).
    """

    runtime: str  # docker | containerd | offline (a dead host's root, a checkpoint)
    id: str
    name: str
    image_id: str  # sha256:<hex> of the image config
    image_ref: str | None
    diff_ids: tuple[str, ...]
    status: str  # running | paused | exited | created ...
    pid: int | None  # host pid of the container's init process when running
    storage_driver: str  # Docker's storage driver, containerd's snapshotter
    upper_dir: str | None  # the overlay upper dir on the host, when the driver has one
    posture: Posture
    mounts: tuple[MountPoint, ...] = ()  # from the engine's record (volumes, binds, tmpfs)
    engine: Mapping[str, Any] = field(default_factory=dict)  # versions, socket used
    raw: Mapping[str, Any] = field(default_factory=dict)
    namespace: str | None = None  # the engine's namespace (containerd); None where none
    lower_dirs: tuple[str, ...] = ()  # the snapshot's overlay lower dirs on the host, top first
    image_manifest: ImageManifest | None = None  # as the engine's content store resolves it
    labels: Mapping[str, str] = field(default_factory=dict)  # the engine's container labels
    logs: tuple[LogSource, ...] = ()  # its log files on the host (current and rotated)

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True, slots=True)
class ContainerListing:
    """One running container in a listing: a quick triage row, no hashing, no baseline."""

    id: str  # the first 12 characters
    name: str
    image: str | None
    status: str
    pid: int | None
    upper_paths: int | None  # non-directories in its overlay upper dir; None: not readable
    privileged: bool


@dataclass(frozen=True, slots=True)
class Target:
    """The container (or offline acquisition) a snapshot was taken of."""

    runtime: str  # docker | containerd | offline
    id: str
    name: str | None = None
    image: ImageRef | None = None
    pid: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FilesystemState:
    """Entries read from one filesystem of the container.

    ``view`` says how to read them: ``merged`` is the whole filesystem as the
    container sees it (absent paths are deleted); ``upper`` is an overlay upper
    directory (absent paths are unchanged, char 0/0 and ``.wh.`` names are
    deletions, opaque directories hide what is below); ``partial`` is a part of
    the merged view read for a purpose (present paths are compared, absent ones
    are not judged).
    """

    mount: str  # where it is mounted in the container, "/" for the rootfs
    view: str  # merged | upper | partial
    source: str  # where it was read from (a path, an archive) — for the record
    method: str  # how: walk | archive | export | checkpoint (content not read again)
    tree: Tree  # the entries, held compactly by the native core
    has_baseline: bool = True  # False for tmpfs, volumes and bind mounts: all is added
    top: str | None = None  # the container path of the tree's root when not the mount's
    host_root: str | None = None  # host directory the tree was walked under (content reads)
    host_subpath: str = "/"  # the tree's root inside host_root
    guard: GuardedRoot | None = None  # when host_root is /proc/<pid>/root: checked around reads

    @property
    def prefix(self) -> str:
        """The container path the tree's entries are relative to."""
        return self.top or self.mount


@dataclass(frozen=True)
class Snapshot:
    """A frozen record of a container at one moment: filesystems (and later processes)."""

    target: Target
    acquired_at: str  # RFC 3339 UTC
    filesystems: tuple[FilesystemState, ...]
    processes: tuple[ProcessRecord, ...] = ()
    sockets: tuple[SocketRecord, ...] = ()
    mounts: tuple[MountPoint, ...] = ()
    notes: tuple[str, ...] = ()  # how it was acquired: freeze, export fallback, ...
    errors: tuple[ErrorRecord, ...] = ()  # what could not be read beyond the trees' own entries
    finished_at: str | None = None
    container: ContainerInfo | None = None  # the runtime's record, raw JSON included
    root_guard: GuardedRoot | None = None  # ties /proc/<pid>/root to the container's process
    logs: tuple[LogRecord, ...] = ()  # the container's log files, read from the host


@dataclass(frozen=True, slots=True)
class OpenFile:
    """One open file descriptor of a process."""

    fd: int
    kind: str  # file | socket | pipe | memfd | anon | other
    target: str  # what /proc/<pid>/fd/<fd> points at, as the kernel writes it (escaped)


@dataclass(frozen=True, slots=True)
class SocketRecord:
    """A socket of the container's network namespace."""

    protocol: str  # tcp | tcp6 | udp | udp6 | unix
    state: str  # LISTEN, ESTABLISHED, ... (kernel names)
    local: str  # "10.0.0.2:8080", "[::]:22", or the unix path
    remote: str  # "" when not connected
    inode: int
    pids: tuple[int, ...] = ()  # host pids of the container processes holding it


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason a change or a process matters: a classifier's verdict with its evidence."""

    rule: str  # the heuristic or YARA rule that fired, e.g. "persistence.cron", "yara:miners/xmrig"
    severity: Severity
    attack: tuple[str, ...] = ()  # MITRE ATT&CK technique ids
    tags: tuple[str, ...] = ()
    detail: str = ""  # what was seen, in words


#: The kernel links a file deleted since it was opened or mapped as its path and this
#: suffix; a memfd as ``/memfd:<name> (deleted)``.
DELETED_SUFFIX = " (deleted)"
MEMFD_PREFIX = "/memfd:"


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """One process of the container, read from the host's /proc (never by exec).

    Text the process controls (``comm``, ``cmdline``, paths) is kept verbatim
    here, non-UTF-8 bytes escaped by the path rule; renderers escape it again.
    """

    pid: int  # host pid
    ns_pid: int | None  # pid inside the container's pid namespace
    ppid: int
    uid: int  # real
    euid: int
    gid: int
    egid: int
    started_at: str  # RFC 3339 UTC, from the start time in /proc/<pid>/stat
    start_ticks: int  # clock ticks after boot: with the pid, identifies the process
    comm: str
    cmdline: tuple[str, ...]
    state: str  # R, S, D, Z, T ... from /proc/<pid>/stat
    exe: str | None  # the executable's path in the container ("(deleted)" removed)
    exe_state: str  # present | deleted | memfd | unreadable
    exe_sha256: str | None  # read through /proc/<pid>/exe: works for deleted and memfd
    exe_size: int | None
    cwd: str | None
    fds: tuple[OpenFile, ...] = ()
    sockets: tuple[SocketRecord, ...] = ()
    libraries: tuple[str, ...] = ()  # files mapped executable, from /proc/<pid>/maps
    env_names: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None  # values only when asked for (they can be secrets)
    tags: tuple[str, ...] = ()  # exe-not-in-image, exe-modified, exe-deleted, memfd, ...
    errors: tuple[str, ...] = ()  # what could not be read, and why
    severity: Severity = Severity.INFO  # set by classification (docs/severity.md)
    attack: tuple[str, ...] = ()  # MITRE ATT&CK technique ids
    findings: tuple[Finding, ...] = ()  # why it has its severity
    magic: str | None = None  # libmagic's description of the executable
    content: Mapping[str, Any] = field(default_factory=dict)  # ELF facts of the executable
    yara: tuple[Mapping[str, Any], ...] = ()  # YARA matches on the executable's bytes
    exe_md5: str | None = None  # read with exe_sha256 (unless opted out)
    exe_sha1: str | None = None


@dataclass(frozen=True, slots=True)
class PackageRef:
    """One installed package, in its package manager's own terms."""

    manager: str  # dpkg | apk | rpm | python | npm
    name: str  # as the manager prints it: "jq" (the architecture is its own field)
    version: str
    architecture: str | None  # "amd64", "x86_64", "noarch"; None where there is none
    purl: str  # the package URL: "pkg:deb/debian/jq@1.6-2.1%2Bdeb12u3?arch=amd64"


class RecordCheck(StrEnum):
    """How a path's bytes compare with the record its owning package keeps of them."""

    MATCH = "match"  # the digest the package recorded (md5sums, RECORD ...); a dir it lists
    MISMATCH = "mismatch"  # the package's file, but not the bytes it installed
    CONFFILE_EDITED = "conffile-edited"  # a configuration file edited after install (allowed)
    MISSING = "missing"  # the package lists it, the container no longer has it
    DIVERTED = "diverted"  # a dpkg diversion moved the package's file away: no package's
    METADATA = "metadata"  # the manager's own record of the package (dpkg info, dist-info)
    LINK = "link"  # a symlink to a file of the package that matches (made by its scripts)
    UNCHECKED = "unchecked"  # owned, but no digest recorded or the bytes not readable


@dataclass(frozen=True, slots=True)
class Provenance:
    """Which package owns a changed path in the container and in the image, and whether
    the container's bytes are the ones that package recorded."""

    package: PackageRef | None  # the owner in the container (None: no package's)
    image_package: PackageRef | None  # the owner in the image
    record: RecordCheck | None  # the container's bytes against ``package``'s (None: no owner)
    runtime: bool = False  # ``package`` was added, upgraded or downgraded after the image
    listed_as: str | None = None  # the path as the record lists it, when not the same
    #: (merged /usr: "/bin/cat" for /usr/bin/cat; a diversion: the original path)

    @property
    def runtime_drift(self) -> bool:
        """A file a package added at runtime put there, with the bytes it recorded."""
        vouched = (RecordCheck.MATCH, RecordCheck.METADATA, RecordCheck.LINK)
        return self.runtime and self.record in vouched


@dataclass(frozen=True, slots=True)
class PackageRecord:
    """One package that changed between the image and the container (``packages[]``)."""

    manager: str  # dpkg | apk | rpm | python | npm
    name: str  # as the manager prints it
    change: str  # added | removed | upgraded | downgraded | modified (files no longer match)
    before: str | None  # the version in the image
    after: str | None  # the version in the container
    architecture: str | None
    purl: str  # of the container's version (of the image's when removed)
    severity: Severity = Severity.MEDIUM
    files: tuple[str, ...] = ()  # the drifted paths it owns, sorted
    mismatched: tuple[str, ...] = ()  # those whose bytes are not the ones it recorded
    location: str | None = None  # Python: its site directory; npm: its node_modules


@dataclass(frozen=True, slots=True)
class ContentDiff:
    """What changed inside a modified regular file, against the image's version of it.

    ``text``: both sides are UTF-8 text without NUL bytes, and ``unified`` is a bounded
    unified diff (image ``a/``, container ``b/``) whose every line has its control and
    bidi characters escaped (:func:`drifttools.text.printable`). ``binary``: a byte-level
    summary instead. ``unavailable``: a side could not be read, or is over the size cap;
    ``reason`` says which.
    """

    kind: str  # text | binary | unavailable
    size_before: int
    size_after: int
    unified: str | None = None  # text: the diff, at most the line and byte caps
    truncated: bool = False  # text: the diff was cut at a cap
    lines_added: int | None = None  # text: of the whole diff, also when truncated
    lines_removed: int | None = None
    common_prefix: int | None = None  # binary: bytes equal from the start
    common_suffix: int | None = None  # binary: bytes equal at the end (not overlapping)
    bytes_differing: int | None = None  # binary: positions below both sizes that differ
    reason: str | None = None  # unavailable: why


@dataclass(frozen=True, slots=True)
class Change:
    """One drifted path, with the facts before (image) and after (container)."""

    path: str
    change: ChangeKind
    before: FileFacts | None
    after: FileFacts | None
    layer: int | None = None  # index into the baseline layers of ``before``
    mount: str = "/"
    tags: tuple[str, ...] = ()
    severity: Severity = Severity.INFO
    attack: tuple[str, ...] = ()
    magic: str | None = None
    yara: tuple[Mapping[str, Any], ...] = ()
    findings: tuple[Finding, ...] = ()  # why it has its severity (classification)
    content: Mapping[str, Any] = field(default_factory=dict)  # ELF/script facts, errors
    provenance: Provenance | None = None  # the package that owns the path (classification)
    diff: ContentDiff | None = None  # modified regular files: against the image's bytes

    @property
    def facts(self) -> FileFacts:
        """The facts that describe the path now (or last, for a deletion)."""
        facts = self.after or self.before
        assert facts is not None
        return facts


@dataclass(frozen=True)
class DriftReport:
    """The result of a drift diff: the public contract (report v1)."""

    target: Target
    acquired_at: str
    baseline: tuple[Layer, ...]
    changes: tuple[Change, ...]
    baseline_problems: tuple[str, ...] = ()  # image-level digest mismatches
    errors: tuple[ErrorRecord, ...] = ()
    exclusions: tuple[Exclusion, ...] = ()
    processes: tuple[ProcessRecord, ...] = ()
    sockets: tuple[SocketRecord, ...] = ()
    mounts: tuple[MountPoint, ...] = ()
    packages: tuple[PackageRecord, ...] = ()
    notes: tuple[str, ...] = ()
    classification: Mapping[str, Any] | None = None  # engine, rule set, rule problems
    logs: tuple[LogRecord, ...] = ()  # the container's log files, summarized

    @property
    def has_drift(self) -> bool:
        return bool(self.changes)

    @property
    def verified(self) -> bool:
        """True when the baseline's every digest matched."""
        return all(layer.verified for layer in self.baseline) and not self.baseline_problems

    def summary(self) -> dict[str, Any]:
        """Counts by change kind and by severity, as the report's ``summary``."""
        counts = {kind.value: 0 for kind in ChangeKind}
        by_severity = {level.value: 0 for level in Severity}
        for change in self.changes:
            counts[change.change.value] += 1
            by_severity[change.severity.value] += 1
        return {**counts, "unreadable": len(self.errors), "by_severity": by_severity}

    @property
    def highest_severity(self) -> Severity:
        """The highest severity of any change, process or package entry (INFO when none)."""
        levels = [c.severity for c in self.changes] + [p.severity for p in self.processes]
        levels += [p.severity for p in self.packages]
        return max(levels, key=lambda level: level.rank, default=Severity.INFO)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (schema ``drifttools.report/v1``)."""
        return report_to_dict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text (schema ``drifttools.report/v1``)."""
        return report_to_json(self, indent=indent)

    def to_pandas(self) -> Any:
        """The changes as a pandas DataFrame, one row per change (needs ``drifttools[pandas]``)."""
        from drifttools.evidence.notebook import changes_frame  # notebooks only

        return changes_frame(self)

    def _repr_html_(self) -> str:
        from drifttools.evidence.notebook import report_html

        return report_html(self)
