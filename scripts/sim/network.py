"""The simulated network: a gossipsub-like overlay, links with delay and loss, partitions.

Relays are nodes ``0 .. peers-1`` of an overlay of degree about D (a ring
for connectivity plus random links, as gossipsub's mesh of degree 6); the
machines without a relay (reporters) are the nodes after them, linked
directly to their relays. A published message is **flooded with a seen
cache**: every relay that receives it forwards it once to each live overlay
neighbour, so it reaches each relay at the earliest arrival over any path
that survives (computed per message, Dijkstra over per-hop delays and drops
drawn for that message). That is gossipsub's eager push; its lazy IHAVE/IWANT
repair is left out, so a relay that every path misses never gets the frame
and anti-entropy has to repair it (the model is harsher than gossipsub).

Faults the network carries: a partition (nodes in groups; links across
groups carry nothing, and each side grafts links so that it stays one mesh,
as gossipsub keeps D_lo live links); a crashed node (no links); a paused
node (receives, its kernel buffering, but forwards nothing); loss on a
node's links. Connections that break are reported to the relays after the
time a real stack takes to notice (a crash at once, a silent partition only
after keep-alives time out), and new ones after a redial.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scripts.sim.config import LinkModel
from scripts.sim.scheduler import stream

__all__ = ["ConnectionChange", "Flood", "Network"]

_INF = math.inf


@dataclass(frozen=True, slots=True)
class Flood:
    """Where one published message arrived, and what it cost the links."""

    arrivals: list[tuple[float, int]]
    transmissions: int
    dropped: int


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    """Relay ``node``'s direct connection to ``peer`` broke or (re)opened."""

    node: int
    peer: int
    opened: bool
    #: A crash is noticed at once; a partition only after keep-alives fail.
    crash: bool


class Network:
    """The overlay and the state of every node and link."""

    def __init__(
        self,
        *,
        seed: int,
        relays: int,
        reporters: Sequence[Sequence[int]],
        eligible: int,
        link: LinkModel,
    ) -> None:
        """``reporters[i]``: the relays reporter node ``relays + i`` is configured with."""
        self.link = link
        self.relays = relays
        self.nodes = relays + len(reporters)
        self.eligible = eligible
        self.rng = stream(seed, "network")
        self._seed = seed
        self._graft_rng = stream(seed, "graft")
        self.up = [True] * self.nodes
        self.paused = [False] * self.nodes
        self.group = [0] * self.nodes
        self.node_loss = [0.0] * self.nodes
        self.reporter_relays = [tuple(r) for r in reporters]
        self._base: list[dict[int, float]] = [{} for _ in range(relays)]
        self._grafts: list[dict[int, float]] = [{} for _ in range(relays)]
        self._pair_latency: dict[tuple[int, int], float] = {}
        self._build_overlay(stream(seed, "overlay"))
        #: Per relay its live links: (peer, base + hop, mean jitter, loss).
        self.live: list[list[tuple[int, float, float, float]]] = [[] for _ in range(relays)]
        self._connections: list[frozenset[int]] = [frozenset() for _ in range(relays)]
        self.changed()

    # -- construction --

    def _latency(self, rng: random.Random) -> float:
        link = self.link
        base = rng.lognormvariate(math.log(link.latency), link.latency_sigma)
        return min(base, link.latency_max)

    def _build_overlay(self, rng: random.Random) -> None:
        n, degree = self.relays, self.link.degree
        if n <= 1:
            return
        if n <= degree + 1:
            pairs = [(u, v) for u in range(n) for v in range(u + 1, n)]
        else:
            pairs = [(u, (u + 1) % n) for u in range(n)]
            have = [2] * n
            linked = {(min(u, v), max(u, v)) for u, v in pairs}
            for u in range(n):
                tries = 0
                while have[u] < degree and tries < 50:
                    tries += 1
                    v = rng.randrange(n)
                    key = (min(u, v), max(u, v))
                    if v == u or key in linked or have[v] >= 2 * degree:
                        continue
                    linked.add(key)
                    pairs.append(key)
                    have[u] += 1
                    have[v] += 1
        for u, v in pairs:
            base = self._latency(rng)
            self._base[u][v] = base
            self._base[v][u] = base

    def pair_latency(self, a: int, b: int) -> float:
        """The base latency of a direct link outside the overlay (reporters, acks)."""
        key = (min(a, b), max(a, b))
        base = self._pair_latency.get(key)
        if base is None:
            base = self._pair_latency[key] = self._latency(stream(self._seed, "pair", *key))
        return base

    def degree(self, node: int) -> int:
        return len(self._base[node])

    # -- faults --

    def set_groups(self, groups: Sequence[int]) -> list[ConnectionChange]:
        self.group = list(groups)
        return self.changed()

    def set_up(self, node: int, up: bool) -> list[ConnectionChange]:
        self.up[node] = up
        if not up:
            self.paused[node] = False
        return self.changed(crash=node)

    def set_paused(self, node: int, paused: bool) -> None:
        self.paused[node] = paused

    def set_loss(self, nodes: Iterable[int], loss: float) -> None:
        for node in nodes:
            self.node_loss[node] = loss
        self._rebuild_live()

    def reachable(self, a: int, b: int) -> bool:
        """Whether a direct link between ``a`` and ``b`` can carry anything now."""
        return self.up[a] and self.up[b] and self.group[a] == self.group[b]

    def changed(self, crash: int | None = None) -> list[ConnectionChange]:
        """Re-graft, rebuild the live links and return the connections that changed."""
        self._regraft()
        self._rebuild_live()
        out = []
        for node in range(self.relays):
            now = self._connected(node)
            before = self._connections[node]
            if now == before:
                continue
            for peer in sorted(before - now):
                out.append(ConnectionChange(node, peer, False, crash in (node, peer)))
            for peer in sorted(now - before):
                out.append(ConnectionChange(node, peer, True, False))
            self._connections[node] = now
        return out

    def connections(self, node: int) -> frozenset[int]:
        return self._connections[node]

    def _connected(self, node: int) -> frozenset[int]:
        """Live overlay links, plus (for a candidate) every candidate: candidates
        dial each other (the real relay dials the leader and the best-ranked)."""
        if not self.up[node]:
            return frozenset()
        peers = {edge[0] for edge in self.live[node]}
        if node < self.eligible:
            peers.update(v for v in range(self.eligible) if v != node and self.reachable(node, v))
        return frozenset(peers)

    def _regraft(self) -> None:
        """Each side of a partition stays one mesh with D_lo live links where it can.

        Grafts that still join two live nodes of one side are kept (a connection
        does not churn at every fault); once the partition heals they are pruned.
        """
        if len(set(self.group[: self.relays])) <= 1:
            self._grafts = [{} for _ in range(self.relays)]
        else:
            for u in range(self.relays):
                keep = {v: b for v, b in self._grafts[u].items() if self._same_side(u, v)}
                self._grafts[u] = keep if self.up[u] else {}
        rng = self._graft_rng
        by_group: dict[int, list[int]] = {}
        for node in range(self.relays):
            if self.up[node]:
                by_group.setdefault(self.group[node], []).append(node)
        for group in sorted(by_group):
            members = by_group[group]
            components = self._components(members)
            for left, right in itertools.pairwise(components):
                self._graft(rng.choice(left), rng.choice(right), rng)
            low = min(self.link.degree_low, len(members) - 1)
            for node in members:
                tries = 0
                while self._live_degree(node) < low and tries < 20:
                    tries += 1
                    other = rng.choice(members)
                    if other != node and other not in self._base[node]:
                        self._graft(node, other, rng)

    def _graft(self, a: int, b: int, rng: random.Random) -> None:
        base = self._latency(rng)
        self._grafts[a][b] = base
        self._grafts[b][a] = base

    def _same_side(self, a: int, b: int) -> bool:
        return self.up[b] and self.group[b] == self.group[a]

    def _live_degree(self, node: int) -> int:
        base = sum(1 for v in self._base[node] if self._same_side(node, v))
        return base + sum(1 for v in self._grafts[node] if v not in self._base[node])

    def _components(self, members: list[int]) -> list[list[int]]:
        seen: set[int] = set()
        out = []
        for start in members:
            if start in seen:
                continue
            seen.add(start)
            part, todo = [start], [start]
            while todo:
                u = todo.pop()
                for v in (*self._base[u], *self._grafts[u]):
                    if v not in seen and self._same_side(u, v):
                        seen.add(v)
                        part.append(v)
                        todo.append(v)
            out.append(sorted(part))
        return out

    def _rebuild_live(self) -> None:
        bg, hop, jitter = self.link.loss, self.link.hop, self.link.jitter
        for u in range(self.relays):
            edges: list[tuple[int, float, float, float]] = []
            if self.up[u]:
                merged = dict(self._base[u])
                merged.update(self._grafts[u])
                for v, base in merged.items():
                    if self._same_side(u, v):
                        loss = max(bg, self.node_loss[u], self.node_loss[v])
                        edges.append((v, base + hop, jitter * base + hop, loss))
            self.live[u] = edges

    # -- carrying messages --

    def flood(self, sources: Sequence[tuple[float, int]]) -> Flood:
        """Flood from ``sources`` (time, relay): the earliest arrival at every relay reached."""
        rand = self.rng.random
        log = math.log
        reorder, reorder_delay = self.link.reorder, self.link.reorder_delay
        live, paused = self.live, self.paused
        dist = [_INF] * self.relays
        done = bytearray(self.relays)
        starts = bytearray(self.relays)
        for t, s in sources:
            starts[s] = 1
            if t < dist[s]:
                dist[s] = t
        heap = [(dist[s], s) for s in sorted({s for _, s in sources})]
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        arrivals: list[tuple[float, int]] = []
        sent = dropped = 0
        while heap:
            t, u = pop(heap)
            if done[u]:
                continue
            done[u] = 1
            if not starts[u]:
                arrivals.append((t, u))
            if paused[u]:
                continue
            edges = live[u]
            sent += len(edges) - (0 if starts[u] else 1)  # not back where it came from
            for v, delay, mean, loss in edges:
                if done[v]:
                    continue
                if loss and rand() < loss:
                    dropped += 1
                    continue
                d = t + delay - mean * log(1.0 - rand())
                if reorder and rand() < reorder:
                    d += rand() * reorder_delay
                if d < dist[v]:
                    dist[v] = d
                    push(heap, (d, v))
        return Flood(arrivals, max(sent, 0), dropped)

    def direct(self, a: int, b: int, t: float) -> float | None:
        """When a message sent at ``t`` over the direct link a -> b arrives (None: lost)."""
        if not self.reachable(a, b):
            return None
        loss = max(self.link.loss, self.node_loss[a], self.node_loss[b])
        rng = self.rng
        if loss and rng.random() < loss:
            return None
        base = self.pair_latency(a, b)
        return t + base + self.link.hop + rng.expovariate(1.0 / (self.link.jitter * base + 1e-4))

    def stream(self, a: int, b: int, t: float) -> float | None:
        """When bytes written at ``t`` on a TCP stream a -> b arrive (None: no link).

        A lost segment is sent again after TCP's retransmission timeout
        (200 ms, doubling); after six losses in a row the connection counts as broken.
        """
        rto = 0.2
        for _ in range(6):
            at = self.direct(a, b, t)
            if at is not None or not self.reachable(a, b):
                return at
            t, rto = t + rto, rto * 2
        return None
