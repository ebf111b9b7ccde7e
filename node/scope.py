"""What the host said about itself before the error: tags, contexts, the user.

sentry-python's scope, reduced to what a report shows. ``node.set_tag`` and
friends (node/capture.py) only store the host's values in the hub's dicts,
at the cost of a dict assignment, on the success path; this module, loaded
on the error path alone, turns them into the report's bounded text pairs
(node/cut.py), which the pipeline then scrubs with every other field.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import FrameType, TracebackType

from node.cut import (
    CONTEXT_VALUE_CHARS,
    MAX_CONTEXTS,
    MAX_TAGS,
    TAG_VALUE_CHARS,
    cut_pairs,
)

__all__ = ["Scope", "context_pairs", "default_release", "stack_of", "tag_pairs"]


def _text(value: object) -> str:
    """``str(value)``, surviving a broken ``__str__`` (capture never raises)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def tag_pairs(tags: Mapping[object, object]) -> tuple[tuple[str, str], ...]:
    """The first :data:`~node.cut.MAX_TAGS` tags as bounded ``(key, value)`` text."""
    items = [(_text(k), _text(v)) for k, v in list(tags.items())[:MAX_TAGS]]
    return cut_pairs(items, MAX_TAGS, TAG_VALUE_CHARS)


def context_pairs(contexts: Mapping[object, object]) -> tuple[tuple[str, str], ...]:
    """Each context's keys as ``name.key`` pairs, the first :data:`~node.cut.MAX_CONTEXTS`.

    Flat pairs, like the facts: one shape to bound, scrub (a secret key's
    value is redacted whatever its context) and render.
    """
    items: list[tuple[str, str]] = []
    for name, body in list(contexts.items()):
        fields = body.items() if isinstance(body, Mapping) else (("value", body),)
        for key, value in list(fields):
            if len(items) >= MAX_CONTEXTS:
                return cut_pairs(items, MAX_CONTEXTS, CONTEXT_VALUE_CHARS)
            items.append((f"{_text(name)}.{_text(key)}", _text(value)))
    return cut_pairs(items, MAX_CONTEXTS, CONTEXT_VALUE_CHARS)


def default_release(package: str) -> str:
    """The host package's ``__version__``, if it is imported and has one, else ``""``.

    Only what costs nothing: ``importlib.metadata`` would read the
    installed distributions on a dying process's way out (DECISIONS 47).
    """
    module = sys.modules.get(package) if package else None
    version = getattr(module, "__version__", "")
    return version.strip() if isinstance(version, str) else ""


class Scope:
    """The host's scope at the error, as the report will carry it (bounded, unscrubbed)."""

    __slots__ = ("contexts", "package_release", "tags")

    def __init__(
        self,
        tags: tuple[tuple[str, str], ...] = (),
        contexts: tuple[tuple[str, str], ...] = (),
        package_release: str = "",
    ) -> None:
        self.tags = tags
        self.contexts = contexts
        #: The release when the ``release`` setting is empty.
        self.package_release = package_release

    @classmethod
    def of(
        cls, tags: Mapping[object, object], contexts: Mapping[object, object], package: str
    ) -> Scope:
        """The hub's dicts (node/capture.py) and the host package, read once at the error."""
        return cls(tag_pairs(tags), context_pairs(contexts), default_release(package))


def stack_of(frame: FrameType | None) -> TracebackType | None:
    """A traceback of ``frame`` and its callers, outermost first, as if raised there.

    ``capture_message`` goes through the exception path with it, so a
    message is grouped by the caller's frames like an exception raised there.
    """
    stack = None
    while frame is not None:  # each wraps the one it called
        stack = TracebackType(stack, frame, frame.f_lasti, frame.f_lineno)
        frame = frame.f_back
    return stack
