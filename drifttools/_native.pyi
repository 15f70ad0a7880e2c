"""Native core of drifttools (Rust, via PyO3).

Path text rule
--------------
Paths, link targets and xattr names are bytes on Linux. Their text form, used
everywhere in this module, is: valid UTF-8 is kept as is, except that a
backslash becomes ``\\\\``; every byte that is not part of valid UTF-8 becomes
``\\xNN`` (lowercase hex). :func:`unescape_path` reverses it exactly (any bytes
round-trip). Control characters are kept as they are; renderers escape them.

Errors
------
Failures raise the library's own classes from :mod:`drifttools.errors`, mapped
once in the native glue; each also derives from the builtin that means the same
(``except ValueError`` / ``except OSError`` keep working):

- :class:`~drifttools.errors.LayerCorrupt` (a ``ValueError``): a layer stream is
  not a readable tar or tar-split record (message ``"corrupt layer: ..."``) or a
  cap was exceeded (``"layer exceeds cap: ..."``).
- :class:`~drifttools.errors.IndexCorrupt` (a ``ValueError``): bytes given to
  :meth:`Tree.from_bytes` / :meth:`LayerIndex.from_bytes` are damaged
  (``"corrupt tree: ..."``, ``"corrupt layer index: ..."``).
- :class:`~drifttools.errors.MalformedPath` (a ``ValueError``): path text with a
  malformed escape.
- :class:`~drifttools.errors.NotRegularFile` (an ``OSError`` and a ``ValueError``):
  :func:`read_file` was pointed at something other than a regular file.

Operating-system failures raise the builtin :class:`OSError` subclasses
(``FileNotFoundError``, ``PermissionError``, ...; ``errno`` and ``filename`` set
where a path is known). Ctrl-C during :func:`walk`, :func:`read_layer` or
:func:`read_tar_split` raises :class:`KeyboardInterrupt` after the worker
threads have stopped. A ``source.read`` that breaks its contract raises
``TypeError`` (returned ``None``) or a builtin ``ValueError`` (more than asked).
"""

from collections.abc import Callable, Iterator, Sequence
from os import PathLike
from typing import Literal, Protocol, final

class _Readable(Protocol):
    """What a byte source needs: ``read(size)`` returning at most ``size`` bytes."""

    def read(self, size: int = ..., /) -> bytes: ...

_EntryKind = Literal[
    "file", "dir", "symlink", "hardlink", "char", "block", "fifo", "socket", "unknown"
]

@final
class Entry:
    """One file-system or archive entry. Immutable; made on access from a :class:`Tree`."""

    @property
    def path(self) -> str:
        """Absolute path inside the tree or archive, e.g. ``"/etc/passwd"`` (escaped text form).
        The root itself never appears as an entry."""
    @property
    def kind(self) -> _EntryKind:
        """``"hardlink"`` only occurs in archives; ``"unknown"`` for vanished entries and
        unsupported archive member types."""
    @property
    def mode(self) -> int:
        """Permission bits including setuid/setgid/sticky (``st_mode & 0o7777``)."""
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...
    @property
    def size(self) -> int:
        """Size in bytes (as stat / the tar header says; 0 for archive hardlinks)."""
    @property
    def mtime_ns(self) -> int: ...
    @property
    def atime_ns(self) -> int | None:
        """Walk only (``None`` for archive entries)."""
    @property
    def ctime_ns(self) -> int | None:
        """Walk only."""
    @property
    def btime_ns(self) -> int | None:
        """Birth time, when the filesystem reports it (walk only)."""
    @property
    def inode(self) -> int | None:
        """Walk only."""
    @property
    def nlink(self) -> int | None:
        """Walk only."""
    @property
    def dev(self) -> int | None:
        """``st_dev`` as a ``makedev(major, minor)`` integer (walk only)."""
    @property
    def blocks(self) -> int | None:
        """Number of 512-byte blocks (walk only)."""
    @property
    def rdev_major(self) -> int:
        """Device major number for ``"char"`` / ``"block"`` entries, else 0."""
    @property
    def rdev_minor(self) -> int:
        """Device minor number for ``"char"`` / ``"block"`` entries, else 0."""
    @property
    def target(self) -> str | None:
        """Symlink target exactly as stored (read, never followed), or for an archive
        hardlink the normalised absolute path of the link target (``"/bin/busybox"``).
        Escaped text form."""
    @property
    def xattrs(self) -> dict[str, bytes]:
        """Extended attributes (a new dict on each access). From a walk only the forensic
        ones: ``security.capability``, ``security.selinux`` and names starting with
        ``trusted.overlay.``, ``user.overlay.`` or ``user.fuseoverlayfs.``. From an
        archive all PAX ``SCHILY.xattr.*`` records."""
    @property
    def sha256(self) -> str | None:
        """Lowercase hex SHA-256 of the full content of a regular file; ``None`` for
        other kinds or when the content was not hashed (see :attr:`error`)."""
    @property
    def md5(self) -> str | None:
        """Lowercase hex MD5 of the same bytes as :attr:`sha256`, read in the same pass, when
        the walk was asked for it (``legacy_hashes=True``); ``None`` otherwise."""
    @property
    def sha1(self) -> str | None:
        """Lowercase hex SHA-1, like :attr:`md5`."""
    @property
    def error(self) -> str | None:
        """Why something could not be read, or ``None`` when all is well. Walk:
        ``"vanished"``, ``"permission denied"``, ``"over hash size cap (N bytes)"``
        (N is the cap), ``"changed during walk"``, ``"cannot list directory: <reason>"``,
        ``"other filesystem, not descended"``, ``"cannot read link: <reason>"``,
        ``"read failed: <reason>"``. Archive: ``"unsafe path in archive: <path>"``,
        ``"unsafe hardlink target in archive: <path>"``, ``"unsupported: GNU sparse"``,
        ``"unsupported tar entry type X"``; from :func:`read_tar_split` also
        ``"stored layer: ..."`` (see there). Several are joined with ``"; "``."""
    def __repr__(self) -> str: ...

@final
class Tree:
    """Entries held natively in compact form; :class:`Entry` objects are created lazily.

    Entries from :func:`walk` are sorted by path bytes. Entries from
    :func:`read_layer` keep archive order (a path may occur more than once;
    the later member wins on extraction).
    """

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Entry]: ...
    def __getitem__(self, index: int, /) -> Entry:
        """Negative indexes count from the end; ``IndexError`` beyond the ends."""
    @property
    def error_count(self) -> int:
        """Number of entries whose :attr:`Entry.error` is not ``None``."""
    @property
    def atime_exception(self) -> str | None:
        """For a :func:`walk` that could not read through its private read-only
        ``noatime`` view (no ``CAP_SYS_ADMIN``, a kernel before 5.12): the sentence
        saying symlink atimes may have changed, for the report's notes. ``None``
        otherwise (and for trees not from a walk)."""
    def paths(self) -> list[str]:
        """Every entry's path, in order, in one call (no Entry objects made)."""
    def kinds(self) -> list[str]:
        """Every entry's kind, in order, in one call."""
    def drift_keys(self) -> list[bytes | None]:
        """Every entry's drift key, in order, in one call: equal keys mean equal kind,
        mode, owner, content (SHA-256, else size), link target, device numbers and
        ``security.capability``. ``None`` for a hardlink or an entry with an error,
        which must be compared in full."""
    def to_bytes(self) -> bytes:
        """Versioned binary form: magic ``b"DTTREE\\r\\n"``, format version, payload and a
        trailing SHA-256 of everything before it."""
    @staticmethod
    def from_bytes(data: bytes | bytearray) -> Tree:
        """Inverse of :meth:`to_bytes`. ``IndexCorrupt("corrupt tree: ...")`` on bad magic,
        unsupported version, checksum mismatch or truncation."""

@final
class LayerIndex:
    """Index of one image layer (or ``docker export`` tar)."""

    @property
    def entries(self) -> Tree: ...
    @property
    def compression(self) -> Literal["none", "gzip", "zstd"]:
        """Detected from magic bytes, never from a name."""
    @property
    def compressed_sha256(self) -> str:
        """SHA-256 (hex) of all bytes read from the source; equals
        :attr:`uncompressed_sha256` when the compression is ``"none"``."""
    @property
    def compressed_size(self) -> int: ...
    @property
    def uncompressed_sha256(self) -> str:
        """SHA-256 (hex) of the whole decompressed stream including end-of-archive
        blocks and trailing padding: the OCI ``diff_id``."""
    @property
    def uncompressed_size(self) -> int: ...
    def to_bytes(self) -> bytes:
        """Versioned binary form (magic ``b"DTLAYR\\r\\n"``), same integrity rules as
        :meth:`Tree.to_bytes`."""
    def write_to(self, fd: int) -> None:
        """Write :meth:`to_bytes`'s bytes to the open file ``fd`` (left open), streamed: no
        copy of the whole in memory. ``OSError``."""
    @staticmethod
    def from_bytes(data: bytes | bytearray) -> LayerIndex:
        """``IndexCorrupt("corrupt layer index: ...")`` on bad data."""

@final
class BaselineIndex:
    """The merged baseline of an image on disk, looked up in place (memory-mapped).

    Records sorted by path bytes, a string area and the caller's metadata. Opening checks
    the layout against the file size and a SHA-256 over the header and the table of block
    digests; each 64 KiB data block is checked against its SHA-256 the first time any of
    its bytes is read. A failed check raises ``IndexCorrupt`` (the block stays bad).
    Positions are indexes into the sorted records.
    """

    @staticmethod
    def open(path: str | PathLike[str]) -> BaselineIndex:
        """``IndexCorrupt`` for a truncated, altered or other-version file; ``OSError``."""
    def __len__(self) -> int: ...
    def meta(self) -> bytes:
        """The metadata given to :meth:`write`."""
    @property
    def blocks_checked(self) -> tuple[int, int]:
        """(data blocks checked so far, data blocks in the file)."""
    def find(self, path: str) -> int | None:
        """The position of ``path``, or None."""
    def prefix_range(self, prefix: str) -> tuple[int, int]:
        """Positions ``start, stop`` of every path that starts with ``prefix`` (bytes)."""
    def paths(self, start: int, stop: int) -> list[str]:
        """The paths at positions ``start`` to ``stop`` (escaped text)."""
    def entries(self, positions: Sequence[int]) -> tuple[Tree, list[tuple[int, int]]]:
        """The entries at ``positions``: a tree of those a layer named, and for each position
        (its layer, its index in that tree or -1 for a directory no layer named)."""
    def drift_join(self, tree: Tree, mount: str) -> tuple[list[int], list[int]]:
        """Merge-join of ``tree`` (its paths under ``mount``) with the index: the indexes
        of ``tree`` whose drift key (:meth:`Tree.drift_keys`) differs from the image's or
        that the image lacks, and the positions no path of ``tree`` has."""

@final
class MergedLayers:
    """An image's layers applied bottom first into one merged view, held natively.

    Layer tars (the default): ``.wh..wh..opq`` hides what lower layers put in its directory
    (applied first), ``.wh.<name>`` deletes ``<name>`` and all below it; an entry replaces
    what lower layers had at its path (a directory over a directory keeps the children);
    parents no layer named become implicit directories; a hardlink takes its target's facts
    and inode. A member named (or linking) outside the layer's root is kept out and listed in
    :meth:`errors`, as are a missing hardlink target and every member's own error. With
    ``overlay``, unpacked overlay lower dirs (walked): a char device 0/0 deletes its path, a
    directory with an opaque xattr ``y`` hides what is below it. The entries are reached by
    writing the index (:meth:`write`, then :meth:`BaselineIndex.open`).
    """

    def __new__(cls, layers: Sequence[Tree], *, overlay: bool = False) -> MergedLayers: ...
    def __len__(self) -> int: ...
    def links(self) -> list[list[str]]:
        """The paths of each inode more than one path of the view shares (sorted)."""
    def errors(self) -> list[tuple[str, str]]:
        """(path, reason) of each entry kept out or not readable, in the order met."""
    def write(self, path: str | PathLike[str], meta: bytes) -> None:
        """Write the view as a :class:`BaselineIndex` file with ``meta``; ``OSError``."""

#: The extended attribute that :meth:`Tree.drift_keys` (and the diff) compare.
DRIFT_XATTR: str
#: The extended attributes that mark an overlay directory opaque (kernel overlayfs, its user
#: namespace form, fuse-overlayfs) when their value is ``y``.
OPAQUE_XATTRS: tuple[str, ...]

def walk(
    root: str | PathLike[str],
    *,
    subpath: str | None = None,
    exclude: Sequence[str] = (),
    one_filesystem: bool = False,
    hash_max_size: int | None = None,
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
    legacy_hashes: bool = False,
) -> Tree:
    """Snapshot the tree under ``root`` (a mounted rootfs, an overlay upper dir,
    ``/proc/<pid>/root``). Entry paths are relative to ``root``, written ``"/a/b"``.

    Safety: never leaves ``root`` (every open is confined with
    ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)`` or a
    single ``O_NOFOLLOW`` component relative to a confined directory fd; a
    directory more than 1 KiB of path below its base fd becomes the base of its
    descendants, so depth is unlimited); symlinks are recorded with their target
    and never followed; FIFOs, sockets and devices are never opened: every entry
    is first taken as an ``O_PATH | O_NOFOLLOW`` handle, checked on that fd, and
    only a regular file is reopened for reading, through ``/proc/self/fd``
    (``O_NONBLOCK``); nothing is written. Atimes: the walk reads through a
    private detached clone of ``root``'s mount tree made read-only, ``noatime``
    and ``nodev`` (for ``/proc/<pid>/root``, cloned inside that pid's mount
    namespace), so no atime changes, symlinks' included. Without it
    (:attr:`Tree.atime_exception` says why) files and directories are opened
    with ``O_NOATIME``, a refused ``O_NOATIME`` (not our file) is an error, never
    retried without it, and reading a symlink may update the link's own atime.
    A bad entry never stops the walk: it is recorded with :attr:`Entry.error`.

    ``subpath``: a directory inside ``root`` to walk instead of ``root`` itself
    (``"/dev/shm"``, escaped text form; ``".."`` is clamped at ``root``).
    ``root`` is opened as given (it may be the ``/proc/<pid>/root`` magic
    link, followed on purpose); ``subpath`` is then resolved *inside* it with
    ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)``
    (or the ``O_PATH | O_NOFOLLOW`` component walk), so a symlink anywhere in
    it is never followed. Entry paths, ``exclude`` and ``one_filesystem`` are
    then relative to that directory (``"/file"`` for ``<subpath>/file``).
    A subpath that is or goes through a symlink raises ``OSError`` with
    ``errno.ELOOP``; one that is not a directory ``NotADirectoryError``; a
    missing one ``FileNotFoundError`` (``filename`` is ``root`` joined with
    ``subpath``).
    ``exclude``: paths relative to ``root`` (``"/proc"``, escaped text form)
    whose directory entry is recorded but not descended into.
    ``one_filesystem``: do not descend into directories on another device than
    ``root`` (their entry gets ``error="other filesystem, not descended"``).
    ``hash_max_size``: regular files larger than this are not hashed.
    ``threads``: worker threads, 0 = number of cores.
    ``legacy_hashes``: also the MD5 and SHA-1 of every hashed file, in the same read
    (:attr:`Entry.md5`, :attr:`Entry.sha1`).
    ``progress``: called about every 100 ms and once at the end with
    ``(entries_so_far, bytes_hashed_so_far)`` on the calling thread; an
    exception it raises cancels the walk and is re-raised.

    Raises ``OSError`` (e.g. ``FileNotFoundError``, ``NotADirectoryError``) when
    ``root`` itself cannot be opened or listed; ``MalformedPath("bad exclude path
    ...")`` / ``MalformedPath("bad subpath ...")`` for a malformed escape in
    ``exclude`` / ``subpath``; whatever ``progress`` raises.
    """

def read_layer(
    source: str | PathLike[str] | _Readable,
    *,
    offset: int = 0,
    length: int | None = None,
    max_entries: int = 10_000_000,
    max_path_len: int = 4096,
    max_bytes: int = 1 << 40,
) -> LayerIndex:
    """Stream-index an image layer or ``docker export`` tar: plain tar, gzip (multi-member)
    or zstd (multi-frame), detected by magic bytes. Nothing is extracted.

    ``source`` is a file path (then ``offset`` / ``length`` select a byte range of
    the file, e.g. a blob inside a ``docker save`` tar; the GIL is released
    for the whole read) or a binary file-like object with ``.read(n)`` (read
    from its current position in chunks of at most 1 MiB, taking the GIL per
    chunk; ``offset`` bytes are skipped by reading them (not hashed) and at most
    ``length`` bytes are read).

    Entry paths are normalised to ``"/a/b"`` (leading ``"./"`` and ``"/"`` stripped,
    ``"//"`` and ``"."`` collapsed); ``".."`` components are clamped at the root and
    the entry gets ``error="unsafe path in archive: <original>"``, as does an absolute
    name (``"/etc/x"``): the merge keeps such entries out of the baseline. The root
    (``"./"``) is not returned. Hardlinks are ``kind="hardlink"``, ``size=0``,
    ``target`` = normalised link path, ``sha256=None``.

    Raises ``LayerCorrupt("corrupt layer: <what> at offset N")`` (N is an offset in
    the uncompressed stream) for bad checksums, bad numeric fields, truncation
    or corrupt compressed data; ``LayerCorrupt("layer exceeds cap: ...")`` when
    ``max_entries``, ``max_path_len`` (checked before a long name is read) or
    ``max_bytes`` (decompressed bytes) is exceeded; ``OSError`` when the file
    cannot be opened or read; whatever ``source.read`` raises; ``TypeError`` for
    a ``source`` that is neither a path nor readable.
    """

def read_tar_split(
    tar_split: str | PathLike[str],
    layer_dir: str | PathLike[str],
    *,
    max_entries: int = 10_000_000,
    max_path_len: int = 4096,
    max_bytes: int = 1 << 40,
) -> LayerIndex:
    """Reassemble an image layer from the engine's own store and index it like
    :func:`read_layer` (the GIL is released for the whole read).

    ``tar_split`` is the layer's ``tar-split.json.gz`` (gzip'd or plain JSON
    lines of the vbatts/tar-split format: type 2 entries are raw tar bytes,
    type 1 entries name a file of ``layer_dir`` with its size and CRC-64);
    ``layer_dir`` the layer's unpacked directory (e.g. an overlay ``diff``
    dir). Emitting the raw bytes and the named files' contents reproduces the
    original layer tar exactly: when nothing was changed,
    :attr:`LayerIndex.uncompressed_sha256` is the layer's ``diff_id`` and the
    entries equal those :func:`read_layer` gives for the same layer tar.
    :attr:`LayerIndex.compression` is ``"none"``.

    Files are resolved inside ``layer_dir`` with ``openat2(RESOLVE_IN_ROOT |
    RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` (``".."`` clamped, no
    symlink followed in any component), opened ``O_PATH`` first and only read
    once checked to be a regular file (no FIFO or device is ever opened),
    with ``O_NOATIME``. A file that does not match never stops the read: the
    bytes that cannot be read are zero-filled so the archive stays parseable,
    the stream digest then differs from the ``diff_id``, and that entry gets
    an :attr:`Entry.error` starting ``"stored layer: "``: ``"file missing"``,
    ``"symlink in place of the file or a parent directory (not followed)"``,
    ``"a parent of the file is not a directory"``, ``"not a regular file
    (<kind>)"``, ``"size N bytes, expected M"``, ``"changed while read"``,
    ``"read failed: <reason>"``, ``"cannot open: <reason>"`` (these drop its
    :attr:`Entry.sha256`), or ``"content differs from the checksum recorded
    in tar-split (crc64)"`` (same size, other content: :attr:`Entry.sha256`
    is the digest of the content found). Files of size 0 are not opened (as
    tar-split itself does).

    Raises ``OSError`` when ``tar_split`` (a symlink: ``ELOOP``; not a
    regular file: ``EINVAL``) or ``layer_dir`` cannot be opened, or
    ``tar_split`` cannot be read (``filename`` is ``tar_split``);
    ``LayerCorrupt("corrupt layer: tar-split: ...")`` for malformed JSON,
    base64, entry types or positions, ``LayerCorrupt("corrupt layer: ...")``
    when the reassembled stream is not a valid tar, and
    ``LayerCorrupt("layer exceeds cap: ...")`` as :func:`read_layer` does
    (``max_bytes`` counts reassembled bytes).
    """

def hash_fd(fd: int, *, legacy_hashes: bool = False) -> tuple[str, str | None, str | None, int]:
    """``(sha256, md5, sha1, bytes read)`` of the rest of the open file ``fd``, in one read
    with the GIL released; MD5 and SHA-1 (lowercase hex) are ``None`` unless
    ``legacy_hashes``. Raises ``OSError`` when it cannot be read."""

def read_file(
    root: str, path: str, *, limit: int | None = None, digest: bool = False
) -> tuple[bytes, int, str | None]:
    """Read one regular file inside ``root`` without ever leaving it.

    ``path`` (escaped text, as entries give it) is opened ``O_PATH`` confined to
    ``root`` (no symlink followed in any component), checked to be a regular
    file, and only then reopened for reading (``O_NOATIME|O_NONBLOCK``): FIFOs
    and devices are never opened. Returns at most ``limit`` bytes, the file's
    size and, with ``digest``, the SHA-256 (lowercase hex) of every byte this
    read saw to the end of the file (past ``limit`` hashed, not kept), else
    ``None``: the bytes returned are the file whose digest that is, whatever the
    file held before or after. The GIL is released.

    Raises ``OSError`` when it cannot be opened or read (``ELOOP`` for a
    symlink; ``filename`` is ``root`` joined with ``path``);
    ``NotRegularFile("not a regular file (never opened for reading): <root/path>")``
    when it is not a regular file; ``MalformedPath`` for a malformed escape in
    ``path``.
    """

def entropy(data: bytes) -> float:
    """Shannon entropy of ``data`` in bits per byte (0 to 8; 0 for no bytes), the GIL
    released."""

def stat_fingerprint(root: str | PathLike[str]) -> str:
    """SHA-256 (hex) of the stat facts of every entry under ``root``, streamed (no
    :class:`Tree` built): each directory is opened as :func:`walk` opens directories
    (confined, never through a symlink, ``O_NOATIME``, depth unlimited) and listed, and
    each entry is ``statx``-ed by name without following it; no other entry is opened
    and no xattr read. Per entry: name, mode, inode, size, owner, link count, device
    numbers, mtime and ctime (a write, chmod, chown, xattr change or rename changes the
    ctime). Deterministic (names sorted per directory, directories combined in path
    order); atimes are not part of it and are not changed. ``OSError`` naming the entry
    when anything below ``root``, or ``root`` itself, cannot be opened, listed or
    stat-ed (an error text in the digest would hide later changes below it)."""

def escape_path(raw: bytes) -> str:
    """Text form of raw path bytes (see the module docstring)."""

def unescape_path(text: str) -> bytes:
    """Exact inverse of :func:`escape_path`; ``MalformedPath`` on a malformed escape
    (a backslash not followed by ``\\\\`` or ``xNN``)."""

__all__ = [
    "DRIFT_XATTR",
    "OPAQUE_XATTRS",
    "BaselineIndex",
    "Entry",
    "LayerIndex",
    "MergedLayers",
    "Tree",
    "entropy",
    "escape_path",
    "hash_fd",
    "read_file",
    "read_layer",
    "read_tar_split",
    "stat_fingerprint",
    "unescape_path",
    "walk",
]
