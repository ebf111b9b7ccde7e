"""An exception's names and its chain of causes, with nothing imported.

Shared by the event builder (node/event.py) and the skeleton a dying process
commits before anything slow (node/skeleton.py), which must not import the
event builder: both must name a type, and walk ``__cause__``/``__context__``,
alike or a skeleton would sign differently from its report.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["causes", "qualified_name"]


def qualified_name(cls: type) -> str:
    """``module.QualName``, or just ``QualName`` for builtins."""
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", None) or cls.__name__
    return name if module in ("builtins", "__builtin__", "exceptions") else f"{module}.{name}"


def causes(exc: BaseException, limit: int) -> Iterator[tuple[BaseException, str]]:
    """Up to ``limit`` (exception, "cause" or "context") links behind ``exc``, as Python prints."""
    seen = {id(exc)}
    current = exc
    for _ in range(limit):
        if current.__cause__ is not None:
            nxt, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            nxt, relation = current.__context__, "context"
        else:
            return
        if id(nxt) in seen:
            return
        seen.add(id(nxt))
        yield nxt, relation
        current = nxt
