"""A real errmesh relay that says when messages arrive, driven by JSON lines.

Run by the mesh benchmarks as ``python _timed_relay.py --cluster C
--state-dir S --data-dir D --issues-dir I --key-file K [--bootstrap MADDR]...``
(other settings from ``ERRMESH_*`` as usual). It runs
:func:`node.service.serve_relay` unchanged, with ``node.relay.MeshPeer`` replaced by
:class:`TimedPeer`, a subclass that only observes: it stamps each report's
arrival with ``time.time()`` as :meth:`MeshPeer.accept` routes it (after
gossipsub's validator and the decode) and counts messages by kind, received
and published. Everything else (store, acks, election, digests, drain) is
the product's own code.

stdout: one JSON object per line with an ``"event"`` key:

- ``ready``: ``peer_id``, ``addrs``;
- ``recv``: ``o`` (origin hex), ``s`` (seq), ``t`` (arrival, ``time.time()``)
  per report received;
- ``published``: ``sent`` ([origin hex, seq, publish time] per report);
- ``stats``: peers, role, counters, totals, CPU seconds, RSS.

``--profile PATH`` runs it under cProfile and writes the stats to PATH when
it exits (the ``exit`` command), for finding where a relay spends its CPU.

stdin commands (``"cmd"``): ``publish`` (``n`` reports, ``pace`` seconds
apart, signature ``sig`` text), ``stats``, ``exit``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import trio

import node.relay
import node.service
from mesh import wire
from node.config import load_config
from node.relay import MeshPeer

PEERS: list[TimedPeer] = []


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class TimedPeer(MeshPeer):
    """``MeshPeer`` that logs report arrivals and counts messages by kind."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.received: collections.Counter[str] = collections.Counter()
        self.records: collections.Counter[str] = collections.Counter()
        self.published: collections.Counter[str] = collections.Counter()
        PEERS.append(self)

    def accept(self, msg: wire.Message, sender: str, lag: float = 0.0) -> None:
        kind = type(msg).__name__
        if isinstance(msg, wire.ReportMsg):
            emit("recv", o=msg.report.origin.hex(), s=msg.report.seq, t=time.time())
        self.received[kind] += 1
        if isinstance(msg, wire.OccMsg):
            self.records[kind] += len(msg.occurrences)
        super().accept(msg, sender, lag)

    async def _publish(self, topic: str, msg: wire.Message, *, bulk: bool = False) -> None:
        self.published[type(msg).__name__] += 1
        await super()._publish(topic, msg, bulk=bulk)


@functools.cache
def _template() -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report_bytes import synthetic_report

    return synthetic_report(random.Random(7))


async def publish(peer: TimedPeer, n: int, pace: float, sig: str) -> None:
    """Spool, merge and publish ``n`` reports (as the drain does); log publish times."""
    template = _template()
    signature = hashlib.sha256(sig.encode()).digest()[:16]
    sent = []
    for _ in range(n):
        report = template.replace(signature=signature, timestamp=time.time())
        stamped = peer.store.spool(report)
        # As MeshPeer.drain does, digest cache included: merging behind its
        # back left this relay's digests claiming the old count, and every
        # relay answered each of them (the 5-s spikes of earlier runs).
        peer._note(*peer.store.merge_reports([stamped]))
        t = time.time()
        await peer._publish(peer.options.reports_topic, wire.ReportMsg(report=stamped, ack=False))
        sent.append([stamped.origin.hex(), stamped.seq, t])
        if pace:
            await trio.sleep(pace)
    emit("published", sent=sent)


#: Event-loop stalls seen by :func:`watch_stalls`: (wall time it began, seconds).
STALLS: collections.deque[tuple[float, float]] = collections.deque(maxlen=200)


async def watch_stalls(tick: float = 0.01, over: float = 0.05) -> None:
    """Note every time this process's trio loop woke ``over`` s later than asked.

    A stalled loop neither receives nor forwards: the propagation bench
    matches its slowest reports against these.
    """
    while True:
        asked = trio.current_time() + tick
        await trio.sleep(tick)
        late = trio.current_time() - asked
        if late > over:
            STALLS.append((time.time() - late, late))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stats(peer: TimedPeer) -> None:
    counters = peer.gossip.counters
    emit(
        "stats",
        peers=peer.gossip.peers(),
        role=peer.election.role,
        leader=peer.election.leader,
        received=dict(peer.received),
        records=dict(peer.records),
        published=dict(peer.published),
        gossip={
            "received": counters.received,
            "rejected": counters.rejected,
            "dropped_local": counters.dropped_local,
            "reconnects": counters.reconnects,
            "bulk_waits": counters.bulk_waits,
        },
        lag_max_ms={k: round(v * 1000, 1) for k, v in peer.lags.max.items()},
        peer_stats=dict(peer.stats),
        stalls=list(STALLS),
        cpu=_cpu(),
        rss_kb=_rss_kb(),
        pid=os.getpid(),
    )


async def commands(peer: TimedPeer) -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stream:
        while chunk := await stream.receive_some():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                cmd = json.loads(line)
                name = cmd["cmd"]
                if name == "exit":
                    return
                if name == "publish":
                    await publish(peer, cmd["n"], cmd.get("pace", 0.0), cmd["sig"])
                elif name == "stats":
                    stats(peer)
                else:
                    raise ValueError(f"unknown command {name!r}")


async def main(args: argparse.Namespace) -> None:
    flags: dict[str, object] = {
        "cluster": args.cluster,
        "state_dir": args.state_dir,
        "data_dir": args.data_dir,
        "issues_dir": args.issues_dir,
        "key_file": args.key_file,
        "listen": ("/ip4/127.0.0.1/tcp/0",),
    }
    if args.bootstrap:
        flags["peers"] = tuple(args.bootstrap)
    config = load_config(flags)
    node.relay.MeshPeer = TimedPeer  # type: ignore[misc]  # node.compose.open_relay builds it
    ready = trio.Event()

    def announce(gossip: Any, *_: Any) -> None:  # newer relays also pass the status URL
        emit("ready", peer_id=gossip.peer_id, addrs=gossip.addrs)
        ready.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: node.service.serve_relay(config, announce=announce))
        await ready.wait()
        nursery.start_soon(watch_stalls)
        await commands(PEERS[0])
        nursery.cancel_scope.cancel()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cluster", required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--issues-dir", type=Path, required=True)
    p.add_argument("--key-file", type=Path, required=True)
    p.add_argument("--bootstrap", action="append", default=[])
    p.add_argument("--profile", type=Path, help="write cProfile stats here on exit")
    return p.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.profile is None:
        trio.run(main, arguments)
    else:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            trio.run(main, arguments)
        finally:
            profiler.disable()
            profiler.dump_stats(arguments.profile)
