"""``errmesh relay``: the process around the relay (``node.relay.MeshPeer``).

It listens for the mesh (bootstrap address for others), keeps its libp2p
identity next to its spool (a restarted relay keeps its peer id), drains the
machine's spool (nudged by failing CLIs over a Unix datagram socket), acks
what it stores, takes part in the election when it has a sink, and writes
its status to ``relay-status.json`` for ``errmesh status``. Its status server
(``status_listen``) answers the routes of :func:`status_routes`: ``/status``,
``/metrics`` (``node.metrics``), ``/healthz`` (``node.healthz``); under systemd
it says when it is ready (``node.sdnotify``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from mesh.gossip import Gossip
from node.compose import open_relay
from node.config import Config
from node.dashboard import dashboard_response
from node.errors import RelayRunning
from node.handover import socket_address
from node.logformat import configure_logging
from node.relay import MeshPeer
from node.sdnotify import Notifier

__all__ = [
    "Handler",
    "Reply",
    "hold_state_dir",
    "run_relay",
    "serve_relay",
    "status_routes",
    "task_dump",
]


async def _listen_for_nudges(path: os.PathLike[str] | str, peer: MeshPeer) -> None:
    """Each datagram on the relay socket means "the spool has something new"."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    try:
        address, fd = socket_address(path)
        try:
            await sock.bind(address)
        finally:
            if fd is not None:
                os.close(fd)
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


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer of the status server."""

    status: str
    content_type: str
    body: bytes


#: A route's handler: no arguments (it closes over its relay), one reply.
Handler = Callable[[], Awaitable[Reply]]
NOT_FOUND = Reply("404 Not Found", "text/plain", b"not found\n")


def status_routes(peer: MeshPeer, config: Config) -> dict[str, Handler]:
    """The status server's routes (exact paths; a query string is ignored).

    A new page is one more entry here, with its handler in its own module.
    """
    from node.healthz import StoreProbe, health
    from node.metrics import CONTENT_TYPE, relay_registry, scrape

    registry = relay_registry(peer)  # the relay process's own: tests run several
    probe = StoreProbe(config.cluster_state_dir)

    async def status() -> Reply:
        return Reply("200 OK", "application/json", json.dumps(peer.status(), indent=1).encode())

    async def metrics() -> Reply:
        return Reply("200 OK", CONTENT_TYPE, scrape(registry))

    async def healthz() -> Reply:
        answer = await health(peer, probe)
        return Reply(answer.status, "application/json", answer.body())

    async def tasks() -> Reply:
        return Reply("200 OK", "text/plain", task_dump().encode())

    def dashboard(path: str) -> Handler:  # the operator's page (node/dashboard.py)
        async def page() -> Reply:
            return Reply(*dashboard_response(path, peer))

        return page

    pages = ("/dashboard", "/dashboard/", "/dashboard.json", "/dashboard/fragment")
    return {
        **{path: dashboard(path) for path in pages},
        "/": status,
        "/status": status,
        "/metrics": metrics,
        "/healthz": healthz,
        "/debug/tasks": tasks,
    }


async def _read_path(stream: trio.SocketStream) -> str | None:
    """The request line's path, without its query; None when the client went away."""
    request = b""
    while b"\r\n\r\n" not in request and len(request) < 8192:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        request += chunk
    words = request.split(b"\r\n", 1)[0].split()
    path = words[1].decode("latin-1") if len(words) >= 2 else "/"
    return path.split("?", 1)[0]


async def _serve_status_connection(stream: trio.SocketStream, routes: dict[str, Handler]) -> None:
    """One HTTP/1.1 request, answered by its route (404 without one), then closed."""
    try:
        with trio.move_on_after(5):
            path = await _read_path(stream)
            if path is None:
                return
            handler = routes.get(path)
            reply = await handler() if handler is not None else NOT_FOUND
            head = (
                f"HTTP/1.1 {reply.status}\r\nContent-Type: {reply.content_type}\r\n"
                f"Content-Length: {len(reply.body)}\r\nConnection: close\r\n\r\n"
            )
            await stream.send_all(head.encode() + reply.body)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await stream.aclose()


def _one_line(peer: MeshPeer) -> str:
    """The relay in the line ``systemctl status`` shows (no store query)."""
    election = peer.election
    leader = "me" if election.role == "leader" else (election.leader or "none")
    peers = len(peer.gossip.peers())
    return f"{election.role} in term {election.term}, leader {leader}, {peers} peers"


def _url_host(host: str) -> str:
    """How a local client reaches a server bound to ``host`` (a wildcard: loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


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
    notifier = Notifier()
    try:
        async with open_relay(config) as peer, trio.open_nursery() as nursery:
            routes = status_routes(peer, config)
            host, port = config.status_address
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, host=host),
                lambda stream: _serve_status_connection(stream, routes),
                port,
            )
            port = listeners[0].socket.getsockname()[1]
            peer.status_url = f"http://{_url_host(host)}:{port}/status"
            await nursery.start(peer.run)
            nursery.start_soon(_listen_for_nudges, config.relay_socket, peer)
            # What exists now (~100k objects: libp2p's modules, the host)
            # lives as long as the relay: keep it out of the collector's
            # full passes, each of which stalls the loop ~50 ms or more.
            gc.collect()
            gc.freeze()
            announce(peer.gossip, peer.status_url)
            notifier.ready(f"relay {peer.gossip.peer_id} on {', '.join(peer.gossip.addrs)}")
            nursery.start_soon(notifier.keep_alive)
            nursery.start_soon(notifier.stop_on_sigterm)
            nursery.start_soon(notifier.describe, functools.partial(_one_line, peer))
    finally:
        notifier.stopping()


def run_relay(config: Config) -> None:
    """Blocking entry point for the CLI: prints the addresses, runs until killed."""

    def announce(gossip: Gossip, status_url: str) -> None:
        print(f"errmesh relay {gossip.peer_id}", flush=True)
        for addr in gossip.addrs:
            print(f"listening on {addr}", flush=True)
        print(f"status on {status_url}", flush=True)

    configure_logging(config.log_level, config.log_format, sys.stderr)
    try:
        trio.run(lambda: serve_relay(config, announce=announce))
    except KeyboardInterrupt:
        sys.exit(130)
