"""One errmesh gossip peer in its own process, driven by JSON lines.

Run by tests/test_gossip.py as ``python gossip_peer.py [options]`` with the
repository on ``PYTHONPATH``. It joins the mesh through
:func:`mesh.gossip.open_gossip` and speaks one JSON object per line:

stdout (events), each with an ``"event"`` key:

- ``ready``: ``peer_id`` and ``addrs`` (full multiaddrs), once listening;
- ``peers``: ``peers``, whenever the set of pubsub peers changes;
- ``received``: ``topic``, ``sender``, ``data`` (text) per delivered message;
- ``published``: ``count``, after a ``publish`` command;
- ``subscribers``: ``ok``, ``peers``, after a ``wait_for_subscribers`` command;
- ``flushed``: ``ok``, ``seconds``, after a ``flush`` command;
- ``status``: ``peers``, ``counters``, after a ``status`` command;
- ``exit``: ``counters``, last, before the peer leaves the mesh.

stdin (commands), each with a ``"cmd"`` key:

- ``publish``: ``data`` (text), optional ``count`` (``data`` gets `` <i>``
  appended when ``count`` is given) and ``pace`` (seconds between messages);
- ``wait_for_subscribers``: optional ``within`` (seconds);
- ``flush``: optional ``within`` (seconds);
- ``status``;
- ``exit`` (end of input exits too, so a peer never outlives its test).

Commands run one after the other, in order.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from mesh.gossip import Gossip, GossipConfig, Validator, open_gossip, topics_for

TOPIC = topics_for("test")[0]

VALIDATORS: dict[str, Validator] = {
    "all": lambda topic, sender, via, data: True,
    "ok": lambda topic, sender, via, data: data.startswith(b"ok"),
}


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def counters(gossip: Gossip) -> dict[str, Any]:
    return dataclasses.asdict(gossip.counters)


async def stdin_lines() -> AsyncIterator[bytes]:
    """Lines of standard input, without blocking the trio loop."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stream:
        while chunk := await stream.receive_some():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield line


async def run_commands(gossip: Gossip) -> None:
    async for line in stdin_lines():
        command = json.loads(line)
        name = command["cmd"]
        if name == "exit":
            return
        if name == "publish":
            count = command.get("count")
            pace = command.get("pace", 0.0)
            for i in range(count or 1):
                data = command["data"] if count is None else f"{command['data']} {i}"
                await gossip.publish(command.get("topic", TOPIC), data.encode())
                if pace:
                    await trio.sleep(pace)
            emit("published", count=count or 1)
        elif name == "wait_for_subscribers":
            topic = command.get("topic", TOPIC)
            ok = await gossip.wait_for_subscribers(topic, command.get("within", 5.0))
            emit("subscribers", ok=ok, peers=gossip.subscribers(topic))
        elif name == "flush":
            started = time.monotonic()
            ok = await gossip.flush(command.get("within", 1.0))
            emit("flushed", ok=ok, seconds=round(time.monotonic() - started, 4))
        elif name == "orphan_queues":
            # py-libp2p's failure mode under load, reproduced: each peer's
            # outbound queue replaced by one that no writer task serves.
            from libp2p.pubsub.rpc_queue import RpcQueue

            pubsub = gossip._pubsub
            for peer in list(pubsub.peer_queues):
                pubsub.peer_queues[peer] = RpcQueue()
            emit("orphaned", peers=len(pubsub.peer_queues))
        elif name == "status":
            emit("status", peers=gossip.peers(), counters=counters(gossip))
        else:
            raise ValueError(f"unknown command {name!r}")


async def report_received(gossip: Gossip) -> None:
    async for message in gossip.receive:
        emit(
            "received",
            topic=message.topic,
            sender=message.sender,
            data=message.data.decode("utf-8", "backslashreplace"),
        )


async def report_peers(gossip: Gossip) -> None:
    """Announce every change of the peer set (libp2p has no event for it)."""
    last: list[str] = []
    while True:
        now = gossip.peers()
        if now != last:
            emit("peers", peers=now)
            last = now
        await trio.sleep(0.01)


async def main(args: argparse.Namespace) -> None:
    config = GossipConfig(
        topics=topics_for("test"),
        listen=(args.listen,),
        bootstrap=tuple(args.bootstrap),
        identity_path=args.identity,
        stuck_after=args.stuck_after,
    )
    async with open_gossip(config, VALIDATORS[args.accept]) as gossip:
        emit("ready", peer_id=gossip.peer_id, addrs=gossip.addrs)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report_received, gossip)
            nursery.start_soon(report_peers, gossip)
            await run_commands(gossip)
            emit("exit", counters=counters(gossip))
            nursery.cancel_scope.cancel()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--identity", type=Path, default=None)
    parser.add_argument("--stuck-after", type=float, default=5.0)
    parser.add_argument("--accept", choices=sorted(VALIDATORS), default="all")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_args())
