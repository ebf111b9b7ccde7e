"""py-libp2p's host as errmesh needs it: imported lean, built by hand, its
defaults fixed (DECISIONS 27, 30 and 33).

``mesh.gossip`` is the interface the rest of errmesh uses; this module is the
surgery behind it. The lean import that makes a failing CLI's embedded node
cheap skips libp2p's package ``__init__`` files, stand-ins hide the modules
of features we leave off, and :func:`new_tcp_host` builds the host the way
py-libp2p 0.8.1's ``new_host`` builds it. ``tests/test_gossip.py`` checks
that the hand-built host has ``new_host``'s shape, so a py-libp2p upgrade that
changes either fails a test. :func:`build_host` picks it or ``new_host`` with
Noise only and one connection per peer; :func:`listen_exclusively` and
:func:`check_listening` make a taken port an error, and
:func:`route_library_logs` keeps the library off the host program's stderr.
Re-check all of them when py-libp2p changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import trio

from mesh.errors import ListenError

__all__ = [
    "LIBRARY_LOGGERS",
    "TCP_PROTOCOLS",
    "build_host",
    "check_listening",
    "import_libp2p",
    "listen_exclusively",
    "new_tcp_host",
    "route_library_logs",
]

log = logging.getLogger("errmesh.gossip")


# ``import libp2p`` runs ``libp2p/__init__.py`` (and subpackages' ``__init__``), which
# import every transport, TLS/AutoTLS, mDNS, UPnP, relay, DHT...: ~0.5 s a failing CLI
# need not pay. Below: import only what a TCP + Noise + yamux + gossipsub host needs,
# and build it as ``new_host`` does. Re-check both when py-libp2p changes.

#: Protocols of a listen address :func:`new_tcp_host` serves (as ``new_host``: TCP only).
TCP_PROTOCOLS = frozenset({"ip4", "ip6", "dns", "dns4", "dns6", "tcp"})
#: Modules ``libp2p.host.basic_host`` imports only for features we leave off
#: (AutoTLS, mDNS, UPnP): stand-ins while it imports, then removed, so that
#: a later import gets the real module (the stand-ins call into it).
_UNUSED = {
    "libp2p.security.tls.autotls.acme": ("ACMEClient", "compute_b36_peer_id"),
    "libp2p.security.tls.autotls.broker": ("BrokerClient",),
    "libp2p.discovery.mdns.mdns": ("MDNSDiscovery", "create_mdns_discovery"),
    "libp2p.discovery.upnp.upnp": ("UpnpManager",),
}
#: Optional packages whose importers fall back (``except ImportError``) when
#: absent; hidden while we import: aioquic (QUIC only; pulls pyOpenSSL and
#: x509), cffi (pycryptodome then uses ctypes, skipping cffi's C parser).
_HIDDEN = ("aioquic", "cffi")
#: What :func:`open_gossip` and :func:`new_tcp_host` import (all below ``libp2p``).
_NEEDED = """crypto.ed25519 crypto.x25519 host.basic_host identity_utils network.swarm
    peer.peerinfo peer.peerstore pubsub.gossipsub pubsub.pubsub rcmgr security.noise.transport
    stream_muxer.mplex.mplex stream_muxer.yamux.yamux tools.anyio_service transport.manager
    transport.tcp.tcp transport.upgrader utils.logging""".split()  # noqa: SIM905


def _forward(module: str, name: str) -> Callable[..., Any]:
    """A stand-in for ``module.name`` that calls the real one (importing it then)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    return call


class _DeferInit:
    """Loader of a package that runs its ``__init__`` only when a name it defines is read."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> None:
        return None  # the default module object

    def exec_module(self, package: Any) -> None:
        def __getattr__(name: str) -> Any:
            import importlib
            import importlib.util

            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            if importlib.util.find_spec(f"{package.__name__}.{name}") is not None:
                return importlib.import_module(f"{package.__name__}.{name}")
            del package.__getattr__
            self.loader.exec_module(package)  # the real __init__, in full, once
            return getattr(package, name)

        package.__getattr__ = __getattr__


class _DeferLibp2pInits:
    """Meta path finder: ``libp2p`` packages imported while it is installed defer their __init__."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        from importlib.machinery import PathFinder, SourceFileLoader

        if name != "libp2p" and not name.startswith("libp2p."):
            return None
        spec = PathFinder.find_spec(name, path)
        if (
            spec is not None
            and spec.submodule_search_locations is not None
            and isinstance(spec.loader, SourceFileLoader)
        ):
            spec.loader = _DeferInit(spec.loader)  # type: ignore[assignment]
        return spec


def import_libp2p(*, lean: bool) -> None:
    """Import what :func:`open_gossip` uses of py-libp2p (``lean``: ~0.3 s less).

    Lean: ``libp2p`` and its subpackages are created without running their
    ``__init__`` (run later, in full, if anything reads a name only it
    defines, e.g. ``from libp2p import new_host``), basic_host's AutoTLS,
    mDNS and UPnP modules are stand-ins while it imports, aioquic and cffi
    are hidden, and the garbage collector is paused. A process that already
    imported libp2p gains nothing.
    """
    if "libp2p" in sys.modules or not lean:
        return  # the plain imports that follow run libp2p/__init__.py
    import gc
    import importlib
    import types

    gc_was_enabled = gc.isenabled()
    gc.disable()  # ~600 new modules: the collector would walk them several times
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    finder = _DeferLibp2pInits()
    try:
        if "aioquic" in hidden and "dns.quic" not in sys.modules:
            import dns._features  # else dnspython imports aioquic for DNS over QUIC

            dns._features.force("doq", False)
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises
        for module, names in _UNUSED.items():
            stand_in = types.ModuleType(module)
            stand_in.__file__ = None
            for name in names:
                setattr(stand_in, name, _forward(module, name))
            sys.modules[module] = stand_in
        sys.meta_path.insert(0, finder)
        for name in _NEEDED:
            importlib.import_module(f"libp2p.{name}")
    except Exception:  # another py-libp2p? Forget the partial import; the full one follows
        log.warning("lean libp2p import failed; importing all of it", exc_info=True)
        for name in [m for m in sys.modules if m == "libp2p" or m.startswith("libp2p.")]:
            del sys.modules[name]
        return
    finally:
        sys.meta_path.remove(finder)
        for name in hidden:
            del sys.modules[name]
        for module in _UNUSED:
            if getattr(sys.modules.get(module), "__file__", "") is None:  # still a stand-in
                del sys.modules[module]
                parent, _, child = module.rpartition(".")
                with contextlib.suppress(KeyError, AttributeError):
                    delattr(sys.modules[parent], child)
        if gc_was_enabled:
            gc.enable()
    sys.modules["libp2p.utils.logging"].setup_logging()  # as libp2p/__init__.py does


def new_tcp_host(
    *, key_pair: Any, sec_opt: Any, listen_addrs: list[Any], connection_config: Any
) -> Any:
    """``libp2p.new_host(...)`` for TCP listen addresses, without ``libp2p/__init__``.

    Mirrors 0.8.1's ``new_host`` / ``new_swarm`` with their defaults: yamux
    then mplex, a default resource manager, no mDNS, UPnP, metrics or AutoTLS.
    """
    from libp2p.custom_types import TProtocol
    from libp2p.host.basic_host import BasicHost
    from libp2p.network.swarm import Swarm
    from libp2p.peer.id import ID
    from libp2p.peer.peerstore import PeerStore
    from libp2p.rcmgr import new_resource_manager
    from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux
    from libp2p.transport.manager import TransportManager
    from libp2p.transport.tcp.tcp import TCP
    from libp2p.transport.upgrader import TransportUpgrader

    peer_id = ID.from_pubkey(key_pair.public_key)
    upgrader = TransportUpgrader(
        secure_transports_by_protocol=sec_opt,
        muxer_transports_by_protocol={
            TProtocol(YAMUX_PROTOCOL_ID): Yamux,
            TProtocol(MPLEX_PROTOCOL_ID): Mplex,
        },
    )
    peerstore = PeerStore()
    peerstore.add_key_pair(peer_id, key_pair)
    resource_manager = new_resource_manager()
    swarm = Swarm(
        peer_id,
        peerstore,
        upgrader,
        transports=[TCP()],  # new_host: one TCP transport serves every TCP address
        connection_config=connection_config,
        transport_manager=TransportManager(port_demuxers={}),
    )
    swarm.set_resource_manager(resource_manager)
    return BasicHost(network=swarm, resource_manager=resource_manager)


def build_host(listen: list[Any], key_pair: Any, *, lean: bool) -> Any:
    """A libp2p host for ``listen`` with Noise only and one connection per peer.

    ``lean``: :func:`new_tcp_host`, as a lean import (:func:`import_libp2p`)
    needs; else py-libp2p's own ``new_host`` without mDNS. Raises what
    libp2p raises.
    """
    from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport

    # py-libp2p's yamux answers every read with a WINDOW_UPDATE frame (its
    # PY_YAMUX_RELEASE_ON_READ knob, on by default): one Noise-encrypted write
    # per message received, most of a relay's CPU at rest. Off, it credits the
    # window as go-yamux does, once half of it is consumed (DECISIONS 27).
    # Read at call time, so set before any stream exists; a value set by the
    # user wins.
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
    options: dict[str, Any] = {
        "key_pair": key_pair,
        "sec_opt": {
            TProtocol(NOISE_ID): NoiseTransport(key_pair, noise_privkey=create_x25519().private_key)
        },
        "listen_addrs": listen,
        "connection_config": ConnectionConfig(max_connections_per_peer=1),
    }
    if lean:
        return new_tcp_host(**options)
    from libp2p import new_host

    return new_host(**options, enable_mDNS=False)


#: The loggers of py-libp2p and the parsers it uses.
LIBRARY_LOGGERS = ("libp2p", "multiaddr")


def route_library_logs(*, verbose: bool) -> None:
    """Keep py-libp2p's log records off stderr unless ``verbose``.

    Its ``setup_logging`` (run at import) leaves the ``libp2p`` logger with no
    handler and ``propagate = False``, so Python's last-resort handler prints
    every WARNING and ERROR on stderr: a failing program with a dead relay
    address got eight "Failed to open TCP stream" lines. A ``NullHandler``
    on those loggers silences them without touching the host's root logger;
    ``verbose`` (or py-libp2p's own ``LIBP2P_DEBUG``) hands them to the root
    handlers instead. What matters is said by errmesh's own loggers.
    """
    libp2p_debug = bool(os.environ.get("LIBP2P_DEBUG"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        if not libp2p_debug:
            logger.propagate = verbose


#: Stale signed peer records that py-libp2p would have dropped a whole RPC for.
STALE_PEER_RECORDS = [0]


def keep_rpcs_with_stale_peer_records() -> None:
    """Never drop a pubsub RPC because of the sender's address record.

    py-libp2p 0.8 attaches the sender's signed peer record to every pubsub
    RPC and drops the whole RPC (subscriptions, messages, control) when its
    peerstore refuses the record, which it does for a record whose ``seq``
    is lower than one it holds. That ``seq`` is a wall-clock timestamp: a
    relay restarted with its clock behind (NTP stepped back, a VM restored
    from a snapshot) was deaf and mute to every peer that had seen it
    before, for as long as those peers ran (the cluster's clock-offset
    scenario: two leaders, both connected). The record only carries
    addresses, which we take from heartbeats; frames are authenticated by
    their MAC. A refused record is counted and the RPC processed. Idempotent.
    """
    from libp2p.pubsub import gossipsub, pubsub, utils

    original = getattr(utils.maybe_consume_signed_record, "__wrapped__", None)
    if original is not None:
        return
    consume = utils.maybe_consume_signed_record

    def maybe_consume_signed_record(msg: Any, host: Any, peer_id: Any) -> bool:
        if not consume(msg, host, peer_id):
            STALE_PEER_RECORDS[0] += 1
        return True

    maybe_consume_signed_record.__wrapped__ = consume  # type: ignore[attr-defined]
    for module in (utils, pubsub, gossipsub):
        module.maybe_consume_signed_record = maybe_consume_signed_record  # type: ignore[attr-defined]


#: Why binding (host, port) failed last, for :func:`check_listening`'s message.
_BIND_ERRORS: dict[tuple[str | None, int], OSError] = {}


def listen_exclusively() -> None:
    """Make py-libp2p's TCP listeners exclusive: no ``SO_REUSEPORT``.

    py-libp2p 0.8 sets ``SO_REUSEPORT`` on its listening sockets (for hole
    punching, which we do not use), so a second relay on a port another one
    holds starts and shares it: the kernel then hands each dialer to either
    process. Its ``_open_reuseport_listeners`` is replaced by
    :func:`_open_exclusive_listeners`; idempotent.
    """
    from libp2p.transport.tcp import tcp

    tcp._open_reuseport_listeners = _open_exclusive_listeners


async def _open_exclusive_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """Listen on (host, port) as ``trio.open_tcp_listeners`` does: exclusive.

    Raises the ``OSError`` of the bind (address in use, not on this host);
    py-libp2p's swarm only logs it, so it is kept for :func:`check_listening`.
    """
    try:
        return list(await trio.open_tcp_listeners(port, host=host))
    except OSError as exc:
        _BIND_ERRORS[(host, port)] = exc
        raise


def check_listening(host: Any, listen: list[Any]) -> None:
    """Raise ``ListenError`` naming each listen address the swarm could not serve.

    py-libp2p's ``Swarm.listen`` logs a failed bind and carries on without
    the listener; a relay nobody can dial must not look healthy.
    """
    from libp2p.utils.multiaddr_utils import extract_ip_from_multiaddr

    serving = host.get_network().listeners
    failed = []
    for maddr in listen:
        if str(maddr) in serving:
            continue
        port = int(maddr.value_for_protocol("tcp") or 0)
        reason = _BIND_ERRORS.pop((extract_ip_from_multiaddr(maddr), port), None)
        why = reason.strerror if reason is not None and reason.strerror else "cannot bind it"
        failed.append(f"{maddr} ({why})")
    if failed:
        raise ListenError(f"cannot listen on {', '.join(failed)}")


def remote_ip(conn: Any) -> str | None:
    """The IP address a libp2p connection comes from (None when the muxer cannot tell)."""
    try:
        address = conn.muxed_conn.get_remote_address()
    except Exception:  # a muxer or transport without it
        return None
    return str(address[0]) if address else None


def deny_ip(swarm: Any, ip: str, *, deny: bool) -> None:
    """Add ``ip`` to (or take it off) the swarm's connection gate deny list.

    py-libp2p's ``ConnectionGate`` refuses an inbound connection from a
    denied address before the security handshake, and filters dials to it.
    """
    import ipaddress

    network = ipaddress.ip_network(ip)
    deny_list = swarm.connection_gate.deny_list
    if deny and network not in deny_list:
        deny_list.append(network)
    elif not deny and network in deny_list:
        deny_list.remove(network)


class GateNotifee:
    """Closes a new connection from a banned peer or address as soon as it opens.

    A swarm notifee (py-libp2p has no hook between the security handshake
    and the connection's registration); ``refuses(peer, ip)`` decides and
    ``drop(peer)`` disconnects off the notifying task.
    """

    def __init__(self, refuses: Any, drop: Any) -> None:
        self._refuses = refuses
        self._drop = drop

    async def connected(self, network: Any, conn: Any) -> None:
        try:
            peer = str(conn.muxed_conn.peer_id.to_base58())
        except Exception:
            return
        if self._refuses(peer, remote_ip(conn)):
            self._drop(peer)

    async def opened_stream(self, network: Any, stream: Any) -> None:
        return None

    async def closed_stream(self, network: Any, stream: Any) -> None:
        return None

    async def disconnected(self, network: Any, conn: Any) -> None:
        return None

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None
