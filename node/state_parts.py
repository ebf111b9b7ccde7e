"""Anti-entropy answers as frames: states batched, and one too big for a frame split.

A state can outgrow one frame (a detail near the frame limit and 256 long
host names); it then goes as parts that each fit and join back into it
(the join is idempotent, so any part alone is a valid state too).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final

from mesh import wire
from mesh.errors import LocalError
from mesh.sigstate import OriginCount, SigState

__all__ = ["STATE_ROOM", "split_state", "state_messages"]

#: Bytes a ``state`` message may take before its MAC (we send no sender id).
STATE_ROOM: Final = wire.MAX_MESSAGE - wire.MAC_BYTES


def split_state(state: SigState, room: int = STATE_ROOM) -> list[SigState]:
    """Parts of ``state`` that each fit a ``state`` message and join back to it.

    A state may hold a detail of nearly a frame and 256 origins with long host
    names: more than one frame when it does not compress. Merging is a join,
    so the detail, the link and slices of the counts can travel apart and the
    receiver ends with the same state. A detail too big on its own (it came
    in a frame with less envelope) is cut by :func:`~mesh.wire.bound_report`;
    its key, which is all the fingerprint sees, is unchanged.
    """
    if _stored_size(state) <= room:
        return [state]
    base = dataclasses.replace(state, detail=None, counts={})
    parts = [base]
    if state.detail is not None:
        detailed = dataclasses.replace(base, detail=state.detail, link=None)
        if _stored_size(detailed) > room:
            detailed = dataclasses.replace(detailed, detail=wire.bound_report(state.detail))
        parts.append(detailed)
    chunk: dict[bytes, OriginCount] = {}
    size = 0
    for origin, rec in sorted(state.counts.items()):
        # An upper bound of one packed [origin, count] pair: cheaper than encoding.
        pair = _PAIR_MAX + len(rec.host.encode("utf-8", "replace"))
        if chunk and size + pair > room - _PART_HEAD:
            parts.append(dataclasses.replace(base, link=None, counts=chunk))
            chunk, size = {}, 0
        chunk[origin] = rec
        size += pair
    if chunk:
        parts.append(dataclasses.replace(base, link=None, counts=chunk))
    return parts


#: Packed bytes of one origin's pair besides its host (ids, keys, three 9-byte numbers).
_PAIR_MAX = 64
#: Room kept for the envelope and a part's other fields (no link, no detail).
_PART_HEAD = 256


def _stored_size(state: SigState) -> float:
    try:
        return len(wire.encode_state(state))
    except LocalError:  # over MAX_STORED or MAX_INFLATED: certainly over a frame
        return math.inf


def state_messages(states: list[SigState]) -> list[wire.StateMsg]:
    """``states`` as ``state`` messages of at most half a frame each (a state
    bigger than that goes alone, split by :func:`split_state` if it must)."""
    out: list[wire.StateMsg] = []
    batch: list[SigState] = []
    size = 0.0
    for state in states:
        for part in split_state(state):
            encoded = _stored_size(part)
            if batch and size + encoded > wire.MAX_MESSAGE // 2:
                out.append(wire.StateMsg(states=tuple(batch)))
                batch, size = [], 0.0
            batch.append(part)
            size += encoded
    if batch:
        out.append(wire.StateMsg(states=tuple(batch)))
    return out
