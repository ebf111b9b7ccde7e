"""A relay's ``/metrics``: Prometheus families read from the relay at scrape time.

Imported only by the relay process (``node.service``): prometheus-client
stays off the error path. Each relay has its own ``CollectorRegistry``, not
the library's global one, so several relays in one test process do not mix
their samples. Nothing is counted twice: :class:`RelayCollector` reads the
counters the relay keeps anyway (its ``stats``, its election's statistics,
its faults and rejections, its gossip counters and queues, its lag
histogram, its sink's usage, its store's statistics) when Prometheus asks.

Every family has HELP and TYPE, and every labelled counter whose label
values are known in advance (rejection reasons, message kinds, loops, drop
reasons, GitHub request kinds and statuses) starts at zero, so that
``rate()`` sees its first increase.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
import typing
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from github_sink.sink import REQUEST_KINDS, REQUEST_STATUSES, Metered, SinkUsage
from mesh import wire
from node.lags import LAG_BUCKETS
from node.relay_status import relay_status

if TYPE_CHECKING:
    from node.relay import MeshPeer

__all__ = ["CONTENT_TYPE", "FAMILIES", "RelayCollector", "relay_registry", "scrape"]

#: The text exposition format every Prometheus reads.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Reasons a message is refused: the codec's, and the validator's own.
REJECT_REASONS: Final = (*wire.REJECT_REASONS, "forged-sender")
#: Message kinds as the receive loop names them (their class names).
KINDS: Final = tuple(cls.__name__ for cls in typing.get_args(wire.Message))
#: The loops a fault is counted under (``MeshPeer.run``, the store, the status).
LOOPS: Final = (
    *("receive", "apply", "answer", "tick", "drain", "digest", "lead", "watch", "keys", "sync"),
    *("connect", "store", "status"),
)
#: ``stats`` key -> drop reason (the message was not merged).
DROPS: Final = {
    "dropped_busy": "busy",
    "dropped_store_down": "store_down",
    "dropped_faulty": "faulty",
}

#: Every family a relay exports besides the process and platform collectors'
#: (``process_*``, ``python_info``), as the text parser names them.
FAMILIES: Final = {
    "errmesh_build_info": "gauge",
    "errmesh_reports_received": "counter",
    "errmesh_reports_acked": "counter",
    "errmesh_reports_spooled": "counter",
    "errmesh_dropped": "counter",
    "errmesh_rejected": "counter",
    "errmesh_banned_peers": "gauge",
    "errmesh_gossip_lag_seconds": "histogram",
    "errmesh_gossip_messages": "counter",
    "errmesh_queue_depth": "gauge",
    "errmesh_github_requests": "counter",
    "errmesh_github_budget_remaining": "gauge",
    "errmesh_github_writes_last_hour": "gauge",
    "errmesh_github_writes_per_hour": "gauge",
    "errmesh_github_mesh_writes_last_hour": "gauge",
    "errmesh_leader_changes": "counter",
    "errmesh_elections_won": "counter",
    "errmesh_step_downs": "counter",
    "errmesh_is_leader": "gauge",
    "errmesh_term": "gauge",
    "errmesh_peers": "gauge",
    "errmesh_spool_pending": "gauge",
    "errmesh_signatures": "gauge",
    "errmesh_faults": "counter",
    "errmesh_store_ok": "gauge",
    "errmesh_quarantined": "gauge",
    "errmesh_events": "counter",
}


def _version() -> str:
    try:
        return importlib.metadata.version("errmesh")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _number(value: Any) -> float:
    """A status number as a sample; NaN when the store could not tell (None)."""
    return math.nan if value is None else float(value)


def _counter(name: str, doc: str, label: str, counts: dict[str, int], known: Any) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key in sorted({*known, *counts}):
        family.add_metric([key], counts.get(key, 0))
    return family


def _gauge(name: str, doc: str, value: Any) -> Metric:
    return GaugeMetricFamily(name, doc, value=_number(value))


def _plain_counter(name: str, doc: str, value: int) -> Metric:
    return CounterMetricFamily(name, doc, value=value)


class RelayCollector:
    """The relay's own families, built from its counters at each scrape."""

    def __init__(self, peer: MeshPeer, clock: Callable[[], float] = time.time) -> None:
        self.peer = peer
        self.clock = clock
        self.version = _version()

    def describe(self) -> list[Metric]:
        return []  # families are known only at scrape time: no registration check

    def collect(self) -> Iterator[Metric]:
        status = relay_status(self.peer)  # never raises; reads the store once
        build = GaugeMetricFamily(
            "errmesh_build_info", "The errmesh version this relay runs.", labels=["version"]
        )
        build.add_metric([self.version], 1)
        yield build
        yield from self._reports(status)
        yield from self._gossip(status)
        yield from self._github()
        yield from self._election(status)
        yield from self._store(status)

    def _reports(self, status: dict[str, Any]) -> Iterator[Metric]:
        stats: dict[str, int] = status["stats"]
        yield _plain_counter(
            "errmesh_reports_received",
            "Reports received over gossip and merged into the store.",
            stats.get("reports", 0),
        )
        yield _plain_counter(
            "errmesh_reports_acked",
            "Reports this relay acked to their direct senders (durably stored here).",
            stats.get("acked", 0),
        )
        yield _plain_counter(
            "errmesh_reports_spooled",
            "Reports taken from this machine's spool (failing CLIs, hand-overs) and published.",
            stats.get("drained", 0),
        )
        drops = {reason: stats.get(key, 0) for key, reason in DROPS.items()}
        yield _counter(
            "errmesh_dropped",
            "Messages dropped before merging, by reason (busy backlog, store down, faulty).",
            "reason",
            drops,
            drops,
        )
        yield _counter(
            "errmesh_rejected",
            "Gossip messages refused by the validator, by reason.",
            "reason",
            status["rejected"],
            REJECT_REASONS,
        )
        yield _gauge("errmesh_banned_peers", "Peers banned now.", len(status["banned"]))
        others = {k: v for k, v in stats.items() if k not in DROPS}
        yield _counter("errmesh_events", "The relay's other event counts.", "event", others, ())

    def _gossip(self, status: dict[str, Any]) -> Iterator[Metric]:
        lags = self.peer.lags
        histogram = HistogramMetricFamily(
            "errmesh_gossip_lag_seconds",
            "How long a received message waited in the relay's receive channel, by kind.",
            labels=["kind"],
        )
        bounds = [*(repr(float(b)) for b in LAG_BUCKETS), "+Inf"]  # "5.0", as Go says it
        for kind in sorted({*KINDS, *lags.buckets}):
            counts = lags.cumulative(kind)
            histogram.add_metric(
                [kind], list(zip(bounds, counts, strict=True)), lags.sums.get(kind, 0.0)
            )
        yield histogram
        yield _counter(
            "errmesh_gossip_messages",
            "What the gossip edge saw: messages received, rejected and dropped.",
            "event",
            dict(status["gossip"]),
            (),
        )
        depth = GaugeMetricFamily(
            "errmesh_queue_depth",
            "Each direct peer's outbound libp2p queue (it holds 32).",
            labels=["peer"],
        )
        for peer, length in sorted(status["queues"].items()):
            depth.add_metric([peer], length)
        yield depth
        yield _gauge("errmesh_peers", "Direct gossip connections.", len(status["peers"]))

    def _github(self) -> Iterator[Metric]:
        sink = self.peer.sink
        usage = sink.usage(self.clock()) if isinstance(sink, Metered) else SinkUsage()
        requests = CounterMetricFamily(
            "errmesh_github_requests",
            "Requests to GitHub by kind (read, write) and answer class (2xx.. transport).",
            labels=["kind", "status"],
        )
        for kind in REQUEST_KINDS:
            for answer in REQUEST_STATUSES:
                requests.add_metric([kind, answer], usage.requests.get((kind, answer), 0))
        yield requests
        yield _gauge(
            "errmesh_github_budget_remaining",
            "GitHub's primary rate limit left, as its last answer said (NaN: not known).",
            usage.remaining,
        )
        yield _gauge(
            "errmesh_github_writes_last_hour",
            "Writes sent to GitHub in the last hour.",
            usage.writes_last_hour,
        )
        yield _gauge(
            "errmesh_github_writes_per_hour",
            "The writes per hour errmesh allows itself (0: no GitHub sink).",
            usage.writes_per_hour,
        )
        yield _gauge(
            "errmesh_github_mesh_writes_last_hour",
            "Writes all the mesh's leaders sent GitHub in the last hour (the shared budget).",
            self.peer.pace.ledger.total(self.clock()),
        )

    def _election(self, status: dict[str, Any]) -> Iterator[Metric]:
        election = self.peer.election.statistics()
        yield _plain_counter(
            "errmesh_leader_changes",
            "Changes of the leader this relay believes in (leader or term).",
            election.leader_changes,
        )
        yield _plain_counter(
            "errmesh_elections_won", "Terms this relay started leading.", election.elections_won
        )
        yield _plain_counter(
            "errmesh_step_downs", "Times this relay stopped leading.", election.step_downs
        )
        is_leader = 1 if status["role"] == "leader" else 0
        yield _gauge("errmesh_is_leader", "1 while this relay leads.", is_leader)
        yield _gauge("errmesh_term", "The election term this relay is in.", status["term"])

    def _store(self, status: dict[str, Any]) -> Iterator[Metric]:
        yield _gauge(
            "errmesh_spool_pending",
            "Reports in this machine's spool not yet merged (NaN: store unreadable).",
            status["spool_pending"],
        )
        yield _gauge(
            "errmesh_signatures",
            "Signatures in the replicated aggregate (NaN: store unreadable).",
            status["signatures"],
        )
        yield _counter(
            "errmesh_faults",
            "Failures of the relay's loops, by loop.",
            "loop",
            status["faults"],
            LOOPS,
        )
        yield _gauge(
            "errmesh_store_ok", "1 while the store can be written.", status["store"]["ok"] * 1
        )
        yield _gauge(
            "errmesh_quarantined", "Signatures quarantined now.", status["quarantined_count"]
        )


def relay_registry(peer: MeshPeer) -> CollectorRegistry:
    """A registry of its own for ``peer``: its families and its process's."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(RelayCollector(peer))
    return registry


def scrape(registry: CollectorRegistry) -> bytes:
    """The registry in the text exposition format (:data:`CONTENT_TYPE`)."""
    return generate_latest(registry)
