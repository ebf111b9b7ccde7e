"""Delivery from a failing process to the mesh (DESIGN section 7).

Two ways out, fastest first:

1. **Local relay present**: the report is already in the spool the relay
   drains, so the process only nudges the relay with one datagram on its
   Unix socket and exits: no libp2p import, no network.
2. **No local relay**: the process starts an embedded libp2p node (only now,
   after the error), connects to the configured peers, publishes every
   pending report of its spool, waits for durable peers' acks up to
   ``ack_timeout``, deletes what was acked from the spool, drains libp2p's
   outbound queues and returns. Whatever was not acked stays in the spool
   for the next errmesh process on the machine.

When neither a relay nor peers can be reached the reports stay spooled and
nothing else happens here: the process exits as it would have.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh.report import Report
from mesh.store import Store
from node.config import Config
from node.handover import nudge_relay
from node.leader import RoundResult

__all__ = ["MAX_SEND", "MeshDelivery"]

#: Reports one failing process publishes at most (oldest first).
MAX_SEND = 16


class MeshDelivery:
    """Hands spooled reports to the mesh; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.last_acked = 0
        self.via = ""

    def deliver(
        self, store: Store, reports: Sequence[Report], *, exiting: bool
    ) -> RoundResult | None:
        if nudge_relay(self.config.relay_socket):
            self.via = "local-relay"
            return None
        if not self.config.peers:  # a stale relay socket and no peers: be a mesh of one
            from node.compose import SoloDelivery

            self.via = "solo"
            return SoloDelivery(self.config).deliver(store, reports, exiting=exiting)
        import trio

        # A process sends at most MAX_SEND reports, paced; a longer backlog
        # (a relay down for hours) is left to the next processes and relays.
        pending = store.pending(limit=MAX_SEND)
        acked = trio.run(self._send, pending)
        store.ack(acked)
        self.last_acked = len(acked)
        self.via = "mesh"
        return None

    async def _send(self, pending: list[Report]) -> list[tuple[bytes, int]]:
        import trio

        from mesh import wire
        from mesh.gossip import GossipConfig, open_gossip, topics_for
        from node.admission import RejectionCounter, make_validator

        ring = self.config.cluster_keys()
        key, accepted = (None, None) if ring is None else (ring.current, ring.accepted)
        reports_topic, control_topic = topics_for(self.config.cluster)
        wanted = {(r.origin, r.seq) for r in pending}
        # A report leaves the spool only on the ack of a peer we were told is
        # a durable relay: any other key holder could ack what it never stored.
        trusted = {addr.rsplit("/p2p/", 1)[-1] for addr in self.config.peers}
        acked: set[tuple[bytes, int]] = set()
        gossip_config = GossipConfig(
            lean_import=True,  # a failing CLI: ~0.3 s of imports less (mesh/gossip.py)
            topics=(reports_topic, control_topic),
            listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=self.config.peers,
            unreachable_log_first=None,  # the host's stderr is not ours to fill
            network_keys=self.config.network_keys(ring),
        )
        with trio.move_on_after(self.config.ack_timeout + 3.0):  # + start-up and flush
            async with open_gossip(
                gossip_config, make_validator(accepted, RejectionCounter())
            ) as gossip:
                with trio.move_on_after(self.config.ack_timeout):
                    await gossip.wait_for_subscribers(reports_topic, self.config.ack_timeout)
                    for report in pending:
                        await gossip.publish(
                            reports_topic, wire.encode(wire.ReportMsg(report=report), key)
                        )
                        await trio.sleep(0.001)  # libp2p's queues hold 32
                    async for received in gossip.receive:
                        if received.sender not in trusted:
                            continue  # only the configured relays' acks delete reports
                        msg = wire.decode(received.data, accepted)
                        if isinstance(msg, wire.AckMsg):
                            acked.update(i for i in msg.ids if i in wanted)
                            if acked >= wanted:
                                break
                await gossip.flush(0.5)
        return sorted(acked)
