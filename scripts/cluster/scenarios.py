"""Named scenarios: a schedule from a seed, bounds on the figures, and the runner.

``run(name, seed, root)`` brings a cluster up, carries the schedule out,
heals everything, waits (bounded) for convergence, checks the history and
returns a :class:`Result`; a failed check prints the schedule and the
command that replays it. The CI schedules are short (``ci-*``); the issue's
targets are the others; ``soak`` is an hour of random faults by default.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.cluster.checker import Verdict, check, committed_counts, converged
from scripts.cluster.cluster import Cluster, ClusterTimeout
from scripts.cluster.faults import Harness, Step
from scripts.cluster.history import History, leadership

__all__ = ["SCENARIOS", "Result", "Scenario", "run", "soak_schedule"]

KINDS = ["ValueError", "LookupError", "ZeroDivisionError", "PermissionError"]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    schedule: Callable[[random.Random], list[Step]]
    #: figure -> the largest value it may take (targets of the issue)
    bounds: dict[str, float] = field(default_factory=dict)
    converge: float = 60.0
    hosts: int = 5
    tmpfs_mb: int | None = None


def _partition(seconds: float, *, github: bool = False) -> Callable[[random.Random], list[Step]]:
    def schedule(rng: random.Random) -> list[Step]:
        steps = [
            Step(0, "clis", {"kinds": KINDS[:2], "count": 10, "spacing": 0.2, "mode": "mix"}),
            Step(6, "partition", {"sizes": [2, 3], "leader_in": rng.choice([0, 1])}),
            # a new error on both sides: each side's leader opens an issue for it
            Step(7, "clis", {"kinds": KINDS[1:3], "count": 16, "spacing": 0.4, "mode": "mix"}),
            Step(6 + seconds, "heal"),
        ]
        if github:
            steps += [
                Step(9, "github", {"kind": "error", "status": 502, "times": 4}),
                Step(12, "github", {"kind": "timeout", "seconds": 6, "times": 2}),
                Step(16, "github", {"kind": "secondary", "retry_after": 4}),
            ]
        return steps

    return schedule


def _leader_kill(rng: random.Random) -> list[Step]:
    return [
        Step(0, "clis", {"kinds": KINDS, "count": 12, "spacing": 0.15, "mode": "mix"}),
        Step(0.5, "kill", {"who": "leader", "when": "mid-round"}),
        Step(4, "clis", {"kinds": KINDS, "count": 8, "spacing": 0.3, "mode": "mix"}),
        Step(12, "restart", {"who": "killed"}),
    ]


def _loss(loss: float, latency: float, seconds: float) -> Callable[[random.Random], list[Step]]:
    def schedule(rng: random.Random) -> list[Step]:
        return [
            Step(0, "net", {"loss": loss, "latency": latency, "jitter": latency / 4}),
            Step(
                1,
                "clis",
                {"kinds": KINDS, "count": int(seconds * 2), "spacing": 0.5, "mode": "mix"},
            ),
            Step(seconds + 2, "wait"),
        ]

    return schedule


def _pause_leader(seconds: float) -> Callable[[random.Random], list[Step]]:
    def schedule(rng: random.Random) -> list[Step]:
        return [
            Step(0, "clis", {"kinds": KINDS[:3], "count": 9, "spacing": 0.2, "mode": "local"}),
            Step(0.5, "stop", {"who": "leader", "when": "mid-round"}),
            Step(3, "clis", {"kinds": KINDS, "count": 12, "spacing": 0.4, "mode": "mix"}),
            Step(4 + seconds, "cont", {"who": "stopped"}),
            Step(6 + seconds, "clis", {"kinds": KINDS, "count": 6, "spacing": 0.3}),
        ]

    return schedule


def _disk_full(rng: random.Random) -> list[Step]:
    return [
        Step(0, "clis", {"kinds": KINDS[:2], "count": 6, "spacing": 0.2}),
        Step(4, "disk_full", {"host": "follower"}),
        Step(5, "clis", {"kinds": KINDS[:3], "count": 15, "spacing": 0.3, "mode": "mix"}),
        Step(14, "disk_free"),
    ]


def _clock(rng: random.Random) -> list[Step]:
    return [
        Step(0, "clock", {"host": "follower", "offset": rng.choice([-300, 300])}),
        Step(1, "clock", {"host": "leader", "offset": rng.choice([-90, 90])}),
        Step(8, "clis", {"kinds": KINDS, "count": 16, "spacing": 0.3, "mode": "mix"}),
        Step(14, "kill", {"who": "leader"}),
        Step(22, "restart", {"who": "killed"}),
    ]


def _link_down(rng: random.Random) -> list[Step]:
    return [
        Step(0, "clis", {"kinds": KINDS[:2], "count": 6, "spacing": 0.2}),
        Step(3, "link_down", {"host": "leader"}),
        Step(4, "clis", {"kinds": KINDS, "count": 16, "spacing": 0.4, "mode": "mix"}),
        Step(18, "link_up", {"host": "downed"}),
    ]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("ci-partition", "partition 2+3 for 14 s, errors on both sides, heal",
                 _partition(14), {"convergence_s": 30, "lost": 0, "duplicated": 0}),
        Scenario("ci-leader-kill", "leader SIGKILL mid-round, restarted 12 s later",
                 _leader_kill, {"failover_s": 3, "lost": 0, "duplicate_issues": 0}),
        Scenario("ci-loss", "5% loss, 20 ms latency for 12 s", _loss(0.05, 0.02, 12),
                 {"lost": 0, "duplicated": 0}),
        Scenario("partition-60s", "partition 2+3 for 60 s, errors on both sides, heal",
                 _partition(60), {"convergence_s": 30, "lost": 0, "duplicated": 0}),
        Scenario("partition-github-failing", "partition 2+3 for 30 s while GitHub answers "
                 "502, times out and rate-limits (retry-after)", _partition(30, github=True),
                 {"lost": 0, "duplicated": 0}),
        Scenario("leader-kill", "leader SIGKILL mid-bundle", _leader_kill,
                 {"failover_s": 3, "lost": 0, "duplicate_issues": 0}),
        Scenario("loss-10-latency-100", "10% loss, 100 ms ± 25 ms latency for 30 s",
                 _loss(0.10, 0.1, 30), {"lost": 0, "duplicated": 0}),
        Scenario("pause-leader-10s", "leader SIGSTOP mid-round for 10 s, then SIGCONT",
                 _pause_leader(10), {"stale_writes": 0, "lost": 0}),
        Scenario("disk-full", "a follower's state disk full for 9 s", _disk_full,
                 {"lost": 0, "duplicated": 0}, tmpfs_mb=48),
        Scenario("clock-offset", "two hosts' wall clocks off by minutes, then the leader killed",
                 _clock, {"lost": 0, "duplicated": 0, "duplicate_issues": 0}),
        Scenario("link-down", "the leader's veth down for 14 s", _link_down,
                 {"lost": 0, "duplicated": 0}),
    ]
}  # fmt: skip


def soak_schedule(rng: random.Random, seconds: float, hosts: int = 5) -> list[Step]:
    """Random faults for ``seconds``: one at a time, each healed, errors throughout."""
    steps = [Step(0, "clis", {"count": int(seconds), "spacing": 1.0, "mode": "mix"})]
    menu = ["partition", "kill", "stop", "loss", "github", "link_down"]
    t = 5.0
    while t < seconds - 30:
        fault = rng.choice(menu)
        hold = rng.uniform(5, 40)
        if fault == "partition":
            size = rng.randint(1, hosts // 2)
            steps += [Step(t, "partition", {"sizes": [size, hosts - size],
                                            "leader_in": rng.randint(0, 1)}),
                      Step(t + hold, "heal")]  # fmt: skip
        elif fault in ("kill", "stop"):
            who = rng.choice(["leader", "follower"])
            steps.append(Step(t, fault, {"who": who, "when": rng.choice(["now", "mid-round"])}))
            undo = "restart" if fault == "kill" else "cont"
            back = "killed" if fault == "kill" else "stopped"
            steps.append(Step(t + min(hold, 15), undo, {"who": back}))
        elif fault == "loss":
            bad = {"loss": rng.choice([0.02, 0.05, 0.1]), "latency": rng.choice([0.0, 0.05, 0.1])}
            steps += [
                Step(t, "net", {**bad, "jitter": 0.02}),
                Step(t + hold, "net", {"loss": 0.0, "latency": 0.0, "jitter": 0.0}),
            ]
        elif fault == "github":
            steps += [Step(t, "github", {"kind": rng.choice(["error", "timeout", "secondary"])}),
                      Step(t + hold, "github", {"kind": "clear"})]  # fmt: skip
        else:
            steps += [Step(t, "link_down", {"host": "follower"}),
                      Step(t + hold, "link_up", {"host": "downed"})]  # fmt: skip
        t += hold + rng.uniform(5, 20)
    steps.append(Step(seconds, "wait"))
    return steps


@dataclass
class Result:
    scenario: str
    seed: int
    history: History
    verdict: Verdict
    seconds: float

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "figures": self.verdict.figures,
            "violations": self.verdict.violations,
        }

    def explain(self) -> str:
        lines = [f"scenario {self.scenario}, seed {self.seed}: "
                 f"{'ok' if self.ok else 'FAILED'}"]  # fmt: skip
        lines += [f"  violation: {v}" for v in self.verdict.violations]
        lines.append("  schedule:")
        lines += [f"    {Step(**s)}" for s in self.history.schedule]
        lines.append("  what happened:")
        start = self.history.events[0]["time"] if self.history.events else 0.0
        for e in self.history.events:
            rest = {k: v for k, v in e.items() if k not in ("time", "action")}
            lines.append(f"    t+{e['time'] - start:6.1f} s  {e['action']} {rest or ''}")
        lines.append(f"  figures: {json.dumps(self.verdict.figures)}")
        lines.append(f"  replay: python -m scripts.cluster run {self.scenario} --seed {self.seed}")
        return "\n".join(lines)


def run(
    name: str,
    seed: int,
    root: Path,
    *,
    steps: list[Step] | None = None,
    converge: float | None = None,
) -> Result:
    """Run one scenario (or ``steps``, under the scenario ``name``) and check it."""
    scenario = SCENARIOS.get(name) or Scenario(name, "random faults", lambda rng: [])
    schedule = steps if steps is not None else scenario.schedule(random.Random(seed))
    hosts = scenario.hosts
    began = time.time()
    with Cluster(root, hosts=hosts, seed=seed, tmpfs_mb=scenario.tmpfs_mb) as cluster:
        harness = Harness(cluster, seed)
        harness.run(schedule, started=time.time())
        harness.wait_loads()
        healed_at = harness.heal_all()
        unsettled = _settle(cluster)
        stranded = _flush_stranded(cluster)
        limit = converge if converge is not None else scenario.converge
        converged_at = _converge(cluster, limit)
        left = sum(h.stranded() for h in cluster.hosts.values())  # still waiting at the end
        history = _history(cluster, name, seed, schedule, healed_at, converged_at)
    verdict = check(history)
    verdict.violations += unsettled
    verdict.figures["stranded"] = stranded
    verdict.figures["stranded_at_end"] = left
    for figure, bound in scenario.bounds.items():
        value = verdict.figures.get(figure)
        if value is None or value > bound:
            verdict.violations.append(f"target: {figure} = {value}, at most {bound:g}")
    result = Result(name, seed, history, verdict, time.time() - began)
    history.dump(root / "history.json")
    return result


def _settle(cluster: Cluster) -> list[str]:
    """After the heal: every relay up and one leader, or why not."""
    problems = []
    if not cluster.proxy.alive():
        problems.append(f"harness: the proxy died: {cluster.proxy._error!r}")
    try:
        cluster.wait_ready(60)
    except ClusterTimeout as exc:
        roles = {i: (s.get("role"), len(s.get("peers", []))) for i, s in cluster.statuses().items()}
        problems.append(f"after the heal: {exc}; (role, peers) by host: {roles}")
    return problems


def _flush_stranded(cluster: Cluster) -> int:
    """Reports embedded CLIs left in their spools wait for the next errmesh process
    there (README: "its spool, for the next errmesh process or relay"; ``errmesh
    drain`` delivers solo, not to the mesh): after the heal, one more failing
    CLI on each such host carries them. Returns how many were waiting."""
    waiting = {i: h.stranded() for i, h in cluster.hosts.items()}
    for index, count in waiting.items():
        if count:
            cluster.cli(index, "ValueError", mode="embedded")
    cluster.finish_clis()
    if any(waiting.values()):
        cluster.event("flush", stranded={f"h{i}": n for i, n in waiting.items() if n})
    return sum(waiting.values())


def _converge(cluster: Cluster, limit: float) -> float | None:
    """When every relay and the issues show exactly what was committed (None: not in time)."""
    expected = expected_counts_of(cluster)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        states = {i: h.states() for i, h in cluster.hosts.items()}
        if not converged(states, cluster.github.issues(), expected):
            return time.time()
        time.sleep(0.2)
    return None


def expected_counts_of(cluster: Cluster) -> Counter[str]:
    """What was committed so far: the intents of CLIs that failed as themselves."""
    return committed_counts(cluster.intents_written(), [c.record() for c in cluster.clis])


def _history(
    cluster: Cluster,
    name: str,
    seed: int,
    schedule: list[Step],
    healed_at: float,
    converged_at: float | None,
) -> History:
    deaths: dict[int, list[float]] = {}
    for e in cluster.events:
        if e["action"] in ("kill", "restart", "clock"):
            deaths.setdefault(int(e["host"]), []).append(float(e["time"]))
    tenures = [
        t
        for i, host in cluster.hosts.items()
        for t in leadership(i, host.log_path, deaths.get(i, []))
    ]
    return History(
        scenario=name,
        seed=seed,
        schedule=[s.as_dict() for s in schedule],
        events=list(cluster.events),
        intents=cluster.intents_written(),
        clis=[c.record() for c in cluster.clis],
        samples=list(cluster.samples),
        tenures=tenures,
        writes=[w.__dict__ for w in cluster.github.writes()],
        issues=cluster.github.issues(),
        states={i: h.states() for i, h in cluster.hosts.items()},
        live=[i for i, h in cluster.hosts.items() if h.alive()],
        healed_at=healed_at,
        converged_at=converged_at,
        proxy=dict(cluster.proxy.stats),
    )
