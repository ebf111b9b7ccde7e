"""Who a relay hears from: the rows of ``errmesh members`` and the dashboard.

The election keeps only what it needs to decide (who is alive, on a
monotonic clock) and gossip only who is connected now; an operator wants
more: every peer heard lately with its role, term, addresses, when it was
last heard and how late its messages were. The relay's receive path hands
every decoded message to :meth:`Members.heard` (``MeshPeer.accept``);
heartbeats say a candidate's rank, term and addresses. Bounded: at most
``max_peers`` peers, the longest silent forgotten first, and none silent
for longer than ``forget_after`` seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mesh import wire

if TYPE_CHECKING:
    from node.relay import MeshPeer

__all__ = ["Heard", "Members", "members_of"]


@dataclass(slots=True)
class Heard:
    """What one peer's messages told us."""

    last_heard: float
    lag_ms: float = 0.0
    lag_max_ms: float = 0.0
    messages: int = 0
    relay: bool = False  # it sends heartbeats or digests: a relay, not a failing process
    heartbeat: bool = False  # a candidate: it sends heartbeats
    leading: bool = False
    term: int = 0
    priority: int = 0
    addrs: tuple[str, ...] = ()


class Members:
    """The peers heard lately; fed by the receive path, read by the status."""

    def __init__(self, *, max_peers: int = 256, forget_after: float = 3600.0) -> None:
        self.max_peers = max_peers
        self.forget_after = forget_after
        self._heard: OrderedDict[str, Heard] = OrderedDict()

    def heard(self, msg: wire.Message, sender: str, lag: float, now: float) -> None:
        """``sender``'s message arrived at ``now`` after waiting ``lag`` seconds here."""
        entry = self._heard.pop(sender, None) or Heard(last_heard=now)
        entry.last_heard = now
        entry.lag_ms = round(lag * 1000, 1)
        entry.lag_max_ms = max(entry.lag_max_ms, entry.lag_ms)
        entry.messages += 1
        entry.relay = entry.relay or isinstance(msg, (wire.HeartbeatMsg, wire.DigestMsg))
        if isinstance(msg, wire.HeartbeatMsg):
            entry.heartbeat = msg.heartbeat.eligible
            entry.leading = msg.heartbeat.leading
            entry.term = msg.heartbeat.term
            entry.priority = msg.heartbeat.priority
            entry.addrs = tuple(msg.addrs) or entry.addrs
        self._heard[sender] = entry  # the most recently heard last
        while len(self._heard) > self.max_peers:
            self._heard.popitem(last=False)

    def rows(
        self, *, leader: str | None, direct: set[str], queues: dict[str, int], now: float
    ) -> list[dict[str, Any]]:
        """One row per relay heard within ``forget_after`` and per peer connected now, by id.

        A failing process that published its report through us is a member only
        while it is connected (a "reporter"): a fleet's CLIs would crowd out the relays.
        """
        for peer in [p for p, h in self._heard.items() if now - h.last_heard > self.forget_after]:
            del self._heard[peer]
        relays = {p for p, h in self._heard.items() if h.relay}
        rows = []
        for peer in sorted(relays | direct):
            entry = self._heard.get(peer)
            rows.append(
                {
                    "peer_id": peer,
                    "role": _role(peer, entry, leader),
                    "term": entry.term if entry else None,
                    "priority": entry.priority if entry else None,
                    "addrs": list(entry.addrs) if entry else [],
                    "connected": peer in direct,
                    "last_heard": entry.last_heard if entry else None,
                    "lag_ms": entry.lag_ms if entry else None,
                    "lag_max_ms": entry.lag_max_ms if entry else None,
                    "messages": entry.messages if entry else 0,
                    "queue": queues.get(peer, 0),
                }
            )
        return rows


def _role(peer: str, entry: Heard | None, leader: str | None) -> str:
    """The election's words (the leader, a follower: a candidate, an observer: a relay
    that never leads), or a reporter: a peer that only published reports."""
    if peer == leader:
        return "leader"
    if entry is None or not entry.relay:
        return "reporter"
    return "follower" if entry.heartbeat else "observer"


def members_of(peer: MeshPeer) -> list[dict[str, Any]]:
    """The relay itself first, then every peer it heard lately (for ``/status``)."""
    me = peer.gossip.peer_id
    now = peer.clock()
    myself = {
        "peer_id": me,
        "role": peer.election.role,
        "term": peer.election.term,
        "priority": peer.options.priority,
        "addrs": list(peer.gossip.addrs),
        "connected": True,
        "last_heard": now,
        "lag_ms": 0.0,
        "lag_max_ms": 0.0,
        "messages": 0,
        "queue": 0,
        "self": True,
    }
    others = peer.members.rows(
        leader=peer.election.leader,
        direct=set(peer.gossip.peers()),
        queues=peer.gossip.queue_depths(),
        now=now,
    )
    return [myself, *(row for row in others if row["peer_id"] != me)]
