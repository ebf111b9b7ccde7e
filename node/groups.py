"""Exception groups split into their leaves: each failed task is its own report.

A trio nursery or an asyncio ``TaskGroup`` raises one group for every task
that failed; its own type and message ("Exceptions from Trio nursery") say
nothing, and two unrelated bugs of one nursery are two issues. So the hub
(node/capture.py) reports each leaf on its own, with a trace that runs from
the program's entry through the groups that carried it to where the leaf
was raised: the frames a person reading the issue needs, and the in-app
frames its signature hashes, as if the task's error had propagated alone.

Loaded on the error path only; standard library only, since a dying
process's skeleton (node/skeleton.py) waits for this.
"""

from __future__ import annotations

import sys
from types import TracebackType

TYPE_CHECKING = False  # not typing's: a dying process's skeleton waits for this module
if TYPE_CHECKING:
    from collections.abc import Sequence

    from node.capture import _Hub
    from node.pipeline import Outcome

__all__ = ["MAX_LEAVES", "Traced", "capture_leaves", "group_types", "leaves"]

#: Leaves of one group reported or kept in a report (the wire's MAX_LEAVES).
MAX_LEAVES = 10


def group_types() -> tuple[type[BaseException], ...]:
    """``BaseExceptionGroup``: builtin on 3.11+, else the backport if it is loaded."""
    import builtins

    builtin = getattr(builtins, "BaseExceptionGroup", None)
    if builtin is not None:
        return (builtin,)
    backport = sys.modules.get("exceptiongroup")
    group = getattr(backport, "BaseExceptionGroup", None)
    return (group,) if isinstance(group, type) else ()


def leaves(
    exc: BaseException, limit: int = MAX_LEAVES
) -> tuple[list[tuple[BaseException, tuple[TracebackType | None, ...]]], int]:
    """The first ``limit`` leaves of a group, depth-first, and how many more it has.

    Each leaf comes with the tracebacks of the groups above it, outermost
    first. Nested groups are flattened (an explicit stack: no recursion
    limit, each group walked once). A non-group has no leaves.
    """
    groups = group_types()
    if not groups or not isinstance(exc, groups):
        return [], 0
    kept: list[tuple[BaseException, tuple[TracebackType | None, ...]]] = []
    more = 0
    seen = {id(exc)}
    top: tuple[TracebackType | None, ...] = (exc.__traceback__,)
    stack = [(sub, top) for sub in reversed(getattr(exc, "exceptions", ()))]
    while stack:
        sub, above = stack.pop()
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        if isinstance(sub, groups):
            inner = (*above, sub.__traceback__)
            stack.extend((s, inner) for s in reversed(getattr(sub, "exceptions", ())))
        elif len(kept) < limit:
            kept.append((sub, above))
        else:
            more += 1
    return kept, more


def _joined(parts: tuple[TracebackType | None, ...]) -> TracebackType | None:
    """One traceback that runs through ``parts``, outermost first (new objects)."""
    entries: list[TracebackType] = []
    for tb in parts:
        while tb is not None:
            entries.append(tb)
            tb = tb.tb_next
    joined = None
    for entry in reversed(entries):
        joined = TracebackType(joined, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return joined


class Traced:
    """Give ``leaf`` the whole trace (its groups', then its own) while it is reported.

    The traceback is the leaf's own again afterwards: the host's hook prints
    the group right after, and must print it as Python would.
    """

    def __init__(self, leaf: BaseException, above: tuple[TracebackType | None, ...]) -> None:
        self.leaf = leaf
        self.own = leaf.__traceback__
        self.whole = _joined((*above, self.own))

    def __enter__(self) -> BaseException:
        self.leaf.__traceback__ = self.whole
        return self.leaf

    def __exit__(self, *exc_info: object) -> None:
        self.leaf.__traceback__ = self.own


def capture_leaves(
    hub: _Hub, exc: BaseException, *, exiting: bool, fingerprint: Sequence[str] | None
) -> tuple[bool, Outcome | None]:
    """Report each leaf of a group through the hub: (was it a group, last leaf's outcome).

    Never raises: a group that cannot be walked is reported whole, as any
    other exception.
    """
    try:
        found = leaves(exc)[0]
    except Exception:
        return False, None
    outcome = None
    for leaf, above in found:
        if hub.is_error(leaf):
            with Traced(leaf, above) as whole:
                outcome = hub.capture(whole, exiting=exiting, fingerprint=fingerprint)
    return bool(found), outcome
