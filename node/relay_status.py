"""What a relay says about itself (``/status``, ``relay-status.json``).

Read by ``errmesh status``, the status server (``node.service``), its
metrics (``node.metrics``) and the benchmarks; a key removed here breaks
them, so keys are only ever added.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from mesh.errors import StoreError, StoreUnavailable
from mesh.store import StoreStatistics
from node.members import members_of

if TYPE_CHECKING:
    from node.relay import MeshPeer

__all__ = ["relay_status"]


def relay_status(peer: MeshPeer) -> dict[str, Any]:
    """Never raises: a relay whose store fails must still say so here."""
    stats: StoreStatistics | None = None
    try:
        stats = peer.store.statistics()
    except StoreUnavailable as exc:  # a full or unreadable disk: say so, not a fault
        peer.faults.store_failed(exc)
    except StoreError as exc:
        peer.faults.fault("status", exc)
    return {
        "peer_id": peer.gossip.peer_id,
        "status_url": peer.status_url,
        "addrs": peer.gossip.addrs,
        "peers": peer.gossip.peers(),
        "role": peer.election.role,
        "leader": peer.election.leader,
        "term": peer.election.term,
        "spool_pending": stats.pending if stats else None,
        "signatures": stats.signatures if stats else None,
        "unreadable_rows": stats.unreadable_rows if stats else None,
        **peer.faults.status(),
        "rejected": dict(peer.rejections.by_reason),
        "banned": sorted(peer.rejections.banned),
        "stats": dict(peer.stats),
        "lag_max_ms": {k: round(v * 1000, 1) for k, v in sorted(peer.lags.max.items())},
        "gossip": dataclasses.asdict(peer.gossip.counters),
        "queues": peer.gossip.queue_depths(),
        #: Writes the whole mesh sent GitHub in the hour, as this relay's ledger knows them.
        "github_writes_last_hour": peer.pace.ledger.total(peer.clock()),
        "members": members_of(peer),
        "updated_at": peer.clock(),
        "pid": os.getpid(),
    }
