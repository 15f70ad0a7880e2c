"""What changed inside a modified file: a bounded unified diff for text, a byte summary
for anything else (dissect's ``target-diff --deep`` prints the former).

Only regular files the diff calls ``modified`` (same path, other bytes), both sides below
a size cap. The image's version is read from the unpacked layer that gave the path, inside
the layer directory and checked against the baseline's SHA-256
(:func:`drifttools.analysis.classify.image_files_from_layers`); the container's are the bytes
classification read once through the snapshot's confined readers (:func:`file_diff` is
handed them). Both sides are container- or image-controlled text: every line
of a diff has its control and bidi characters escaped (``\\x1b``), and a diff stops at a line
and a byte cap, saying so. :func:`content_diff` itself is pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from drifttools.acquisition.content import Content, ContentUnavailable
from drifttools.models import Change, ChangeKind, ContentDiff
from drifttools.text import printable

#: Files larger than this (either side) get no diff, only the reason.
DEFAULT_DIFF_MAX_SIZE = 1 << 20
#: A diff shows at most this many lines ...
DEFAULT_DIFF_MAX_LINES = 400
#: ... and this many bytes of escaped text.
DEFAULT_DIFF_MAX_BYTES = 64 << 10

if TYPE_CHECKING:
    from drifttools.analysis.classify import ImageFiles
    from drifttools.options import ClassifyOptions


def content_diff(
    path: str, before: bytes, after: bytes, *, max_lines: int, max_bytes: int
) -> ContentDiff:
    """The diff of ``path`` from the image's bytes ``before`` to the container's ``after``."""
    old, new = _text(before), _text(after)
    if old is None or new is None:
        return _binary(before, after)
    added = removed = 0
    shown: list[str] = []
    used = 0
    truncated = False
    for line in _unified(path, old, new):
        if line.startswith("+") and not line.startswith("+++ "):
            added += 1
        elif line.startswith("-") and not line.startswith("--- "):
            removed += 1
        if truncated:
            continue
        escaped = printable(line)
        if len(shown) >= max_lines or used + len(escaped) + 1 > max_bytes:
            truncated = True
            continue
        shown.append(escaped)
        used += len(escaped) + 1
    return ContentDiff(
        "text",
        len(before),
        len(after),
        unified="\n".join(shown) + "\n" if shown else "",
        truncated=truncated,
        lines_added=added,
        lines_removed=removed,
    )


def needs_diff(change: Change, options: ClassifyOptions) -> bool:
    """Whether ``change`` gets a diff: a modified regular file, when diffs are asked for."""
    before, after = change.before, change.after
    return (
        options.diffs
        and change.change is ChangeKind.MODIFIED
        and before is not None
        and after is not None
        and before.kind == after.kind == "file"
    )


def diff_bytes(options: ClassifyOptions) -> int:
    """Bytes of the container's file a diff needs read (one more than the cap: to tell a
    file that grew over it)."""
    return options.diff_max_size + 1


def file_diff(
    change: Change,
    after: Content | ContentUnavailable,
    image_files: ImageFiles | None,
    options: ClassifyOptions,
) -> ContentDiff:
    """The :class:`ContentDiff` of the modified file ``change`` (:func:`needs_diff`), from the
    container's bytes ``after`` (read once, shared with classification: at least
    :func:`diff_bytes` of them) and the image's, read through ``image_files``."""
    assert change.before is not None and change.after is not None
    cap = options.diff_max_size
    sizes = (change.before.size, change.after.size)
    if max(sizes) > cap:
        return _unavailable(sizes, f"over the {cap} byte diff cap")
    if isinstance(after, ContentUnavailable):
        return _unavailable(sizes, f"the container's bytes: {after}")
    before = image_files(change.path, cap + 1) if image_files is not None else None
    if before is None:
        why = "not readable from the image's layers here" if image_files else "no layer dir"
        return _unavailable(sizes, f"the image's bytes: {why}")
    data = after.data[: cap + 1]
    if len(data) > cap or len(before) > cap:
        return _unavailable(sizes, f"grew over the {cap} byte diff cap")
    return content_diff(
        change.path,
        before,
        data,
        max_lines=options.diff_max_lines,
        max_bytes=options.diff_max_bytes,
    )


def _unavailable(sizes: tuple[int, int], reason: str) -> ContentDiff:
    return ContentDiff("unavailable", sizes[0], sizes[1], reason=reason)


def _text(data: bytes) -> str | None:
    """``data`` as text when it is UTF-8 without NUL bytes (what a unified diff can show)."""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _unified(path: str, old: str, new: str) -> Iterator[str]:
    return difflib.unified_diff(
        old.splitlines(), new.splitlines(), f"a{path}", f"b{path}", lineterm=""
    )


def _binary(before: bytes, after: bytes) -> ContentDiff:
    """Sizes, the equal bytes at both ends, and how many positions differ."""
    common = min(len(before), len(after))
    prefix = _equal_run(before, after, common, at_end=False)
    suffix = _equal_run(before, after, common - prefix, at_end=True)
    xor = int.from_bytes(before[:common]) ^ int.from_bytes(after[:common])
    differing = common - xor.to_bytes(common).count(0) if common else 0
    return ContentDiff(
        "binary",
        len(before),
        len(after),
        common_prefix=prefix,
        common_suffix=suffix,
        bytes_differing=differing,
    )


def _equal_run(a: bytes, b: bytes, limit: int, *, at_end: bool) -> int:
    """How many bytes ``a`` and ``b`` share at their start (or end), at most ``limit``:
    a binary search over slice comparisons (memcmp), not a Python loop over bytes."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        same = a[len(a) - middle :] == b[len(b) - middle :] if at_end else a[:middle] == b[:middle]
        if same:
            low = middle
        else:
            high = middle - 1
    return low
