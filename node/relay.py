"""``errmesh relay``: the long-running durable peer.

It listens for the mesh (bootstrap address for others), keeps its libp2p
identity next to its spool (a restarted relay keeps its peer id), drains the
machine's spool (nudged by failing CLIs over a Unix datagram socket), acks
what it stores, takes part in the election when it has a sink, and writes
its status to ``relay-status.json`` for ``errmesh status``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from github_sink.sink import Replica
from mesh.gossip import Gossip, GossipConfig, open_gossip, topics_for
from node.admission import RejectionCounter, make_validator
from node.compose import make_replica, make_sink, open_store
from node.config import Config
from node.errors import RelayRunning
from node.peer import MeshPeer, PeerOptions

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


def task_dump() -> str:
    """Every trio task and where it waits: for a relay that seems stuck.

    A task parked in ``await`` has no thread stack for a profiler to show;
    its await frames say what it waits for.
    """
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        lines.append(f"{'  ' * depth}{task.name}")
        for frame, lineno in task.iter_await_frames():
            code = frame.f_code
            lines.append(f"{'  ' * depth}  {code.co_filename}:{lineno} {code.co_name}")
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)
    return "\n".join(lines) + "\n"


async def _serve_status_connection(stream: trio.SocketStream, peer: MeshPeer) -> None:
    """GET /status (JSON) or /metrics (Prometheus) on localhost; anything else 404."""
    try:
        with trio.move_on_after(5):
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 8192:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            words = request.split(b"\r\n", 1)[0].split()
            path = words[1].decode("latin-1") if len(words) >= 2 else "/"
            status, ctype, body = "200 OK", "application/json", b""
            if path.startswith("/metrics"):
                ctype = "text/plain; version=0.0.4"
                body = metrics_text(peer.status()).encode()
            elif path.startswith("/debug/tasks"):
                ctype = "text/plain"
                body = task_dump().encode()
            elif path in ("/", "/status"):
                body = json.dumps(peer.status(), indent=1).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            await stream.send_all(head.encode() + body)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await stream.aclose()


@contextlib.contextmanager
def hold_state_dir(directory: Path) -> Iterator[None]:
    """Be the only relay on ``directory``, for as long as the block runs.

    Two relays on one state directory share its identity (one peer id on
    two hosts) and its spool, and both lead. ``flock`` on ``relay.lock``
    (holding our pid, for the other's message) is released by the kernel
    when the process dies, even by SIGKILL: no stale lock to clean up.
    Raises ``RelayRunning`` naming the holder's pid, ``OSError`` when the
    directory is unusable.
    """
    import fcntl

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / "relay.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise RelayRunning(str(directory), holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


async def serve_relay(config: Config, *, announce: Callable[[Gossip, str], None]) -> None:
    """Run a relay until cancelled. Raises ``ConfigError`` for bad settings,
    ``RelayRunning`` beside another relay on the same state directory."""
    with hold_state_dir(config.cluster_state_dir):
        await _serve_relay(config, announce=announce)


async def _serve_relay(config: Config, *, announce: Callable[[Gossip, str], None]) -> None:
    key = config.cluster_key()
    sink = make_sink(config) if config.eligible else None
    replica = sink if isinstance(sink, Replica) else make_replica(config)
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
        library_logs=config.log_level == "debug",
    )
    with open_store(config) as store:
        async with open_gossip(gossip_config, validator) as gossip:
            handle.append(gossip)
            peer = MeshPeer(
                store=store,
                gossip=gossip,
                sink=sink,
                replica=replica,
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
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, host="127.0.0.1"),
                    lambda stream: _serve_status_connection(stream, peer),
                    config.status_port,
                )
                port = listeners[0].socket.getsockname()[1]
                peer.status_url = f"http://127.0.0.1:{port}/status"
                await nursery.start(peer.run)
                nursery.start_soon(_listen_for_nudges, config.relay_socket, peer)
                # What exists now (~100k objects: libp2p's modules, the host)
                # lives as long as the relay: keep it out of the collector's
                # full passes, each of which stalls the loop ~50 ms or more.
                gc.collect()
                gc.freeze()
                announce(gossip, peer.status_url)


def run_relay(config: Config) -> None:
    """Blocking entry point for the CLI: prints the addresses, runs until killed."""

    def announce(gossip: Gossip, status_url: str) -> None:
        print(f"errmesh relay {gossip.peer_id}", flush=True)
        for addr in gossip.addrs:
            print(f"listening on {addr}", flush=True)
        print(f"status on {status_url}", flush=True)

    import logging

    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        trio.run(lambda: serve_relay(config, announce=announce))
    except KeyboardInterrupt:
        sys.exit(130)
