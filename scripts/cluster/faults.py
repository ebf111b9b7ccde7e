"""A fault schedule and the harness that carries it out on a ``Cluster``.

A schedule is a list of :class:`Step` (seconds from the start, an action,
its arguments), made from a seed by a scenario (``scenarios.py``); the same
seed makes the same schedule. Symbolic targets (``"leader"``, ``"stopped"``,
``"killed"``, ``"downed"``) are resolved when the step runs, and
``when="mid-round"`` waits for the leader's next write to GitHub, then a
random part of a second: a kill or a pause lands inside a leader round.

Actions: ``clis`` (a load of failing CLIs, in the background), ``partition``
(``groups`` of hosts, or ``sizes`` with the leader in ``leader_in``),
``heal``, ``net`` (latency, jitter, loss for every link), ``link_down`` /
``link_up`` (a host's veth, and its proxy links), ``kill``, ``stop``,
``cont``, ``restart``, ``disk_full`` / ``disk_free``, ``clock`` (restart a
relay with its wall clock off), ``github`` (5xx, timeouts, a secondary
limit with retry-after, an outage, clear).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from scripts.cluster.cluster import Cluster, ClusterTimeout, poll
from scripts.cluster.hosts import ERRORS, Host

__all__ = ["Harness", "Step"]


@dataclass(frozen=True)
class Step:
    at: float
    action: str
    args: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"t+{self.at:5.1f} s  {self.action}({args})"


class Harness:
    """Carries out steps on one cluster, with its own seeded random source."""

    def __init__(self, cluster: Cluster, seed: int) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.loads: list[threading.Thread] = []
        self.killed: set[int] = set()
        #: Hosts whose link is down (``link_up`` of ``"downed"`` brings one back).
        self.downed: set[int] = set()
        self.full_disks: set[int] = set()
        self.actions: dict[str, Callable[[dict[str, Any]], None]] = {
            "clis": self.clis,
            "partition": self.partition,
            "heal": self.heal,
            "net": self.net,
            "link_down": lambda a: self.link(a, up=False),
            "link_up": lambda a: self.link(a, up=True),
            "kill": lambda a: self.signal(a, signal.SIGKILL),
            "stop": lambda a: self.signal(a, signal.SIGSTOP),
            "cont": lambda a: self.signal(a, signal.SIGCONT),
            "restart": self.restart,
            "disk_full": self.disk_full,
            "disk_free": self.disk_free,
            "clock": self.clock,
            "github": self.github,
            "wait": lambda a: None,
        }

    def run(self, steps: list[Step], *, started: float) -> None:
        for step in sorted(steps, key=lambda s: s.at):
            delay = started + step.at - time.time()
            if delay > 0:
                time.sleep(delay)  # the schedule's own clock, not a wait for gossip
            self.actions[step.action](dict(step.args))

    # -- resolving targets ---------------------------------------------------------

    def leader(self, timeout: float = 15.0) -> Host:
        """The current leader (agreed, else any relay that says it leads)."""

        def find() -> Host | None:
            host = self.cluster.leader_host()
            if host is not None:
                return host
            leading = [i for i, s in self.cluster.statuses().items() if s.get("role") == "leader"]
            return self.cluster.hosts[leading[0]] if leading else None

        return poll(find, timeout, "a relay leads")

    def target(self, who: Any) -> Host:
        if who == "leader":
            return self.leader()
        if who == "stopped":
            return next(h for h in self.cluster.hosts.values() if h.stopped)
        if who == "killed":
            return self.cluster.hosts[min(self.killed)]
        if who == "downed":
            return self.cluster.hosts[min(self.downed)]
        if who == "follower":
            leader = self.leader()
            return self.rng.choice([h for h in self.cluster.hosts.values() if h is not leader])
        return self.cluster.hosts[int(who)]

    def mid_round(self, host: Host, timeout: float = 30.0) -> bool:
        """Wait for ``host``'s next write to GitHub, then a random fraction of a second."""
        seen = len(self.cluster.github.writes())
        try:
            poll(
                lambda: any(w.host == host.index for w in self.cluster.github.writes()[seen:]),
                timeout,
                f"h{host.index} writes to GitHub",
            )
        except ClusterTimeout:
            return False
        time.sleep(self.rng.uniform(0.0, 0.8))
        return True

    # -- actions ------------------------------------------------------------------

    def clis(self, args: dict[str, Any]) -> None:
        hosts = list(args.get("hosts") or self.cluster.topology.indices)
        kinds = list(args.get("kinds") or ERRORS)
        count, spacing = int(args.get("count", 10)), float(args.get("spacing", 0.2))
        mode = str(args.get("mode", "local"))
        rng = random.Random(self.rng.random())
        plan = [
            (hosts[n % len(hosts)], rng.choice(kinds), mode if mode != "mix" else rng.choice(
                ("local", "local", "embedded")))
            for n in range(count)
        ]  # fmt: skip
        self.cluster.event("clis", hosts=hosts, kinds=kinds, count=count, mode=mode)

        def load() -> None:
            for host, kind, how in plan:
                if self.cluster.hosts[host].alive() or how == "local":
                    self.cluster.cli(host, kind, mode=how)
                time.sleep(spacing)

        thread = threading.Thread(target=load, name="cluster-load", daemon=True)
        thread.start()
        self.loads.append(thread)

    def partition(self, args: dict[str, Any]) -> None:
        groups = [set(g) for g in args.get("groups", [])]
        if not groups:
            leader = self.leader().index
            rest = [i for i in self.cluster.topology.indices if i != leader]
            self.rng.shuffle(rest)
            sizes = list(args["sizes"])
            side = int(args.get("leader_in", 0))
            for n, size in enumerate(sizes):
                group = {leader} if n == side else set()
                while len(group) < size and rest:
                    group.add(rest.pop())
                groups.append(group)
        self.cluster.proxy.partition(*groups)
        self.cluster.event("partition", groups=[sorted(g) for g in groups])

    def heal(self, args: dict[str, Any]) -> None:
        self.cluster.proxy.heal()
        self.cluster.event("heal")

    def net(self, args: dict[str, Any]) -> None:
        changes = {k: float(args[k]) for k in ("latency", "jitter", "loss") if k in args}
        self.cluster.proxy.set_all(**changes)
        self.cluster.event("net", **changes)

    def link(self, args: dict[str, Any], *, up: bool) -> None:
        host = self.target(args["host"])
        (self.downed.discard if up else self.downed.add)(host.index)
        self.cluster.topology.set_link(host.index, up)
        self.cluster.proxy.isolate(host.index, blocked=not up)
        self.cluster.event("link_up" if up else "link_down", host=host.index)

    def signal(self, args: dict[str, Any], signum: int) -> None:
        host = self.target(args.get("who", "leader"))
        was_leader = host.status().get("role") == "leader"
        in_round = self.mid_round(host) if args.get("when") == "mid-round" else None
        at = host.signal(signum)
        if signum == signal.SIGKILL:
            self.killed.add(host.index)
        names = {signal.SIGKILL: "kill", signal.SIGSTOP: "stop", signal.SIGCONT: "cont"}
        name = names[signal.Signals(signum)]
        self.cluster.event(name, host=host.index, was_leader=was_leader, mid_round=in_round)
        del at

    def restart(self, args: dict[str, Any]) -> None:
        host = self.target(args.get("who", "killed"))
        self.killed.discard(host.index)
        self.cluster.restart(host.index)

    def disk_full(self, args: dict[str, Any]) -> None:
        host = self.target(args.get("host", "follower"))
        written = host.fill_disk()
        self.full_disks.add(host.index)
        self.cluster.event("disk_full", host=host.index, bytes=written)

    def disk_free(self, args: dict[str, Any]) -> None:
        for index in list(self.full_disks):
            self.cluster.hosts[index].free_disk()
            self.full_disks.discard(index)
            self.cluster.event("disk_free", host=index)

    def clock(self, args: dict[str, Any]) -> None:
        host = self.target(args.get("host", "follower"))
        host.clock_offset = float(args["offset"])
        self.cluster.restart(host.index)
        self.cluster.event("clock", host=host.index, offset=host.clock_offset)

    def github(self, args: dict[str, Any]) -> None:
        faults = self.cluster.github.app.faults
        kind = args["kind"]
        times = int(args.get("times", 3))
        if kind == "error":
            faults.error(int(args.get("status", 502)), times=times)
        elif kind == "timeout":
            faults.timeout(float(args.get("seconds", 6.0)), times=times)
        elif kind == "secondary":
            faults.secondary_limit(int(args.get("retry_after", 5)), hold=True, times=1)
        elif kind == "outage":
            self.cluster.github.app.down_until(time.time() + float(args.get("seconds", 10)))
        elif kind == "clear":
            faults.clear()
        self.cluster.event("github", **args)

    # -- the end ----------------------------------------------------------------

    def heal_all(self) -> float:
        """Undo every fault still in force (a repaired fleet); returns when."""
        for host in self.cluster.hosts.values():
            if host.stopped:
                self.signal({"who": host.index}, signal.SIGCONT)
        self.disk_free({})
        for index in self.cluster.topology.indices:
            self.cluster.topology.set_link(index, True)
        self.downed.clear()
        self.cluster.proxy.clear()
        self.cluster.github.app.faults.clear()
        for index in sorted(self.killed):
            self.restart({"who": index})
        for host in self.cluster.hosts.values():
            if not host.alive():
                self.cluster.restart(host.index)
        return float(self.cluster.event("heal_all")["time"])

    def wait_loads(self, timeout: float = 120.0) -> None:
        for thread in self.loads:
            thread.join(timeout)
        self.cluster.finish_clis()
