"""Why received bytes are refused: the stable reason codes and their carriers.

:class:`Rejected` is what :func:`~mesh.wire.decode` hands back; ``_Reject`` is
the internal exception every reading step raises, with the path of the field
at fault, and which the top level turns into a :class:`Rejected`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

RejectReason = Literal[
    "oversized",
    "undecodable",
    "not-a-map",
    "unknown-version",
    "unknown-kind",
    "bad-field",
    "out-of-range",
    "ext-type",
    "too-deep",
    "too-many",
    "missing-mac",
    "bad-mac",
]
#: Every reason :func:`decode` may give, for metrics labels.
REJECT_REASONS: Final[tuple[RejectReason, ...]] = get_args(RejectReason)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a received byte string was dropped. Count it; score the sender."""

    reason: RejectReason
    detail: str = ""


class _Reject(Exception):
    """Internal: a decoding failure, turned into :class:`Rejected` at the top."""

    def __init__(self, reason: RejectReason, detail: str, path: str = "") -> None:
        super().__init__(reason, detail, path)
        self.reason: RejectReason = reason
        self.detail = detail
        self.path = path

    def within(self, step: str) -> _Reject:
        """The same failure, its path prefixed with the enclosing field."""
        sep = "" if not self.path or self.path.startswith("[") else "."
        return _Reject(self.reason, self.detail, step + sep + self.path)

    def text(self) -> str:
        return f"{self.path}: {self.detail}" if self.path else self.detail


def _tname(value: object) -> str:
    """A safe description of a value of unknown shape: never its repr."""
    return "nil" if value is None else type(value).__name__
