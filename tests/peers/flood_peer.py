"""An attacker without the cluster key that floods a relay, for tests/test_admission_flood.py.

Every frame is junk (no valid MAC) signed by a **fresh libp2p identity**, so
banning signers alone would never stop it; it is delivered over this
process's connection, whose own identity is fresh too whenever the relay
drops it: the attacker reconnects under a new peer id, as a determined one
would. Its connections come from ``--source`` (a loopback address other than
127.0.0.1, so the relay can tell it from the honest processes of the test).

Run as ``python flood_peer.py --cluster C --target MADDR --source 127.0.0.2
--frames N --within S`` with the repository on ``PYTHONPATH``. It prints one
JSON line at the end: ``sent`` (frames pushed while it had a connection),
``identities`` (connection identities used), ``joined`` (how many of them got
a connection with the cluster's topics), ``refused`` (identities that got
none).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import trio
import trio.lowlevel

from mesh.gossip import GossipConfig, open_gossip, topics_for


def _from_source(source: str) -> None:
    """Make py-libp2p's TCP dials leave from ``source`` (trio's ``local_address``)."""
    trio.open_tcp_stream = functools.partial(trio.open_tcp_stream, local_address=source)  # type: ignore[assignment]


def _frame(topic: str, data: bytes) -> object:
    """A pubsub message signed by a brand-new identity (strict signing passes)."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

    pair = create_new_key_pair()
    msg = rpc_pb2.Message(
        data=data,
        topicIDs=[topic],
        from_id=ID.from_pubkey(pair.public_key).to_bytes(),
        seqno=time.time_ns().to_bytes(8, "big"),
    )
    msg.signature = pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = pair.public_key.serialize()
    return msg


async def _one_identity(args: argparse.Namespace, budget: dict[str, int], deadline: float) -> bool:
    """Connect under a fresh identity and flood until dropped; True if it got in."""
    reports, control = topics_for(args.cluster)
    config = GossipConfig(
        topics=(reports, control),
        listen=(f"/ip4/{args.source}/tcp/0",),
        bootstrap=(args.target,),
        reconnect_max=0.5,
    )
    async with open_gossip(config, lambda topic, signer, via, data: True) as gossip:
        if not await gossip.wait_for_subscribers(reports, 3.0):
            return False
        pubsub = gossip._pubsub
        while budget["left"] > 0 and time.monotonic() < deadline and gossip.peers():
            await pubsub.push_msg(pubsub.my_id, _frame(reports, os.urandom(64)))
            budget["left"] -= 1
            budget["sent"] += 1
            await trio.lowlevel.checkpoint()
        return True


async def main(args: argparse.Namespace) -> None:
    _from_source(args.source)
    budget = {"left": args.frames, "sent": 0}
    deadline = time.monotonic() + args.within
    identities = joined = refused = 0
    while budget["left"] > 0 and time.monotonic() < deadline:
        identities += 1
        if await _one_identity(args, budget, deadline):
            joined += 1
        else:
            refused += 1
    print(
        json.dumps(
            {"sent": budget["sent"], "identities": identities, "joined": joined, "refused": refused}
        ),
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--within", type=float, default=20.0)
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_args())
