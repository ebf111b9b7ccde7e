"""``errmesh relay``: the long-running durable peer.

It listens for the mesh (bootstrap address for others), keeps its libp2p
identity next to its spool (a restarted relay keeps its peer id), drains the
machine's spool (nudged by failing CLIs over a Unix datagram socket), acks
what it stores, takes part in the election when it has a sink, and writes
its status to ``relay-status.json`` for ``errmesh status``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

import trio

from mesh.gossip import Gossip, GossipConfig, open_gossip, topics_for
from node.config import Config
from node.peer import MeshPeer, PeerOptions, RejectionCounter, make_validator
from node.pipeline import make_sink, open_store

__all__ = ["run_relay", "serve_relay"]


async def _listen_for_nudges(path: os.PathLike[str] | str, peer: MeshPeer) -> None:
    """Each datagram on the relay socket means "the spool has something new"."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    try:
        await sock.bind(os.fspath(path))
        while True:
            await sock.recv(64)
            peer.nudged.set()
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def serve_relay(config: Config, *, announce: Callable[[Gossip], None]) -> None:
    """Run a relay until cancelled. Raises ``ConfigError`` for bad settings."""
    key = config.cluster_key()
    sink = make_sink(config) if config.eligible else None
    reports_topic, control_topic = topics_for(config.cluster)
    rejections = RejectionCounter()
    handle: list[Gossip] = []
    validator = make_validator(
        key, rejections, on_ban=lambda p: handle[0].ban(p) if handle else None
    )
    gossip_config = GossipConfig(
        topics=(reports_topic, control_topic),
        listen=config.listen,
        bootstrap=config.peers,
        identity_path=config.cluster_state_dir / "identity.key",
    )
    with open_store(config) as store:
        async with open_gossip(gossip_config, validator) as gossip:
            handle.append(gossip)
            peer = MeshPeer(
                store=store,
                gossip=gossip,
                sink=sink,
                rejections=rejections,
                options=PeerOptions(
                    reports_topic=reports_topic,
                    control_topic=control_topic,
                    key=key,
                    eligible=config.eligible,
                    priority=config.priority,
                    heartbeat=config.heartbeat,
                    status_path=config.cluster_state_dir / "relay-status.json",
                ),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(peer.run)
                nursery.start_soon(_listen_for_nudges, config.relay_socket, peer)
                announce(gossip)


def run_relay(config: Config) -> None:
    """Blocking entry point for the CLI: prints the addresses, runs until killed."""

    def announce(gossip: Gossip) -> None:
        print(f"errmesh relay {gossip.peer_id}", flush=True)
        for addr in gossip.addrs:
            print(f"listening on {addr}", flush=True)

    try:
        trio.run(lambda: serve_relay(config, announce=announce))
    except KeyboardInterrupt:
        sys.exit(130)
