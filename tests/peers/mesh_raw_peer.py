"""A mesh peer that publishes whatever bytes it is told to, for tests/test_mesh.py.

It joins an errmesh cluster through :func:`mesh.gossip.open_gossip` like any
peer, but with an accept-all validator and no errmesh logic at all: the test
builds every frame itself (valid, malformed, oversized, replayed, forged) and
this process only signs it as its own libp2p peer and publishes it. That is
what a peer holding the cluster key, but misbehaving, can do.

Run as ``python mesh_raw_peer.py --cluster C --bootstrap MADDR [--key-file K]``
with the repository on ``PYTHONPATH`` (``--key-file``: inside the cluster's
private network, as a key holder is). One JSON object per line:

stdout (events), each with an ``"event"`` key:

- ``ready``: ``peer_id`` and ``addrs`` (full multiaddrs), once listening;
- ``joined``: ``ok``, ``subscribers`` (per topic), once some peer subscribes
  to both cluster topics (or at the deadline, with ``ok`` false);
- ``published``: ``count`` and ``flushed``, after a ``publish`` command;
- ``status``: ``peers``, ``counters``, after a ``status`` command;
- ``synced``: ``frames`` (hex strings: what the peer answered, its end
  marker left out), ``ended`` (whether it sent the end marker) and
  ``error`` (why the stream broke, or ""), after a ``sync`` command.

stdin (commands), each with a ``"cmd"`` key:

- ``publish``: ``topic`` (``reports`` or ``control``), ``frames`` (hex
  strings), optional ``pace`` (seconds between frames, default 0.05);
- ``status``;
- ``sync``: ``peer`` (an id), ``raw`` (hex: bytes written as they are, the
  length prefixes included) or ``frames`` (hex: each written after its
  length, then the end marker): a ``node.sync_stream`` pull, done by hand;
- ``exit`` (end of input exits too, so the peer never outlives its test).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import trio

from mesh.gossip import Gossip, GossipConfig, open_gossip, topics_for


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


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


async def drain_received(gossip: Gossip) -> None:
    """Read (and forget) what the mesh sends us, so our channel never fills."""
    async for _ in gossip.receive:
        pass


async def run_commands(gossip: Gossip, topics: dict[str, str]) -> None:
    async for line in stdin_lines():
        command = json.loads(line)
        name = command["cmd"]
        if name == "exit":
            return
        if name == "publish":
            topic = topics[command["topic"]]
            pace = float(command.get("pace", 0.05))
            frames = [bytes.fromhex(f) for f in command["frames"]]
            for frame in frames:
                await gossip.publish(topic, frame)
                await trio.sleep(pace)
            flushed = await gossip.flush(2.0)
            emit("published", count=len(frames), flushed=flushed)
        elif name == "sync":
            await sync(gossip, command)
        elif name == "status":
            emit("status", peers=gossip.peers(), counters=dataclasses.asdict(gossip.counters))
        else:
            raise ValueError(f"unknown command {name!r}")


async def sync(gossip: Gossip, command: dict[str, Any]) -> None:
    """Open a sync stream, write what the test built, read what comes back."""
    from node.sync_stream import SyncAborted, protocol_of, read_frame, write_frame

    frames: list[str] = []
    ended, error = False, ""
    try:
        with trio.fail_after(10):
            control = topics_for(command["cluster"])[1]
            stream = await gossip.open_stream(command["peer"], protocol_of(control))
            if "raw" in command:
                await stream.write(bytes.fromhex(command["raw"]))
            else:
                for frame in command["frames"]:
                    await write_frame(stream, bytes.fromhex(frame))
                await write_frame(stream, b"")
            while frame_bytes := await read_frame(stream):
                frames.append(frame_bytes.hex())
            ended = True
    except (SyncAborted, Exception) as exc:  # what broke the stream is the answer
        error = f"{type(exc).__name__}: {exc}"
    emit("synced", frames=frames, ended=ended, error=error)


async def main(args: argparse.Namespace) -> None:
    reports, control = topics_for(args.cluster)
    keys: tuple[bytes, ...] = ()
    if args.key_file:  # inside the private network: a key holder, misbehaving
        from pathlib import Path

        from node.config import Config

        config = Config(key_file=Path(args.key_file))
        keys = config.network_keys(config.cluster_keys())
    config = GossipConfig(
        topics=(reports, control),
        listen=("/ip4/127.0.0.1/tcp/0",),
        bootstrap=tuple(args.bootstrap),
        network_keys=keys,
    )
    async with open_gossip(config, lambda topic, sender, via, data: True) as gossip:
        emit("ready", peer_id=gossip.peer_id, addrs=gossip.addrs)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_received, gossip)
            ok = True
            for topic in (reports, control):
                ok = await gossip.wait_for_subscribers(topic, args.join_within) and ok
            emit(
                "joined",
                ok=ok,
                subscribers={t: gossip.subscribers(t) for t in (reports, control)},
            )
            await run_commands(gossip, {"reports": reports, "control": control})
            nursery.cancel_scope.cancel()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--join-within", type=float, default=20.0)
    parser.add_argument("--key-file", help="the cluster key: join its private network")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_args())
