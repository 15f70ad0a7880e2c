"""Defense evasion and privilege traces in metadata: timestomping, set-id bits,
capabilities, and image executables that were deleted."""

from __future__ import annotations

from drifttools.analysis.classifiers.context import ChangeContext
from drifttools.models import Change, ChangeKind, Finding, Severity

_SETID = 0o6000


def tampering_findings(change: Change, context: ChangeContext) -> list[Finding]:
    before, after = change.before, change.after
    found = []
    if (
        change.change is ChangeKind.MODIFIED
        and before is not None
        and after is not None
        and after.kind == "file"
        and before.mtime_ns == after.mtime_ns
    ):
        found.append(
            Finding(
                "tampering.timestomp",
                Severity.HIGH,
                ("T1070.006",),
                ("timestomp",),
                "content changed but the mtime is the image's",
            )
        )
    if after is not None and after.kind == "file":
        added_bits = after.mode & _SETID & ~(before.mode if before else 0)
        if added_bits:
            which = "/".join(
                name for bit, name in ((0o4000, "setuid"), (0o2000, "setgid")) if added_bits & bit
            )
            found.append(
                Finding(
                    "tampering.setid",
                    Severity.HIGH,
                    ("T1548.001",),
                    ("setuid",),
                    f"{which} bit added (mode {after.mode:04o})",
                )
            )
        caps = after.capabilities
        if caps and caps != (before.capabilities if before else None):
            found.append(
                Finding(
                    "tampering.capabilities",
                    Severity.HIGH,
                    ("T1548",),
                    ("capabilities",),
                    "file capabilities added or changed (security.capability)",
                )
            )
    if (
        change.change is ChangeKind.DELETED
        and before is not None
        and before.kind == "file"
        and before.mode & 0o111
    ):
        found.append(
            Finding(
                "tampering.deleted-binary",
                Severity.MEDIUM,
                ("T1070.004",),
                ("deleted-binary",),
                "an executable of the image was deleted",
            )
        )
    return found
