"""The fault-injecting TCP proxy every relay-to-relay byte goes through.

This kernel has no netem qdisc and there is no iptables or nft, so loss,
latency and partitions are made here, in user space, per directed pair of
hosts (``src -> dst``: the host that dialled and the one it dialled).
What each fault does to a TCP stream is what the kernel's TCP would make of
the same fault on the wire, because a proxy must never corrupt the stream
it carries:

- **latency and jitter** delay each chunk by ``latency ± jitter`` while
  keeping the order (a chunk never overtakes the previous one);
- **loss** is what TCP turns it into: every lost segment (1,448 bytes, each
  lost with probability ``loss``) is retransmitted after an RTO that starts
  at 200 ms and doubles while retransmissions are lost too, and the stream
  waits for it (head-of-line blocking); a lost SYN delays a new connection
  by 1 s, doubling;
- **a partition** (``blocked``) is a black hole: bytes are held, not
  delivered, new connections are accepted but not carried on, as when
  packets are dropped silently; on heal TCP's retransmissions would deliver
  what was sent, and so does the proxy. ``reset`` closes the pair's
  connections instead (a host that rebooted).

The proxy runs its own trio loop in a thread; the control methods may be
called from any thread (a rule change replaces one dict entry).
"""

from __future__ import annotations

import math
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import trio

from scripts.cluster.netns import Topology, service_addr, socket_in

__all__ = ["LinkRule", "Proxy"]

SEGMENT = 1448
RTO = 0.2
SYN_RTO = 1.0
POLL = 0.02


@dataclass(frozen=True)
class LinkRule:
    """What happens to bytes from one host to another."""

    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    blocked: bool = False

    def delay(self, rng: random.Random, size: int) -> float:
        """Seconds this chunk takes beyond the wire's own time."""
        base = self.latency + (rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        return max(0.0, base) + self.retransmissions(rng, max(1, math.ceil(size / SEGMENT)), RTO)

    def retransmissions(self, rng: random.Random, segments: int, rto: float) -> float:
        """The longest retransmission wait among ``segments`` (0 without loss)."""
        if self.loss <= 0.0:
            return 0.0
        worst = 0.0
        for _ in range(segments):
            wait, timeout = 0.0, rto
            while rng.random() < self.loss and wait < 30.0:
                wait += timeout
                timeout *= 2
            worst = max(worst, wait)
        return worst


Pair = tuple[int, int]


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for a condition another thread makes true (the control methods):
    a trio.Event cannot be set from outside the loop without a token, a poll can."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(POLL)


class Proxy:
    """Listeners for every ordered pair of hosts, on the relays' port."""

    def __init__(self, topology: Topology, port: int, *, seed: int) -> None:
        self.topology = topology
        self.port = port
        self.rng = random.Random(seed)
        self.rules: dict[Pair, LinkRule] = {
            (i, j): LinkRule() for i in topology.indices for j in topology.indices if i != j
        }
        self.stats: Counter[str] = Counter()
        self._resets: dict[Pair, int] = dict.fromkeys(self.rules, 0)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.last_error = ""

    # -- control (any thread) ----------------------------------------------

    def set_rule(self, src: int, dst: int, **changes: float | bool) -> None:
        self.rules[(src, dst)] = replace(self.rules[(src, dst)], **changes)  # type: ignore[arg-type]

    def set_all(self, **changes: float | bool) -> None:
        for src, dst in list(self.rules):
            self.set_rule(src, dst, **changes)

    def partition(self, *groups: set[int] | frozenset[int]) -> None:
        """Block every pair across ``groups`` (hosts in no group are cut from all)."""
        side = {h: n for n, group in enumerate(groups) for h in group}
        for src, dst in list(self.rules):
            apart = side.get(src, -1 - src) != side.get(dst, -1 - dst)
            self.set_rule(src, dst, blocked=apart)

    def isolate(self, host: int, blocked: bool = True) -> None:
        for src, dst in list(self.rules):
            if host in (src, dst):
                self.set_rule(src, dst, blocked=blocked)

    def heal(self) -> None:
        """Unblock every pair (latency and loss stay as they are)."""
        self.set_all(blocked=False)

    def clear(self) -> None:
        for pair in list(self.rules):
            self.rules[pair] = LinkRule()

    def reset(self, host: int) -> None:
        """Close every connection to and from ``host`` (a reboot's RSTs)."""
        for pair in self._resets:
            if host in pair:
                self._resets[pair] += 1

    # -- life -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="cluster-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the proxy did not start: {self._error!r}")
        if self._error is not None:
            raise RuntimeError(f"the proxy did not start: {self._error!r}")

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by start() or the next check
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        listeners = []
        for src, dst in self.rules:
            sock = socket_in(self.topology.host_ns(src))
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            sock.bind((service_addr(dst), self.port))
            sock.listen(128)
            listeners.append(
                ((src, dst), trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
            )
        async with trio.open_nursery() as nursery:
            for pair, listener in listeners:
                nursery.start_soon(self._accept_loop, pair, listener)
            self._ready.set()
            await _until(self._stop.is_set)
            nursery.cancel_scope.cancel()

    async def _accept_loop(self, pair: Pair, listener: trio.SocketListener) -> None:
        async with listener, trio.open_nursery() as nursery:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and the like: keep listening
                    self.stats[f"accept {exc.errno}"] += 1
                    await trio.sleep(0.1)
                    continue
                self.stats["accepted"] += 1
                nursery.start_soon(self._carry, pair, stream)

    async def _carry(self, pair: Pair, inbound: trio.SocketStream) -> None:
        try:
            await self._carry_one(pair, inbound)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.stats["broken"] += 1
        except Exception as exc:  # one connection's bug must not take every link down
            self.stats[f"error {type(exc).__name__}"] += 1
            self.last_error = traceback.format_exc()

    async def _carry_one(self, pair: Pair, inbound: trio.SocketStream) -> None:
        src, dst = pair
        epoch = self._resets[pair]
        async with inbound:
            held = await self._wait_open(pair, inbound)
            if held is None:
                return
            syn = self.rules[pair].retransmissions(self.rng, 1, SYN_RTO)
            if syn:
                self.stats["syn_retransmissions"] += 1
                await trio.sleep(syn)
            sock = trio.socket.from_stdlib_socket(socket_in(self.topology.bridge_ns))
            try:
                with trio.fail_after(5):
                    await sock.connect((service_addr(dst), self.port))
            except (OSError, trio.TooSlowError):
                sock.close()
                self.stats["connect_failed"] += 1
                return
            self.stats["carried"] += 1
            outbound = trio.SocketStream(sock)
            async with outbound, trio.open_nursery() as nursery:
                if held:
                    await outbound.send_all(held)
                done = lambda: nursery.cancel_scope.cancel()  # noqa: E731
                nursery.start_soon(self._pump, pair, inbound, outbound, done)
                nursery.start_soon(self._pump, (dst, src), outbound, inbound, done)
                nursery.start_soon(self._watch_reset, pair, epoch, done)

    async def _wait_open(self, pair: Pair, inbound: trio.SocketStream) -> bytes | None:
        """Hold a connection made across a partition until it heals; what the
        dialler sent meanwhile (None: it gave up first)."""
        held = b""
        if self.rules[pair].blocked:
            self.stats["held_connections"] += 1
        while self.rules[pair].blocked:
            with trio.move_on_after(POLL * 5):
                chunk = await inbound.receive_some(65536)
                if not chunk:
                    return None
                held += chunk
        return held

    async def _watch_reset(self, pair: Pair, epoch: int, done: Callable[[], None]) -> None:
        await _until(lambda: self._resets[pair] != epoch)
        self.stats["resets"] += 1
        done()

    async def _pump(
        self,
        pair: Pair,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        done: Callable[[], None],
    ) -> None:
        """Bytes from ``source`` to ``sink`` under ``pair``'s rule, in order."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](4096)

        async def writer() -> None:
            async for due, chunk in receive:
                while True:
                    wait = due - time.monotonic()
                    if wait > 0:
                        await trio.sleep(wait)
                    if not self.rules[pair].blocked:
                        break
                    self.stats["held_chunks"] += 1
                    await _until(lambda: not self.rules[pair].blocked)
                    break
                await sink.send_all(chunk)
                self.stats[f"bytes {pair[0]}->{pair[1]}"] += len(chunk)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                last = 0.0
                async with send:
                    while True:
                        chunk = await source.receive_some(65536)
                        if not chunk:
                            break
                        rule = self.rules[pair]
                        last = max(last, time.monotonic() + rule.delay(self.rng, len(chunk)))
                        await send.send((last, chunk))
            await sink.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            done()
