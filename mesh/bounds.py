"""The ceilings of every integer that the mesh computes and sends back out.

A frame may carry any value its field's type allows (``docs/PROTOCOL.md``
section 1), and a peer holding the cluster key may send the largest. What a
peer *derives* from such values (a sum of counts, the next term) must still
fit the wire, or the peer could not encode its own digest or heartbeat, and
since it stores what it merged, it would fail again after every restart. So:

- counts saturate: a sum of per-origin counts (a state's ``total``, an
  issue's ``synced_total``) and ``evicted_origins`` stop at :data:`MAX_COUNT`;
- terms have a ceiling, :data:`MAX_TERM`: the decoder refuses a frame with a
  term above it, and an election at the ceiling stays there instead of
  taking ``term + 1``;
- issue numbers have one too, :data:`MAX_NUMBER`: the decoder refuses a link
  numbered above it, and a sink that numbers its own issues refuses to
  allocate past it (``SinkRejected``) rather than store an unstorable number.

No import of its own: the aggregate, the election and the wire codec all
share these numbers (``mesh.wire.limits`` re-exports them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["MAX_COUNT", "MAX_NUMBER", "MAX_TERM", "saturating_add", "saturating_sum"]

#: The largest count a sum saturates at: the wire's ``uint`` maximum.
MAX_COUNT: Final = 2**63 - 1
#: The highest election term. One term per election: no honest mesh gets
#: near it; 2**53 is also the largest integer every JSON reader keeps exact.
MAX_TERM: Final = 2**53
#: The highest issue number a link may carry. GitHub's are 32-bit; the file
#: sink numbers above the highest link it knows, so a link at 2**63 - 1
#: would make its next number unstorable.
MAX_NUMBER: Final = 2**53


def saturating_add(a: int, b: int) -> int:
    """``a + b``, at most :data:`MAX_COUNT`."""
    return min(a + b, MAX_COUNT)


def saturating_sum(values: Iterable[int]) -> int:
    """The sum of some non-negative counts, at most :data:`MAX_COUNT`."""
    return min(sum(values), MAX_COUNT)
