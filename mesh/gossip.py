"""The libp2p edge: one small interface over py-libp2p 0.8.1's host and gossipsub.

Everything else in errmesh talks to :class:`Gossip` (publish, a trio receive
channel of :class:`Received` messages, peers, connect, flush), never to
libp2p, so the pure core and most tests never import it (``import libp2p``
costs ~0.5 s and ~80 MB). This module is imported only by processes that
join the mesh.

What it fixes in py-libp2p's defaults (see ../shared/notes/py-libp2p.md):

- security: Noise only (the default host also accepts ``/plaintext/2.0.0``);
- dials: ``max_connections_per_peer=1`` (else every dial waits >= 250 ms);
- gossipsub 1.1 and 1.0 only (1.2's IDONTWANT doubles queue use), heartbeat
  1 s (default 120 s), no spam limiter (it drops our own publishes beyond
  10/s) and no adaptive gossip (it stretches the heartbeat to 30 s);
- strict signing: a message's ``from`` is its signer, so the sender of every
  :class:`Received` is authenticated;
- start order: the pubsub services run before the host listens;
- reconnection: our own loop with backoff that clears the swarm's negative
  dial cache (the library's gives up after 3 failures);
- exit: ``publish`` only enqueues, so :meth:`Gossip.flush` waits until every
  per-peer outbound queue is empty.

Validation runs inside gossipsub (a topic validator): a message the
``validator`` refuses is neither delivered nor forwarded.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from mesh.errors import ListenError
from mesh.gate import BanGate
from mesh.libp2p_host import (
    TCP_PROTOCOLS,
    GateNotifee,
    build_host,
    check_listening,
    deny_ip,
    import_libp2p,
    keep_rpcs_with_stale_peer_records,
    listen_exclusively,
    remote_ip,
    route_library_logs,
)
from mesh.links import drop_stuck_links, keep_connected
from mesh.pnet import protect_swarm
from mesh.scoring import Verdict, install, score_params

__all__ = [
    "Gossip",
    "GossipConfig",
    "GossipCounters",
    "Received",
    "Validator",
    "open_gossip",
    "topics_for",
]

log = logging.getLogger("errmesh.gossip")

#: Seconds ``Gossip.addrs`` reuses its formatted list.
ADDRS_TTL = 10.0


#: (topic, signer peer id, forwarder peer id, payload) -> accept? The forwarder
#: is the direct connection that delivered the message (the signer when it
#: published it itself): what a ban must apply to (``mesh.gate``).
#: True/"accept" delivers, False/"reject" refuses and penalises the forwarder,
#: "ignore" refuses quietly (``mesh.scoring``).
Validator = Callable[[str, str, str, bytes], "bool | Verdict"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipConfig:
    """How this peer joins the mesh."""

    topics: tuple[str, ...]
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()
    identity_path: Path | None = None
    heartbeat: float = 1.0
    receive_buffer: int = 4096
    reconnect_min: float = 0.2
    reconnect_max: float = 5.0
    #: A peer whose outbound queue sends nothing this long is disconnected.
    stuck_after: float = 5.0
    #: Import only the parts of py-libp2p a TCP host uses (:func:`import_libp2p`):
    #: ~0.3 s less for a failing CLI's embedded node; relays import it all.
    lean_import: bool = False
    #: Let py-libp2p's own log records reach the root handlers (a relay at debug).
    library_logs: bool = False
    #: A bootstrap peer that stays unreachable is logged at once, then after
    #: this many seconds, doubling up to ``unreachable_log_max``; None: never
    #: (a failing program's embedded node: its stderr is the program's).
    unreachable_log_first: float | None = 60.0
    unreachable_log_max: float = 3600.0
    #: A private network's pre-shared keys (``mesh.pnet``), the one to write
    #: with first: a peer without one of them completes no connection. Empty:
    #: an open network.
    network_keys: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Received:
    """One validated message: its topic, authenticated sender and payload."""

    topic: str
    sender: str
    data: bytes
    at: float = 0.0  #: ``trio.current_time()`` when it entered our channel (0: unknown)


@dataclass
class GossipCounters:
    """What the gossip edge saw, for status pages and metrics."""

    received: int = 0
    rejected: int = 0
    dropped_local: int = 0
    reconnects: int = 0
    bulk_waits: int = 0
    stuck_links: int = 0
    #: Messages from a banned peer, dropped unread by gossipsub's blacklist.
    dropped_banned: int = 0


def load_or_create_identity(path: Path | None) -> Any:
    """The ed25519 key pair kept at ``path`` (made on first use, mode 0600)."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.identity_utils import load_identity, save_identity

    if path is None:
        return create_new_key_pair()
    if path.exists():
        return load_identity(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pair = create_new_key_pair()
    save_identity(key_pair, path)
    path.chmod(0o600)
    return key_pair


class Gossip:
    """A running peer. Made by :func:`open_gossip`; valid inside its ``async with``."""

    def __init__(
        self,
        host: Any,
        pubsub: Any,
        receive: trio.MemoryReceiveChannel[Received],
        *,
        room: int = 16,
        bulk_wait: float = 0.5,
    ) -> None:
        self._host = host
        self._room_limit = 32 - room
        self._bulk_wait = bulk_wait
        self._slow_until: dict[Any, float] = {}  # libp2p peer ID -> not waited for until
        self._pubsub = pubsub
        self.receive = receive
        self.counters = GossipCounters()
        #: Bans by connection peer id and by address (``mesh.gate``).
        self.gate = BanGate()
        self._drops, self._drop_queue = trio.open_memory_channel[str](1024)
        #: The peer ids our bootstrap addresses name (``/p2p/<id>``): relays.
        self.bootstrap_peers: frozenset[str] = frozenset()
        self._addrs: tuple[str, ...] = ()
        self._addrs_at = -math.inf

    @property
    def peer_id(self) -> str:
        return str(self._host.get_id().to_base58())

    @property
    def addrs(self) -> list[str]:
        """Full multiaddrs (with ``/p2p/<id>``) others can dial.

        Cached for ``ADDRS_TTL`` seconds: every heartbeat and every status
        write asked for them, and formatting multiaddrs was 8-12 % of an
        idle relay's CPU (BENCHMARKS session 9), for a list that changes
        only when the listen addresses do. An empty list (not listening
        yet) is never cached.
        """
        now = time.monotonic()
        if self._addrs and now - self._addrs_at < ADDRS_TTL:
            return list(self._addrs)
        self._addrs = tuple(str(a) for a in self._host.get_addrs())
        self._addrs_at = now
        return list(self._addrs)

    def peers(self) -> list[str]:
        """Peers we currently have a pubsub stream with."""
        return sorted(str(p.to_base58()) for p in self._pubsub.peers)

    async def publish(self, topic: str, data: bytes, *, bulk: bool = False) -> None:
        """Sign and enqueue ``data`` for ``topic`` (delivery is not awaited).

        ``bulk`` messages (reports, digests, state answers) first wait, up to
        ``bulk_wait`` seconds, until every peer's outbound queue has
        ``room`` free slots: libp2p rejects pushes to a full queue silently,
        and a heartbeat rejected behind a burst of bulk expired a live
        leader. A peer whose queue stays full (slow or dying) delays bulk by
        at most ``bulk_wait``.
        """
        if bulk:
            await self._wait_for_room()
        await self._pubsub.publish(topic, data)

    def queue_depth(self) -> int:
        """The fullest outbound queue (libp2p's hold 32) of the peers bulk waits for."""
        now = trio.current_time()
        return max(
            (
                len(q)
                for p, q in list(self._pubsub.peer_queues.items())
                if self._slow_until.get(p, -math.inf) <= now
            ),
            default=0,
        )

    def queue_depths(self) -> dict[str, int]:
        """Each peer's outbound queue length, for status pages."""
        return {str(p.to_base58()): len(q) for p, q in list(self._pubsub.peer_queues.items())}

    async def _wait_for_room(self) -> None:
        """Wait for room in every queue; a peer whose queue did not make room
        within ``bulk_wait`` is not waited for again for 5 s (it is slow or
        stuck, and waiting for it made every bulk message 0.5 s late)."""
        limit = self._room_limit
        if self.queue_depth() <= limit:
            return
        self.counters.bulk_waits += 1
        with trio.move_on_after(self._bulk_wait) as scope:
            while self.queue_depth() > limit:  # noqa: ASYNC110 - libp2p has no event for it
                await trio.sleep(0.002)
        if scope.cancelled_caught:
            until = trio.current_time() + 5.0
            for peer, queue in list(self._pubsub.peer_queues.items()):
                if len(queue) > limit:
                    self._slow_until[peer] = until

    async def connect(self, maddr: str) -> str:
        """Dial a peer by full multiaddr; returns its id. Raises on failure."""
        import multiaddr
        from libp2p.peer.peerinfo import info_from_p2p_addr

        info = info_from_p2p_addr(multiaddr.Multiaddr(maddr))
        network = self._host.get_network()
        with contextlib.suppress(Exception):
            network.unblock_peer(info.peer_id)  # forget a recent failure
        await self._host.connect(info)
        return str(info.peer_id.to_base58())

    def connected(self, peer: str) -> bool:
        return peer in self.peers()

    def subscribers(self, topic: str) -> list[str]:
        """Peers known to subscribe to ``topic`` (a publish reaches them)."""
        return sorted(str(p.to_base58()) for p in self._pubsub.peer_topics.get(topic, ()))

    async def wait_for_subscribers(self, topic: str, within: float) -> bool:
        """Poll until some peer subscribes to ``topic``; False at the deadline.

        libp2p offers no event for it, hence the short poll.
        """
        with trio.move_on_after(within):
            while not self.subscribers(topic):  # noqa: ASYNC110 - no event to wait on
                await trio.sleep(0.005)
            return True
        return False

    async def flush(self, within: float = 1.0) -> bool:
        """Wait until every outbound queue is empty; True if it emptied in time."""
        with trio.move_on_after(within):
            while any(len(q) for q in list(self._pubsub.peer_queues.values())):  # noqa: ASYNC110
                await trio.sleep(0.002)
            await trio.sleep(0.01)  # the writer task sends what it popped
            return True
        return False

    async def dial(self, maddr: str, within: float = 5.0, registered: float = 3.0) -> str:
        """Connect to ``maddr`` and wait until the peer is a pubsub peer; returns its id.

        A connection over which no pubsub stream comes up within
        ``registered`` seconds carries nothing: it is closed, and
        ``ConnectionError`` raised, so the caller's next dial starts afresh.
        """
        with trio.fail_after(within):
            peer = await self.connect(maddr)
        with trio.move_on_after(registered):
            while not self.connected(peer):  # noqa: ASYNC110 - no event in libp2p
                await trio.sleep(0.05)
        if not self.connected(peer):
            await self.disconnect(peer)
            raise ConnectionError(f"connected to {peer}, but no pubsub stream came up")
        return peer

    def handle_streams(self, protocol: str, handler: Callable[[Any], Any]) -> None:
        """Serve ``protocol`` streams with ``handler(stream)`` (a libp2p ``INetStream``)."""
        from libp2p.custom_types import TProtocol

        self._host.set_stream_handler(TProtocol(protocol), handler)

    async def open_stream(self, peer: str, protocol: str) -> Any:
        """A new ``protocol`` stream to ``peer`` over the connection we hold
        (raises when the peer does not speak it, or is gone)."""
        from libp2p.custom_types import TProtocol
        from libp2p.peer.id import ID

        return await self._host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])

    async def disconnect(self, peer: str, within: float = 2.0) -> None:
        """Close every connection to ``peer`` (never raises; gives up after ``within``)."""
        from libp2p.peer.id import ID

        with trio.move_on_after(within), contextlib.suppress(Exception):
            await self._host.disconnect(ID.from_base58(peer))

    def ban(self, peer: str) -> None:
        """Disconnect ``peer`` and refuse it (and, after repeats, its address) a while.

        ``peer`` is the id of the connection that delivered what failed
        validation (see ``mesh.gate``). The bans are lifted by
        :meth:`lift_expired_bans`; a peer that misbehaves again is banned again.
        """
        from libp2p.peer.id import ID

        decision = self.gate.ban(peer, self._remote_ip(peer), trio.current_time())
        self._pubsub.add_to_blacklist(ID.from_base58(peer))
        self.drop(peer)
        if decision.deny_ip is not None:
            deny_ip(self._host.get_network(), decision.deny_ip, deny=True)
            log.warning("refusing connections from %s a while (repeated bans)", decision.deny_ip)

    def set_network_keys(self, keys: tuple[bytes, ...]) -> None:
        """New private-network keys (a key rotation) for the connections made from now on."""
        protect_swarm(self._host.get_network(), keys)

    def drop(self, peer: str) -> None:
        """Disconnect ``peer`` soon (from the gossip's own task; never blocks)."""
        with contextlib.suppress(trio.WouldBlock):
            self._drops.send_nowait(peer)

    def refuses(self, peer: str, ip: str | None) -> bool:
        return self.gate.refuses(peer, ip, trio.current_time())

    def _remote_ip(self, peer: str) -> str | None:
        from libp2p.peer.id import ID

        with contextlib.suppress(Exception):
            for conn in self._host.get_network().get_connections(ID.from_base58(peer)):
                return remote_ip(conn)
        return None

    def lift_expired_bans(self) -> list[str]:
        """Allow back the peers and addresses whose ban has run out; returns the peers."""
        from libp2p.peer.id import ID

        peers, ips = self.gate.expire(trio.current_time())
        for peer in peers:
            self._pubsub.remove_from_blacklist(ID.from_base58(peer))
        for ip in ips:
            deny_ip(self._host.get_network(), ip, deny=False)
        return peers


@contextlib.asynccontextmanager
async def open_gossip(config: GossipConfig, validator: Validator) -> AsyncIterator[Gossip]:
    """Start a libp2p peer, subscribe to ``config.topics``, keep bootstrap peers connected.

    Raises whatever libp2p raises when the listen address cannot be bound.
    """
    listen, lean = _listen_addrs(config)
    import_libp2p(lean=lean)
    from libp2p.tools.anyio_service import background_trio_service

    # After the imports: ``import libp2p`` (a relay's) resets its loggers.
    route_library_logs(verbose=config.library_logs)
    listen_exclusively()
    keep_rpcs_with_stale_peer_records()
    host = build_host(listen, load_or_create_identity(config.identity_path), lean=lean)
    if config.network_keys:
        protect_swarm(host.get_network(), config.network_keys)
    gossipsub, pubsub = _new_pubsub(host, config)
    mark = install(gossipsub.scorer)  # "ignore" spares the forwarder's score
    send, receive = trio.open_memory_channel[Received](config.receive_buffer)
    gossip = Gossip(host, pubsub, receive)
    _count_banned_drops(pubsub, gossip.counters)
    # The pubsub services must run before the host listens (see the notes).
    async with (
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
        host.run(listen_addrs=listen),
    ):
        check_listening(host, listen)
        await pubsub.wait_until_ready()
        async with trio.open_nursery() as nursery:
            for topic in config.topics:
                check = _topic_validator(gossip, validator, topic, mark)
                pubsub.set_topic_validator(topic, check, False)
                subscription = await pubsub.subscribe(topic)
                nursery.start_soon(_pump, subscription, topic, send, gossip)
            gossip.bootstrap_peers = frozenset(
                a.rsplit("/p2p/", 1)[1] for a in config.bootstrap if "/p2p/" in a
            )
            for maddr in config.bootstrap:
                nursery.start_soon(keep_connected, gossip, maddr, config)
            host.get_network().register_notifee(GateNotifee(gossip.refuses, gossip.drop))
            nursery.start_soon(_enforce_bans, gossip)
            nursery.start_soon(drop_stuck_links, gossip, config.stuck_after)
            try:
                yield gossip
            finally:
                nursery.cancel_scope.cancel()


def _listen_addrs(config: GossipConfig) -> tuple[list[Any], bool]:
    """The parsed listen addresses, and whether the lean import serves them all."""
    import multiaddr

    try:
        listen = [multiaddr.Multiaddr(a) for a in config.listen]
    except ValueError as exc:  # multiaddr's parse errors are ValueErrors
        raise ListenError(f"cannot listen on {config.listen}: {exc}") from None
    lean = config.lean_import and all(
        {p.name for p in a.protocols()} <= TCP_PROTOCOLS for a in listen
    )
    return listen, lean


def _new_pubsub(host: Any, config: GossipConfig) -> tuple[Any, Any]:
    """Gossipsub 1.1/1.0 and its pubsub on ``host``, tuned as the module docstring says."""
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
    from libp2p.pubsub.pubsub import Pubsub

    gossipsub = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=max(1, math.ceil(config.heartbeat)),
        heartbeat_initial_delay=0.1,
        spam_protection_enabled=False,
        adaptive_gossip_enabled=False,
        score_params=score_params(),  # mesh/scoring.py: on, with errmesh's weights
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    # py-libp2p numbers messages from int(time.time()) (+1 per publish) and
    # peers remember (sender, seqno) for 120 s: a peer restarted with its
    # identity would reuse seen ids and its first messages would be dropped
    # as duplicates. Nanoseconds, as go-libp2p does, never collide.
    pubsub.counter = time.time_ns()
    return gossipsub, pubsub


def _count_banned_drops(pubsub: Any, counters: GossipCounters) -> None:
    """Count what gossipsub drops unread because its forwarder is banned.

    py-libp2p's ``push_msg`` returns silently for a blacklisted forwarder; a
    banned attacker's frames would vanish from every count. Wrapped on the
    instance: py-libp2p calls ``self.push_msg`` for every received message.
    """
    push_msg = pubsub.push_msg

    async def counted(forwarder: Any, msg: Any) -> None:
        # A checkpoint per message: py-libp2p reads a connection's buffered
        # RPCs and validates their messages without yielding, so one
        # flooding connection could starve every other task (the status
        # endpoint, heartbeats, an honest reporter's ack) for as long as its
        # backlog lasts; dropping a banned forwarder's frames is no exception.
        await trio.lowlevel.checkpoint()
        if forwarder != pubsub.my_id and pubsub.is_peer_blacklisted(forwarder):
            counters.dropped_banned += 1
        await push_msg(forwarder, msg)

    pubsub.push_msg = counted


def _topic_validator(
    gossip: Gossip, validator: Validator, topic: str, mark: Callable[[bool], None]
) -> Callable[[Any, Any], bool]:
    """``validator`` as gossipsub's topic validator: never raises, counts refusals."""

    def validate(forwarder: Any, msg: Any) -> bool:
        try:
            from libp2p.peer.id import ID

            signer = str(ID(msg.from_id).to_base58())
            via = str(forwarder.to_base58()) if forwarder is not None else signer
            verdict = validator(topic, signer, via, bytes(msg.data))
        except Exception:  # a validator bug must not crash gossipsub
            log.exception("validator failed")
            verdict = False
        mark(verdict == "ignore")
        ok = verdict is True or verdict == "accept"
        if not ok:  # also counts our own publishes our validator refuses
            gossip.counters.rejected += 1
        return ok

    return validate


async def _pump(
    subscription: Any, topic: str, send: trio.MemorySendChannel[Received], gossip: Gossip
) -> None:
    """Subscription -> our channel; a full channel drops and counts (never blocks libp2p)."""
    from libp2p.peer.id import ID

    while True:
        msg = await subscription.get()
        sender = str(ID(msg.from_id).to_base58())
        if sender == gossip.peer_id:
            continue  # our own publish, echoed
        gossip.counters.received += 1
        try:
            send.send_nowait(Received(topic, sender, bytes(msg.data), trio.current_time()))
        except trio.WouldBlock:
            gossip.counters.dropped_local += 1


async def _enforce_bans(gossip: Gossip) -> None:
    """Disconnect what :meth:`Gossip.drop` queued; lift expired bans every second."""
    lifted_at = trio.current_time()
    while True:
        with trio.move_on_after(1.0):
            peer = await gossip._drop_queue.receive()
            await gossip.disconnect(peer)
        if trio.current_time() - lifted_at >= 1.0:
            lifted_at = trio.current_time()
            for lifted in gossip.lift_expired_bans():
                log.info("ban of %s lifted", lifted)


def topics_for(cluster: str) -> tuple[str, str]:
    """The cluster's (reports, control) topic names."""
    return (f"/errmesh/{cluster}/reports/1", f"/errmesh/{cluster}/control/1")
