"""Gossip between real libp2p peers, each in its own OS process, over loopback.

Every peer is ``tests/peers/gossip_peer.py``: :func:`mesh.gossip.open_gossip`
driven by JSON commands on its stdin, reporting JSON events on its stdout
(``ready`` with its id and address, ``peers`` whenever its peer set changes,
``received`` per message, ``exit`` with its counters). A test starts the
peers it needs, tells them what to do and waits for the events it expects,
each with a deadline: nothing here sleeps to wait for gossip. No mocks: Noise,
yamux, gossipsub and strict signing are the real ones.

Each process imports libp2p (~0.5 s), so these tests are marked slow.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "gossip_peer.py"
TOPIC = "/errmesh/test/reports/1"  # topics_for("test")[0], without importing libp2p here

STARTUP = 20.0  # import libp2p and listen, on a busy 2-core machine
DELIVERY = 5.0  # one message across loopback takes milliseconds

Event = dict[str, Any]


class Peer:
    """One peer process: send it commands, wait for its events."""

    def __init__(self, name: str, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.stderr_path = cwd / f"{name}.stderr"
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-W", "ignore", str(PEER_SCRIPT), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=cwd,
                env=env,
            )
        self.events: list[Event] = []  # everything it said, in order
        self._unclaimed: list[Event] = []
        self._incoming: queue.Queue[Event | None] = queue.Queue()
        self._ended = False
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()
        self.peer_id = ""
        self.addr = ""
        self.ready_at = 0.0

    def _read(self) -> None:
        """Parse stdout lines into events, stamped with the time we read them."""
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # not one of ours
                event["at"] = time.monotonic()
                self._incoming.put(event)
        except (OSError, ValueError):
            pass  # the pipe was closed under us: the peer is being stopped
        finally:
            self._incoming.put(None)

    def send(self, cmd: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()

    def expect(
        self, kind: str, within: float = DELIVERY, where: Callable[[Event], bool] = lambda e: True
    ) -> Event:
        """The first event of ``kind`` that satisfies ``where`` and no earlier call took.

        Waits up to ``within`` seconds for it; fails with what the peer said.
        """
        deadline = time.monotonic() + within
        while True:
            for event in self._unclaimed:
                if event["event"] == kind and where(event):
                    self._unclaimed.remove(event)
                    return event
            left = deadline - time.monotonic()
            if left <= 0 or self._ended:
                pytest.fail(f"{self.name}: no {kind!r} event within {within} s\n{self.story()}")
            try:
                event = self._incoming.get(timeout=left)
            except queue.Empty:
                continue
            if event is None:
                self._ended = True
            else:
                self.events.append(event)
                self._unclaimed.append(event)

    def story(self) -> str:
        """What the peer said and logged, for a failure message."""
        said = "\n".join(json.dumps({k: v for k, v in e.items() if k != "at"}) for e in self.events)
        logged = self.stderr_path.read_text(errors="replace")[-3000:]
        return f"--- {self.name} events:\n{said}\n--- {self.name} stderr (tail):\n{logged}"

    def ready(self) -> Peer:
        event = self.expect("ready", within=STARTUP)
        self.peer_id = event["peer_id"]
        (self.addr,) = event["addrs"]
        self.ready_at = event["at"]
        return self

    @property
    def port(self) -> int:
        return int(self.addr.split("/tcp/")[1].split("/")[0])

    def connected_to(self, *others: Peer, within: float = DELIVERY) -> Event:
        ids = {other.peer_id for other in others}
        return self.expect("peers", within, where=lambda e: ids <= set(e["peers"]))

    def status(self) -> Event:
        self.send("status")
        return self.expect("status")

    def publish_when_heard(self, *payloads: str) -> None:
        """Wait until some peer subscribes, then publish ``payloads`` in order."""
        self.send("wait_for_subscribers")
        assert self.expect("subscribers")["ok"], self.story()
        for payload in payloads:
            self.send("publish", data=payload)
        for _ in payloads:
            self.expect("published")

    def received(self, count: int, within: float = DELIVERY) -> list[Event]:
        return [self.expect("received", within) for _ in range(count)]

    def exit_code(self, within: float) -> int:
        return self.process.wait(timeout=within)

    def kill(self) -> None:
        """SIGKILL (no goodbye to anyone), then release the pipes."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass  # unflushed commands to a dead process


class Mesh:
    """Starts peer processes in a temporary folder; kills them all at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("LIBP2P_", "ERRMESH_"))
        }
        self.env.update(PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", HOME=str(root))
        self.peers: list[Peer] = []

    def launch(
        self,
        name: str,
        *,
        accept: str = "all",
        bootstrap: tuple[str, ...] = (),
        identity: Path | None = None,
        listen: str = "/ip4/127.0.0.1/tcp/0",
        stuck_after: float = 5.0,
    ) -> Peer:
        """Start a peer without waiting for it (call ``.ready()``)."""
        args = ["--accept", accept, "--listen", listen, "--stuck-after", str(stuck_after)]
        for addr in bootstrap:
            args += ["--bootstrap", addr]
        if identity is not None:
            args += ["--identity", str(identity)]
        peer = Peer(name, args, self.root, self.env)
        self.peers.append(peer)
        return peer

    def start(self, name: str, **options: Any) -> Peer:
        return self.launch(name, **options).ready()

    def kill_all(self) -> None:
        for peer in self.peers:
            peer.kill()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    peers = Mesh(tmp_path)
    try:
        yield peers
    finally:
        peers.kill_all()


def test_a_message_reaches_another_process_signed_by_its_publisher(mesh: Mesh) -> None:
    receiver = mesh.start("receiver")
    publisher = mesh.start("publisher", bootstrap=(receiver.addr,))
    assert publisher.peer_id != receiver.peer_id

    publisher.publish_when_heard("ok ValueError in parse()")

    (message,) = receiver.received(1)
    assert message["topic"] == TOPIC
    assert message["data"] == "ok ValueError in parse()"
    # Strict signing: the sender is the key that signed, i.e. the publisher.
    assert message["sender"] == publisher.peer_id


def test_a_message_crosses_the_hub_from_one_leaf_to_the_other(mesh: Mesh) -> None:
    hub = mesh.start("hub")
    left = mesh.launch("left", bootstrap=(hub.addr,))
    right = mesh.launch("right", bootstrap=(hub.addr,))
    left.ready()
    right.ready()
    hub.connected_to(left, right)

    left.publish_when_heard("ok from the left")

    (message,) = right.received(1)
    assert message["data"] == "ok from the left"
    assert message["sender"] == left.peer_id  # the hub forwarded; the signer is kept
    # The leaves never met: everything went through the hub.
    assert right.status()["peers"] == [hub.peer_id]
    assert left.status()["peers"] == [hub.peer_id]


def test_the_receivers_validator_decides_what_it_receives(mesh: Mesh) -> None:
    receiver = mesh.start("receiver", accept="ok")  # accepts only payloads starting with "ok"
    sender = mesh.start("sender", accept="all", bootstrap=(receiver.addr,))

    sender.publish_when_heard("ok 1", "bad 1", "ok 2", "nope", "bad 2", "ok last")

    received = [m["data"] for m in receiver.received(3)]
    assert received == ["ok 1", "ok 2", "ok last"]
    deadline = time.monotonic() + DELIVERY
    while (counters := receiver.status()["counters"])["rejected"] < 3:
        assert time.monotonic() < deadline, f"rejected: {counters}\n{receiver.story()}"
    assert counters["rejected"] == 3 and counters["received"] == 3
    assert sender.status()["counters"]["rejected"] == 0  # the sender let all of them out

    receiver.send("exit")
    assert receiver.expect("exit")["counters"]["rejected"] == 3
    everything = [e["data"] for e in receiver.events if e["event"] == "received"]
    assert everything == ["ok 1", "ok 2", "ok last"]  # nothing refused came in late


def test_a_publisher_cannot_get_out_what_its_own_validator_refuses(mesh: Mesh) -> None:
    receiver = mesh.start("receiver", accept="all")
    publisher = mesh.start("publisher", accept="ok", bootstrap=(receiver.addr,))

    publisher.publish_when_heard("bad first", "ok second")

    (message,) = receiver.received(1)
    assert message["data"] == "ok second"  # and "bad first", published before, never came
    assert publisher.status()["counters"]["rejected"] == 1  # refused at the source
    assert receiver.status()["counters"]["rejected"] == 0


def restart(mesh: Mesh, peer: Peer, identity: Path, name: str) -> Peer:
    """Start ``peer`` again with the same identity file on the same port."""
    again = mesh.start(name, identity=identity, listen=f"/ip4/127.0.0.1/tcp/{peer.port}")
    assert again.peer_id == peer.peer_id  # the same identity file, the same peer id
    assert again.addr == peer.addr  # ... on the same port: what the leaf bootstraps to
    return again


def test_a_leaf_reconnects_to_its_restarted_hub_and_messages_flow_again(
    mesh: Mesh, tmp_path: Path
) -> None:
    identity = tmp_path / "hub.key"
    hub = mesh.start("hub", identity=identity)
    leaf = mesh.start("leaf", bootstrap=(hub.addr,))
    leaf.connected_to(hub)
    leaf.publish_when_heard("ok before")
    assert hub.received(1)[0]["data"] == "ok before"

    hub.kill()
    killed_at = time.monotonic()
    leaf.expect("peers", where=lambda e: hub.peer_id not in e["peers"])
    again = restart(mesh, hub, identity, "hub-again")

    back = leaf.connected_to(again, within=10.0)
    since_ready = back["at"] - again.ready_at
    since_kill = back["at"] - killed_at
    print(
        f"reconnected {since_ready:.3f} s after the hub was back "
        f"({since_kill:.3f} s after it was killed)"
    )
    assert since_ready < 10.0, f"reconnect took {since_ready:.3f} s"

    again.publish_when_heard("ok after")
    (message,) = leaf.received(1)
    assert message["data"] == "ok after" and message["sender"] == hub.peer_id
    leaf.send("publish", data="ok from the leaf")
    again.expect("received", where=lambda e: e["data"] == "ok from the leaf")
    # The initial dial and the one after the restart; a dial is counted just
    # after the peer shows up in pubsub, so poll briefly.
    deadline = time.monotonic() + DELIVERY
    while leaf.status()["counters"]["reconnects"] < 2:
        assert time.monotonic() < deadline, leaf.story()


def test_a_restarted_hub_is_heard_even_if_it_published_much_before(
    mesh: Mesh, tmp_path: Path
) -> None:
    identity = tmp_path / "hub.key"
    hub = mesh.start("hub", identity=identity)
    leaf = mesh.start("leaf", bootstrap=(hub.addr,))
    hub.send("wait_for_subscribers")
    assert hub.expect("subscribers")["ok"]
    hub.send("publish", data="ok before", count=30, pace=0.001)  # seqnos T+1 .. T+30
    assert len(leaf.received(30)) == 30

    hub.kill()
    leaf.expect("peers", where=lambda e: hub.peer_id not in e["peers"])
    again = restart(mesh, hub, identity, "hub-again")  # a second or two later: seqnos T+3 ..
    leaf.connected_to(again, within=10.0)

    again.publish_when_heard("ok after")
    (message,) = leaf.received(1, within=3.0)
    assert message["data"] == "ok after"


def test_flush_then_exit_loses_nothing(mesh: Mesh) -> None:
    receiver = mesh.start("receiver")
    publisher = mesh.start("publisher", bootstrap=(receiver.addr,))
    publisher.send("wait_for_subscribers")
    assert publisher.expect("subscribers")["ok"]

    # One burst, then exit: publish() only enqueues (20 fit the 32-slot queue),
    # so without the flush only a few of them leave before the process ends.
    # (Paced even by 0.5 ms, the queue drains between publishes anyway.)
    publisher.send("publish", data="ok report", count=20)
    publisher.send("flush", within=2.0)
    publisher.send("exit")

    assert publisher.exit_code(within=10.0) == 0
    flushed = publisher.expect("flushed")
    assert flushed["ok"], f"flush did not empty the queues: {flushed}"
    print(f"flush took {flushed['seconds']:.4f} s")
    received = {m["data"] for m in receiver.received(20)}
    assert received == {f"ok report {i}" for i in range(20)}
    assert receiver.status()["counters"]["received"] == 20


def test_a_link_whose_queue_stops_draining_is_restarted(mesh: Mesh) -> None:
    """py-libp2p sometimes leaves a peer's outbound queue without a writer:
    everything to that peer is dropped while it still looks connected. The
    watchdog notices the full queue and gives the link a fresh stream."""
    receiver = mesh.start("receiver")
    publisher = mesh.start("publisher", bootstrap=(receiver.addr,), stuck_after=1.0)
    publisher.publish_when_heard("before")
    receiver.received(1)

    publisher.send(cmd="orphan_queues")
    publisher.expect("orphaned", DELIVERY)
    publisher.send(cmd="publish", data="lost", count=40, pace=0.005)
    publisher.expect("published", DELIVERY)

    # One message every 0.1 s for 6 s: those after the restart arrive.
    publisher.send(cmd="publish", data="after", count=60, pace=0.1)
    receiver.expect("received", 10.0, where=lambda e: e["data"].startswith("after"))
    publisher.expect("published", 10.0)
    assert publisher.status()["counters"]["stuck_links"] >= 1


_HOST_COMPARISON = """
import json, sys
from mesh.libp2p_host import import_libp2p, new_tcp_host

import_libp2p(lean=True)
loaded_anyway = [m for m in ("aioquic", "zeroconf", "httpx", "libp2p.security.tls.autotls.acme",
                       "libp2p.discovery.mdns.mdns", "libp2p.transport.websocket") if m in sys.modules]
import multiaddr
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.security.noise.transport import PROTOCOL_ID, Transport

def shape(host):
    swarm = host.get_network()
    return {
        "classes": [type(host).__name__, type(swarm).__name__],
        "transports": [type(t).__name__ for t in swarm.transport_manager._transports],
        "security": sorted(map(str, swarm.upgrader.security_multistream.transports)),
        "muxers": [str(p) for p in swarm.upgrader.muxer_multistream.transports],
        "resource_manager": type(swarm._resource_manager).__name__,
        "psk": swarm.psk, "mdns": host.mDNS is not None, "upnp": host.upnp is not None,
        "retry": repr(swarm.retry_config),
        "per_peer": swarm.connection_config.max_connections_per_peer,
    }

key = create_new_key_pair()
options = dict(
    key_pair=key,
    sec_opt={TProtocol(PROTOCOL_ID): Transport(key, noise_privkey=x25519().private_key)},
    listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
    connection_config=ConnectionConfig(max_connections_per_peer=1),
)
lean = shape(new_tcp_host(**options))
from libp2p import new_host  # runs the deferred libp2p/__init__.py now

print(json.dumps({"loaded_anyway": loaded_anyway, "lean": lean,
                  "full": shape(new_host(**options, enable_mDNS=False))}))
"""


def test_the_lean_import_builds_the_host_new_host_would() -> None:
    """A failing CLI skips most of py-libp2p (mesh.libp2p_host.import_libp2p): the host
    it builds by hand must stay the one ``new_host`` builds, whatever 0.8.x does."""
    done = subprocess.run(
        [sys.executable, "-c", _HOST_COMPARISON],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "lean libp2p import failed" not in done.stderr
    result = json.loads(done.stdout)
    assert result["loaded_anyway"] == []
    assert result["lean"] == result["full"]
    assert result["lean"]["transports"] == ["TCP"]
