"""A relay's receive path into its store, without a network.

The relay (``node.relay.MeshPeer``) merges what gossip brings in batches;
these functions do the merging, so that the property tests
(``tests/test_poison.py``) drive the very code the relay runs.
"""

from __future__ import annotations

from collections.abc import Callable

from mesh import wire
from mesh.sigstate import SigState, state_of_link, state_of_occurrence
from mesh.store import Store

__all__ = ["Batch", "merge_records", "merge_reports", "signatures_of"]


def signatures_of(msg: wire.Message) -> tuple[bytes, ...]:
    """The signatures a data message carries records of (to blame and to skip)."""
    if isinstance(msg, wire.ReportMsg):
        return (msg.report.signature,)
    if isinstance(msg, wire.OccMsg):
        return tuple(o.signature for o in msg.occurrences)
    if isinstance(msg, wire.StateMsg):
        return tuple(st.signature for st in msg.states)
    if isinstance(msg, wire.IssueMsg):
        return tuple(sig for sig, _ in msg.links)
    return ()


Batch = list[tuple[wire.Message, str]]


def _keep(sig: bytes, skip: Callable[[bytes], bool] | None) -> bool:
    return skip is None or not skip(sig)


def merge_reports(
    store: Store, batch: Batch, skip: Callable[[bytes], bool] | None = None
) -> tuple[list[tuple[wire.ReportMsg, str]], list[SigState]]:
    """Commit the batch's reports (one transaction); returns them with their
    senders, for acks, and the states they changed.

    The relay's receive path, without a network (the property tests drive it).
    Reports of signatures ``skip`` names are left out: not stored, not acked.
    Raises ``StoreError`` (then nothing of the batch is stored).
    """
    reports = [
        (m, sender)
        for m, sender in batch
        if isinstance(m, wire.ReportMsg) and _keep(m.report.signature, skip)
    ]
    if not reports:
        return [], []
    return reports, store.merge_reports([m.report for m, _ in reports])


def merge_records(
    store: Store, batch: Batch, skip: Callable[[bytes], bool] | None = None
) -> tuple[list[SigState], int]:
    """Merge the batch's ``occ``, ``state`` and ``issue`` records and apply its
    acks; returns the states changed and how many records were merged.

    Not waiting for the disk: any peer can send these again.
    """
    states: list[SigState] = []
    acked: list[tuple[bytes, int]] = []
    for msg, _ in batch:
        if isinstance(msg, wire.OccMsg):
            states.extend(state_of_occurrence(o) for o in msg.occurrences)
        elif isinstance(msg, wire.StateMsg):
            states.extend(msg.states)
        elif isinstance(msg, wire.IssueMsg):
            states.extend(state_of_link(sig, link) for sig, link in msg.links)
        elif isinstance(msg, wire.AckMsg):
            acked.extend(msg.ids)
    states = [st for st in states if _keep(st.signature, skip)]
    merged = store.merge_states(states, durable=False) if states else []
    if acked:
        store.ack(acked)
    return merged, len(states)
