"""Make container-controlled text safe to show: names and paths are attacker input."""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, and the Unicode bidirectional overrides that can
# reorder what a terminal or a browser shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control and bidi characters written as ``\\xNN`` / ``\\uNNNN``."""
    return _UNSAFE.sub(_escape, text)
