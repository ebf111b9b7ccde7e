"""The fault schedule: drawn from the seed, printed on failure, replayed by the seed.

Kinds (all of them end by the end of the active phase, so the quiet phase
starts healed):

============  ===============================================================
partition     every machine (relays and reporters) in one of 2 or 3 groups;
              nothing crosses groups until it heals. One at a time.
crash         a relay is SIGKILLed (its store survives) and restarted later
pause         a relay is SIGSTOPped and SIGCONTed later (clock runs on)
loss          a share of the frames on some machines' links is dropped
sink_down     GitHub answers 5xx to every request
slow          a relay merges 200 times slower (its backlog fills)
============  ===============================================================

Crashes and pauses aim at the leader of the moment (``FaultMix.at_leader``),
resolved when the fault starts and printed with the schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from scripts.sim.config import SimConfig
from scripts.sim.scheduler import stream

__all__ = ["Fault", "schedule"]


@dataclass(slots=True, kw_only=True)
class Fault:
    at: float
    kind: str
    length: float
    #: Relay index (crash, pause, slow), machines (loss), or a group per machine (partition).
    nodes: tuple[int, ...] = ()
    at_leader: bool = False
    value: float = 0.0
    #: Filled in when it starts: the relay it hit, and how to say so.
    target: int | None = None
    resolved: str = field(default="")

    @property
    def end(self) -> float:
        return self.at + self.length

    def describe(self) -> str:
        if self.kind == "partition":
            what = _groups_text(self.nodes)
        elif self.kind == "loss":
            what = f"{self.value:.0%} on {len(self.nodes)} machines"
        elif self.kind == "sink_down":
            what = "GitHub 5xx"
        else:
            what = self._target()
        return f"{self.at:8.2f}s +{self.length:5.1f}s {self.kind:9s} {what}"

    def _target(self) -> str:
        if self.at_leader:
            return f"the leader ({self.resolved or 'unresolved'})"
        return self.resolved or f"p{self.nodes[0]:05d}"


def _groups_text(groups: tuple[int, ...]) -> str:
    sizes: dict[int, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    return "+".join(str(sizes[g]) for g in sorted(sizes)) + " machines"


def schedule(config: SimConfig) -> list[Fault]:
    """The run's faults, sorted by start."""
    mix = config.faults
    rng = stream(config.seed, "faults")
    kinds = [k for k, w in mix.weights().items() if w > 0]
    weights = [mix.weights()[k] for k in kinds]
    last = config.duration - 5.0
    if mix.count <= 0 or not kinds or last <= mix.start:
        return []
    machines = config.peers + config.reporters
    faults: list[Fault] = []
    partition_free = mix.start
    for _ in range(mix.count):
        kind = rng.choices(kinds, weights)[0]
        at = rng.uniform(mix.start, last)
        length = min(rng.uniform(mix.min_length, mix.max_length), config.duration - at)
        if kind == "partition":
            if config.peers < 2:
                continue
            at = max(at, partition_free)
            if at >= last:
                continue
            length = min(length, config.duration - at)
            partition_free = at + length + 1.0
            faults.append(Fault(at=at, kind=kind, length=length, nodes=_split(rng, config)))
        elif kind in ("crash", "pause", "slow"):
            leader = kind != "slow" and rng.random() < mix.at_leader
            target = rng.randrange(config.peers)
            faults.append(Fault(at=at, kind=kind, length=length, nodes=(target,), at_leader=leader))
        elif kind == "loss":
            share = 1.0 if rng.random() < 0.3 else 0.2
            hit = tuple(n for n in range(machines) if rng.random() < share) or (0,)
            value = rng.uniform(0.05, 0.3)
            faults.append(Fault(at=at, kind=kind, length=length, nodes=hit, value=value))
        else:
            faults.append(Fault(at=at, kind=kind, length=length))
    faults.sort(key=lambda f: (f.at, f.kind))
    return faults


def _split(rng: random.Random, config: SimConfig) -> tuple[int, ...]:
    """A group for every machine; every group holds at least one relay."""
    parts = 3 if config.peers >= 3 and rng.random() < 0.3 else 2
    while True:
        groups = tuple(rng.randrange(parts) for _ in range(config.peers + config.reporters))
        if len(set(groups[: config.peers])) == parts:
            return groups
