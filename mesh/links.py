"""Keeping a peer's links alive and unstuck: bootstrap reconnection, the stuck-link watchdog.

Split from :mod:`mesh.gossip` (which opens the host and owns the
:class:`~mesh.gossip.Gossip` handle these loops act on); both loops run in
``open_gossip``'s nursery for as long as the gossip handle lives.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from mesh.gossip import Gossip, GossipConfig

__all__ = ["Unreachable", "drop_stuck_links", "keep_connected"]

log = logging.getLogger("errmesh.gossip")


def _queue_heads(gossip: Gossip) -> dict[str, object | None]:
    """Per peer, the RPC its writer will send next (None: an empty queue).

    Reads py-libp2p's RpcQueue internals; if they change, the watchdog sees
    empty queues and does nothing.
    """
    heads: dict[str, object | None] = {}
    for peer, queue in list(gossip._pubsub.peer_queues.items()):
        inner = getattr(queue, "_queue", None)
        head = None
        for name in ("_priority", "_non_priority"):
            items = getattr(inner, name, None)
            if items:
                head = items[0]
                break
        heads[str(peer.to_base58())] = head
    return heads


async def drop_stuck_links(gossip: Gossip, stuck_after: float) -> None:
    """Disconnect a peer whose writer has sent nothing for ``stuck_after`` seconds.

    Under load, py-libp2p 0.8.1 sometimes stops sending to a peer that stays
    connected: its queue fills to 32 while no writer task takes from it
    (seen in a relay's ``/debug/tasks``: the writers waited on other, empty
    queues). Every message to that peer is then dropped silently, and
    anti-entropy never repaired it (scripts/bench/github_cost.py: several
    relays 10-35% short for minutes, and a relay that could send nothing
    kept leading). Stuck means the same RPC at the head of a non-empty queue
    the whole time: a slow but working link (a busy receiver) moves its head,
    and judging by queue length alone disconnected those too, dozens of
    times a run. Forgetting only the peer's pubsub state (py-libp2p's
    ``_handle_dead_peer``) was tried: the fresh stream often never came.
    """
    stalled: dict[str, tuple[object, float]] = {}  # peer -> (head, since)
    while True:
        await trio.sleep(0.5)
        now = trio.current_time()
        heads = _queue_heads(gossip)
        for peer, head in heads.items():
            if head is None:
                stalled.pop(peer, None)
                continue
            previous = stalled.get(peer)
            if previous is None or previous[0] is not head:
                stalled[peer] = (head, now)
                continue
            if now - previous[1] < stuck_after:
                continue
            del stalled[peer]
            gossip.counters.stuck_links += 1
            log.warning("nothing sent to %s for %.0f s: reconnecting", peer, now - previous[1])
            await gossip.disconnect(peer)
        for peer in set(stalled) - set(heads):
            del stalled[peer]


class Unreachable:
    """When to say that a bootstrap peer is unreachable, and that it is back.

    Once when it first fails, then after ``first`` seconds, doubling up to
    ``cap``: a peer down for a day costs a relay's log ~30 lines, not one per
    redial. Pure: the caller passes ``now``.
    """

    def __init__(self, first: float | None, cap: float) -> None:
        self.first, self.cap = first, cap
        self.since: float | None = None  # failing since; None while reachable
        self.said = False
        self.next_at = 0.0
        self.every = 0.0

    def failed(self, now: float) -> bool:
        """A dial failed; True when it is time to log it."""
        if self.since is None:
            self.since, self.next_at, self.every = now, now, self.first or 0.0
        if self.first is None or now < self.next_at:
            return False
        self.said = True
        self.next_at = now + self.every
        self.every = min(self.cap, self.every * 2)
        return True

    def reached(self, now: float) -> float | None:
        """Connected: how long it was unreachable, if that was logged."""
        down = now - self.since if self.since is not None and self.said else None
        self.since, self.said = None, False
        return down


async def keep_connected(gossip: Gossip, maddr: str, config: GossipConfig) -> None:
    """Redial a bootstrap peer whenever it is gone, with capped exponential backoff.

    Gone means not a pubsub peer: a connection without a pubsub stream
    carries nothing, so after a dial the peer must show up in pubsub within
    a few seconds, or the connection is closed and dialled afresh (else the
    dial "succeeds" at once, over and over: thousands of times per run).
    An unreachable peer is logged as :class:`Unreachable` says.
    """
    peer = maddr.rsplit("/p2p/", 1)[-1]
    delay = config.reconnect_min
    unreachable = Unreachable(config.unreachable_log_first, config.unreachable_log_max)
    while True:
        if gossip.connected(peer) or gossip.refuses(peer, None):
            down = unreachable.reached(trio.current_time())
            if down is not None:
                log.warning("bootstrap peer %s is reachable again (after %.0f s)", maddr, down)
            delay = config.reconnect_min
            await trio.sleep(0.2)
            continue
        try:
            await gossip.dial(maddr)
            gossip.counters.reconnects += 1
            delay = config.reconnect_min
        except Exception as exc:  # refused, timed out, unreachable: try again later
            log.debug("cannot reach %s: %s", maddr, exc)
            if unreachable.failed(trio.current_time()):
                log.warning(
                    "cannot reach bootstrap peer %s: %s (retrying; next report in %.0f s)",
                    maddr,
                    " ".join(str(exc).split()) or type(exc).__name__,
                    unreachable.next_at - trio.current_time(),
                )
            await trio.sleep(delay)
            delay = min(config.reconnect_max, delay * 2)
        await trio.sleep(0.05)
