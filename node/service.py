"""``errmesh relay``: the process around the relay (``node.relay.MeshPeer``).

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

import trio

from mesh.gossip import Gossip
from node.compose import open_relay
from node.config import Config
from node.dashboard import dashboard_response
from node.errors import RelayRunning
from node.relay import MeshPeer
from node.relay_status import metrics_text

__all__ = ["hold_state_dir", "metrics_text", "run_relay", "serve_relay", "task_dump"]


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
            elif path.startswith("/dashboard"):  # the operator's page (node/dashboard.py)
                status, ctype, body = dashboard_response(path, peer)
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
    async with open_relay(config) as peer, trio.open_nursery() as nursery:
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
        announce(peer.gossip, peer.status_url)


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
