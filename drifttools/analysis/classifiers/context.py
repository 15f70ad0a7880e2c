"""What a rule over a change may know beside the change itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeContext:
    """The facts classification learnt before the rules run."""

    tags: frozenset[str]  # from the content: executable, elf, script, shared-library ...
    start_scripts: frozenset[str]  # the image's entrypoint and command scripts
