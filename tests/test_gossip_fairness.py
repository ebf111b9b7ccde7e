"""One connection's burst of messages cannot starve the relay's other tasks.

py-libp2p reads a connection's buffered RPCs and validates their messages
without yielding to trio, so a flood already in the buffers (or a banned
forwarder's frames, dropped unread) ran to its end before the status
endpoint, the heartbeats or an honest reporter's ack got a turn. Every
received message passes ``mesh.gossip``'s wrapper of ``push_msg``, which
yields once per message. The stand-in below is py-libp2p's ``Pubsub`` as the
wrapper sees it (three attributes), driven by trio's real scheduler.
"""

from __future__ import annotations

from typing import Any

import trio

from mesh.gossip import GossipCounters, _count_banned_drops


class BufferedPubsub:
    """``push_msg`` that never yields, as py-libp2p's does for buffered data."""

    my_id = "me"

    def __init__(self) -> None:
        self.pushed = 0

    def is_peer_blacklisted(self, peer: Any) -> bool:
        return peer == "banned"

    async def push_msg(self, forwarder: Any, msg: Any) -> None:
        self.pushed += 1


def test_a_burst_of_buffered_messages_lets_other_tasks_run_between_them() -> None:
    pubsub = BufferedPubsub()
    counters = GossipCounters()
    _count_banned_drops(pubsub, counters)
    turns: list[int] = []

    async def status_endpoint() -> None:
        while True:
            turns.append(pubsub.pushed)
            await trio.lowlevel.checkpoint()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(status_endpoint)
            await trio.lowlevel.checkpoint()
            for i in range(1000):  # one connection's backlog, half of it banned
                await pubsub.push_msg("banned" if i % 2 else "peer", b"frame")
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert pubsub.pushed == 1000 and counters.dropped_banned == 500
    assert len(turns) >= 500, f"the other task ran {len(turns)} times during 1,000 messages"
