"""What a relay says about itself (``/status``, ``relay-status.json``, ``/metrics``).

Read by ``errmesh status``, the status server (``node.service``) and the
benchmarks; a key removed here breaks them, so keys are only ever added.
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

__all__ = ["metrics_text", "relay_status"]


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
        "lag_max_ms": {k: round(v * 1000, 1) for k, v in sorted(peer.lag_max.items())},
        "gossip": dataclasses.asdict(peer.gossip.counters),
        "queues": peer.gossip.queue_depths(),
        "members": members_of(peer),
        "updated_at": peer.clock(),
        "pid": os.getpid(),
    }


def _gauge(value: Any) -> str:
    """A status number as a sample; NaN when the store could not tell (None)."""
    return "NaN" if value is None else str(value)


def metrics_text(status: dict[str, Any]) -> str:
    """The status as Prometheus text exposition (gauges and counters)."""
    lines = [
        "# TYPE errmesh_peers gauge",
        f"errmesh_peers {len(status.get('peers', []))}",
        "# TYPE errmesh_is_leader gauge",
        f"errmesh_is_leader {1 if status.get('role') == 'leader' else 0}",
        "# TYPE errmesh_term gauge",
        f"errmesh_term {status.get('term', 0)}",
        "# TYPE errmesh_spool_pending gauge",
        f"errmesh_spool_pending {_gauge(status.get('spool_pending', 0))}",
        "# TYPE errmesh_signatures gauge",
        f"errmesh_signatures {_gauge(status.get('signatures', 0))}",
        "# TYPE errmesh_rejected_total counter",
    ]
    for reason, count in sorted(status.get("rejected", {}).items()):
        lines.append(f'errmesh_rejected_total{{reason="{reason}"}} {count}')
    lines.append("# TYPE errmesh_faults_total counter")
    for loop, count in sorted(status.get("faults", {}).items()):
        lines.append(f'errmesh_faults_total{{loop="{loop}"}} {count}')
    store_ok = status.get("store", {}).get("ok", True)
    lines += [
        "# TYPE errmesh_store_ok gauge",
        f"errmesh_store_ok {1 if store_ok else 0}",
        "# TYPE errmesh_quarantined gauge",
        f"errmesh_quarantined {status.get('quarantined_count', 0)}",
    ]
    lines.append("# TYPE errmesh_events_total counter")
    for name, count in sorted(status.get("stats", {}).items()):
        lines.append(f'errmesh_events_total{{event="{name}"}} {count}')
    return "\n".join(lines) + "\n"
