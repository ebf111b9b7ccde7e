"""What one failure looks like once captured: plain, frozen, typed values.

These are the records every other part passes around: the capture API builds
a :class:`Report`, the scrubber returns a cleaned copy, the signature is
computed from it, the wire codec encodes it, the spool stores those bytes and
the aggregate merges it. Nothing here does IO.

Identity: a report is identified by ``(origin, seq)``. ``origin`` is the id of
the durable store that spooled it (one per machine and cluster, 16 random
bytes kept in the store), ``seq`` that store's row number. Delivering the same
report twice therefore changes nothing. ``count`` is the origin's cumulative
number of occurrences of this signature, *including* this one: merging takes
the max per origin, so repeats, losses and reordering are all harmless.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from mesh.severity import Severity

__all__ = [
    "SIGNATURE_BYTES",
    "Cause",
    "Frame",
    "Kind",
    "Leaf",
    "Occurrence",
    "Report",
    "sig_hex",
]

#: A signature is the first 16 bytes of a sha256 (DESIGN section 3).
SIGNATURE_BYTES = 16

Kind = Literal["exception", "command"]


def sig_hex(signature: bytes, length: int = 12) -> str:
    """The short hex form shown in titles, branch names and file names."""
    return signature.hex()[:length]


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One stack frame, innermost last (the order of a Python traceback).

    ``filename`` is relative (to the project, or to site-packages for library
    code) so that the same bug on machines with different install paths
    renders and hashes the same. ``in_app`` marks the host program's own code.

    ``line`` is the source line, stripped (what a traceback shows). The
    source context (Sentry's ``pre_context``, ``context_line``,
    ``post_context``) is set on the innermost in-app frames only: the lines
    before and after it and the line itself with its indentation, so the
    three can be shown as the file has them. Never part of the signature.
    """

    module: str
    function: str
    filename: str
    lineno: int
    in_app: bool
    line: str = ""
    pre_context: tuple[str, ...] = ()
    context_line: str = ""
    post_context: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cause:
    """An exception chained to the reported one (``__cause__``/``__context__``)."""

    type: str
    message: str
    relation: Literal["cause", "context"] = "cause"


@dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    """One leaf exception of an exception group (a failed task of a nursery).

    A group's own type and message say only that tasks failed ("Exceptions
    from Trio nursery"); its leaves are the bugs. Nested groups are
    flattened; ``frames`` are the leaf's own traceback (where the task ran),
    outermost first.
    """

    type: str
    message: str
    frames: tuple[Frame, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The full, scrubbed detail of one occurrence of an error.

    ``kind`` is ``"exception"`` for a Python exception and ``"command"`` for
    a program run by ``errmesh run`` that exited non-zero or by a signal (then
    ``exit_code`` or ``signal`` is set, ``frames`` is empty and ``log_tail``
    holds the program's stderr tail, ``stdout_tail`` its stdout's).

    For an exception group, ``leaves`` holds its first leaf exceptions
    (depth-first) and ``leaves_cut`` how many more it had.

    ``tags``, ``contexts`` (``name.key`` pairs, the user's as ``user.id`` and
    ``user.name``), ``environment`` and ``release`` are what the host said
    about itself (``node.set_tag`` and friends, the settings): shown, never
    part of the signature (only an explicit ``fingerprint`` regroups).
    """

    origin: bytes
    seq: int
    count: int
    signature: bytes
    kind: Kind
    exc_type: str
    message: str
    causes: tuple[Cause, ...] = ()
    frames: tuple[Frame, ...] = ()
    log_tail: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    app: str = ""
    app_version: str = ""
    host: str = ""
    os: str = ""
    python: str = ""
    timestamp: float = 0.0
    severity: Severity = Severity.MEDIUM
    exit_code: int | None = None
    signal: int | None = None
    facts: tuple[tuple[str, str], ...] = ()
    fingerprint: tuple[str, ...] | None = None
    leaves: tuple[Leaf, ...] = ()
    leaves_cut: int = 0
    tags: tuple[tuple[str, str], ...] = ()
    contexts: tuple[tuple[str, str], ...] = ()
    environment: str = ""
    release: str = ""
    stdout_tail: tuple[str, ...] = ()

    def replace(self, **changes: object) -> Report:
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def occurrence(self) -> Occurrence:
        """The few bytes that a repeat of this report needs on the wire."""
        return Occurrence(
            origin=self.origin,
            signature=self.signature,
            count=self.count,
            first_seen=self.timestamp,
            last_seen=self.timestamp,
            host=self.host,
            severity=self.severity,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Occurrence:
    """An origin's cumulative count for one signature (the ``occ`` record).

    Carries state, not an event: ``count`` is the total so far at ``origin``,
    so a lost ``occ`` is repaired by any later one.
    """

    origin: bytes
    signature: bytes
    count: int
    first_seen: float
    last_seen: float
    host: str
    severity: Severity = Severity.MEDIUM
