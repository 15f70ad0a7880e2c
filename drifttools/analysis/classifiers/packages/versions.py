"""Ordering versions, to tell an upgrade from a downgrade.

Debian's algorithm (dpkg's ``verrevcmp``, deb-version(7)): an optional numeric epoch
before ``:``, the upstream version, and a revision after the last ``-``; in each part,
runs of non-digits compare by character with ``~`` before everything (even the end) and
letters before other characters, runs of digits compare as numbers. rpm's ``rpmvercmp``
and the apk, PyPI and npm orders agree with it on the versions those ecosystems publish
(``1.10 > 1.9``, ``1.0~rc1 < 1.0``), so it is used for all of them.
"""

from __future__ import annotations


def _order(text: str, index: int) -> int:
    if index >= len(text) or text[index].isdigit():
        return 0
    char = text[index]
    if char == "~":
        return -1
    return ord(char) if char.isalpha() else ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            difference = _order(a, i) - _order(b, j)
            if difference:
                return difference
            i, j = i + 1, j + 1
        start_i, start_j = i, j
        while i < len(a) and a[i].isdigit():
            i += 1
        while j < len(b) and b[j].isdigit():
            j += 1
        left, right = int(a[start_i:i] or 0), int(b[start_j:j] or 0)
        if left != right:
            return -1 if left < right else 1
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon or not epoch.isdigit():
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return int(epoch), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """Negative, zero or positive as version ``a`` is older than, equal to or newer than ``b``."""
    (epoch_a, upstream_a, revision_a), (epoch_b, upstream_b, revision_b) = _split(a), _split(b)
    if epoch_a != epoch_b:
        return -1 if epoch_a < epoch_b else 1
    return _compare_part(upstream_a, upstream_b) or _compare_part(revision_a, revision_b)
