"""What happened in a run, as the checker and a replay need it.

Jepsen's shape: the faults, what was raised where (every injected
occurrence, committed to its machine's spool before anything else), every
election (who took which term, who stepped down), every write GitHub saw,
and what each relay held at the end. ``lines`` is the readable log; its
hash (with, when tracing, every delivery folded in) is what "same seed, same
history, byte for byte" compares.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["History", "Lead"]

_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Lead:
    """``peer`` took ``term`` at ``at`` (``mesh.election.BecameLeader``)."""

    at: float
    peer: int
    term: int


@dataclass
class History:
    lines: list[str] = field(default_factory=list)
    #: (origin, signature) -> occurrences committed there.
    injected: dict[tuple[bytes, bytes], int] = field(default_factory=lambda: defaultdict(int))
    #: origin -> the machine's name, for messages.
    origins: dict[bytes, str] = field(default_factory=dict)
    leads: list[Lead] = field(default_factory=list)
    #: peer -> (time, highest term heard in a heartbeat delivered to it, even
    #: one waiting in a paused process's socket).
    _heard: dict[int, tuple[list[float], list[int]]] = field(default_factory=dict)
    _trace: int = 0
    deliveries: int = 0

    def log(self, at: float, what: str) -> None:
        self.lines.append(f"{at:12.6f} {what}")

    def inject(self, at: float, origin: bytes, signature: bytes, count: int, where: str) -> None:
        self.injected[(origin, signature)] += 1
        self.origins[origin] = where
        self.log(at, f"inject {where} sig={signature.hex()[:8]} count={count}")

    def lead(self, at: float, peer: int, name: str, term: int) -> None:
        self.leads.append(Lead(at, peer, term))
        self.log(at, f"lead {name} term={term}")

    def heard(self, peer: int, at: float, term: int) -> None:
        times, terms = self._heard.setdefault(peer, ([], []))
        if not terms or term > terms[-1]:
            times.append(at)
            terms.append(term)

    def heard_by(self, peer: int, at: float) -> int:
        """The highest term in any heartbeat delivered to ``peer`` up to ``at``."""
        times, terms = self._heard.get(peer, ([], []))
        i = bisect.bisect_right(times, at)
        return terms[i - 1] if i else -1

    def trace(self, at: float, node: int, code: int) -> None:
        self.deliveries += 1
        self._trace = (self._trace * 1_000_003 ^ hash((int(at * 1e9), node, code))) & _MASK

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update("\n".join(self.lines).encode())
        h.update(self._trace.to_bytes(8, "big"))
        return h.hexdigest()
