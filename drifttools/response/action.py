"""The contract of a response action, and the one ordered list of them.

An action is a module in :mod:`drifttools.response.actions` with ``plan`` (what it would do
to a container and how that is undone, without touching it; raising
:class:`~drifttools.errors.ResponseRefused` when it must not be done) and ``apply`` (do it,
and return what the runtime or the kernel reports afterwards, read back). :data:`ACTIONS`
lists them in the order a response runs them (after preservation, before the fix): a new
action is a module there and a line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from drifttools.options import ResponseOptions
from drifttools.response.actions import freeze, isolate, terminate
from drifttools.response.model import Step, Subject


class ActionKind(NamedTuple):
    """One response action: whether a request asks for it, its plan, and how it is done."""

    wanted: Callable[[ResponseOptions], bool]
    plan: Callable[[Subject, ResponseOptions], Step]
    apply: Callable[[Subject, ResponseOptions], Mapping[str, Any]]


#: Every action that changes a container, in the order a response runs them.
ACTIONS: Mapping[str, ActionKind] = {
    "isolate": ActionKind(lambda r: r.isolate, isolate.plan, isolate.apply),
    "freeze": ActionKind(lambda r: r.freeze, freeze.plan, freeze.apply),
    "terminate": ActionKind(lambda r: r.terminate, terminate.plan, terminate.apply),
}
