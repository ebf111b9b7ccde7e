"""What a simulated run is made of: one frozen value, so a seed and a config replay it.

Every number a run depends on is here (or derived from ``seed`` by
:mod:`scripts.sim.seeds`), so ``python -m scripts.sim run --seed N`` with the
same flags rebuilds the same network, fault schedule, workload and history.
The defaults are a small cluster under random faults, the shape CI checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mesh import defaults
from mesh.bundling import BundlePolicy

__all__ = ["FaultMix", "LinkModel", "SimConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkModel:
    """The simulated network between relays (seconds, probabilities).

    Each overlay link gets a base latency drawn once from a log-normal
    (median ``latency``, spread ``latency_sigma``: most links are LAN-fast, a
    few cross a region); every message on it adds an exponential jitter of
    mean ``jitter * base + hop``, so messages overtake each other (reordering)
    and each hop costs ``hop`` of validation and forwarding.
    """

    latency: float = 0.004
    latency_sigma: float = 1.0
    latency_max: float = 0.25
    jitter: float = 0.5
    hop: float = 0.0005
    #: Per hop and message: the frame is dropped on that link (a full
    #: gossipsub queue, a proxy dropping frames). Flooding routes around it.
    loss: float = 0.0
    #: Per delivery: the application sees the message once more, later (a
    #: seen-cache expiry, a reporter's resend, a restarted peer's re-publish).
    duplicate: float = 0.0
    duplicate_delay: float = 2.0
    #: Per hop: an extra delay up to ``reorder_delay`` (a retransmission).
    reorder: float = 0.0
    reorder_delay: float = 0.5
    #: gossipsub's mesh degree D, and the fewest live links a peer keeps
    #: (D_lo) before it grafts others of its side of a partition.
    degree: int = 6
    degree_low: int = 4
    #: A partitioned connection is noticed closed after this long (TCP and
    #: yamux keep-alives), a crashed peer's at once (the kernel's RST) after
    #: ``close_notice``; a healed one is redialled after ``redial``.
    partition_notice: float = 15.0
    close_notice: float = 0.2
    redial: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultMix:
    """How many random faults a run draws, and of what kinds (relative weights).

    Faults start in ``[start, duration - 5 s]`` and all end by ``duration``,
    when the quiet phase begins and convergence is measured.
    """

    count: int = 6
    start: float = 10.0
    partition: float = 3.0
    crash: float = 2.0
    pause: float = 2.0
    loss: float = 2.0
    sink_down: float = 1.0
    slow: float = 1.0
    #: Of crashes and pauses, the share aimed at the leader of the moment.
    at_leader: float = 0.5
    min_length: float = 3.0
    max_length: float = 40.0

    def weights(self) -> dict[str, float]:
        return {
            "partition": self.partition,
            "crash": self.crash,
            "pause": self.pause,
            "loss": self.loss,
            "sink_down": self.sink_down,
            "slow": self.slow,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """One simulated run: the fleet, its network, its faults, its workload, its timings."""

    seed: int = 0
    peers: int = 5
    #: Leader-eligible relays (the first ones; the rest only follow). ``None``:
    #: all of a mesh of up to 10, else 5 (a fleet gives few relays a token).
    eligible: int | None = None
    #: Machines without a relay: their failing CLIs publish reports to two
    #: relays and wait for an ack (``mesh.relay_policy.acks_for``).
    reporters: int = 2
    #: The active phase: faults and injected errors happen in ``[0, duration)``.
    duration: float = 120.0
    #: The quiet phase after it: the longest wait for convergence.
    quiet: float = 120.0
    #: Injected occurrences per second over the whole fleet, and how many
    #: distinct signatures they come from (popularity falls off as 1/rank).
    error_rate: float = 2.0
    #: Errors are injected from this time on (a fleet that booted first).
    errors_from: float = 0.0
    signatures: int = 8
    faults: FaultMix = field(default_factory=FaultMix)
    link: LinkModel = field(default_factory=LinkModel)
    #: The leader's bundling; a short window so issues converge in a run.
    policy: BundlePolicy = field(default_factory=lambda: BundlePolicy(settle=5.0, window=20.0))
    digest_every: float = defaults.DIGEST_EVERY
    #: Seconds one sink request takes (GitHub's answer, its write spacing).
    sink_latency: float = 0.4
    #: Sink actions per leader round (``RelayOptions.lead_batch``).
    lead_batch: int = 8
    #: A relay's intake: the backlog's bound, and seconds of work per data
    #: message merged (a ``slow`` fault multiplies it).
    backlog_max: int = defaults.BACKLOG_MAX
    apply_cost: float = 0.00005
    #: States per ``state`` answer message.
    state_batch: int = 32
    #: Boot times are spread over this many seconds (digest phases differ).
    start_spread: float = 5.0
    #: Share of published messages round-tripped through ``mesh.wire.encode``
    #: and ``decode`` (delivered decoded; their sizes feed the byte figures).
    codec: float = 0.05
    #: Every this many injections one is followed until every live relay has it.
    probe_every: int = 7
    #: Seconds between convergence checks in the quiet phase.
    check_every: float = 0.5
    #: Skip provably empty digest answers (identical entries, nothing young or
    #: deferred); ``tests/test_simulation.py`` checks it changes nothing.
    fast_digests: bool = True
    #: Fold every delivery into the history's hash (determinism tests).
    trace: bool = False

    @property
    def eligible_count(self) -> int:
        if self.eligible is not None:
            return max(0, min(self.eligible, self.peers))
        return self.peers if self.peers <= 10 else 5

    def replace(self, **changes: object) -> SimConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
