"""The invariants a run must keep, checked against its history (Jepsen's checker).

After the heal and a bounded convergence time:

1. **exactly once**: every occurrence whose report errmesh committed is
   counted once, neither lost nor twice, in every relay's aggregate (one
   signature per error) and on its issue (the total the kept issue shows);
2. **one open issue per signature** (duplicates opened during a partition
   must have been closed by reconciliation); every issue opened beyond one
   per signature is counted as a duplicate;
3. **GitHub's limits**: at most 80 writes in any minute and 500 in any hour
   over the whole fleet (one bot account), and each writer's writes at least
   1 s apart (two leaders of a partition interleave by design: counted, not
   failed);
4. **no write in a lost term**: a write GitHub received from host ``h`` is
   attributed to ``h``'s tenure at that instant (its own log). It is stale
   if ``h`` was not leading then (beyond ``SLACK`` for a request already
   on its way), or if another host had begun leading in a higher term more
   than ``LEASE`` seconds before, while the two were not separated by a
   fault (a partition, a cut link): by then every heartbeat would have
   told ``h``. A paused (SIGSTOP) process is not separated: the network was
   fine, the leader was not.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from scripts.cluster.history import History, Tenure

__all__ = ["LEASE", "SLACK", "Verdict", "check", "committed_counts", "converged"]

LEASE = 3.0  # the election's timeout: every heartbeat of a newer leader missed
SLACK = 0.3  # a write whose gate check passed just before a step-down
PER_MINUTE, PER_HOUR, MIN_INTERVAL = 80, 500, 1.0


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def committed_counts(intents: list[dict[str, Any]], clis: list[dict[str, Any]]) -> Counter[str]:
    """Error type -> occurrences errmesh committed (the CLI failed as itself)."""
    ok = {c["id"] for c in clis if c["committed"]}
    return Counter(i["kind"] for i in intents if i["id"] in ok)


def expected_counts(history: History) -> Counter[str]:
    return committed_counts(history.intents, history.clis)


def converged(
    states: dict[int, dict[str, dict[str, Any]]],
    issues: list[dict[str, Any]],
    expected: Counter[str],
) -> list[str]:
    """What still differs from the converged end state (empty: converged)."""
    problems: list[str] = []
    kinds: dict[str, str] = {}
    for host, by_sig in sorted(states.items()):
        seen: Counter[str] = Counter()
        for sig, state in by_sig.items():
            kinds[sig] = state["kind"]
            seen[state["kind"]] += state["total"]
            if state["total"] != expected.get(state["kind"], 0):
                problems.append(
                    f"h{host}: {state['kind']} counted {state['total']}, "
                    f"committed {expected.get(state['kind'], 0)}"
                )
        missing = [k for k in expected if k not in seen]
        problems += [f"h{host}: {k} not counted at all" for k in missing]
        dup = [k for k, n in Counter(s["kind"] for s in by_sig.values()).items() if n > 1]
        problems += [f"h{host}: {k} under two signatures" for k in dup]
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for issue in issues:
        by_kind[kinds.get(str(issue["signature"]), str(issue["title"]))].append(issue)
    for kind, count in expected.items():
        open_ = [i for i in by_kind.get(kind, []) if i["state"] == "open"]
        if len(open_) != 1:
            problems.append(f"{kind}: {len(open_)} open issues ({[i['number'] for i in open_]})")
        elif open_[0]["total"] != count:
            problems.append(f"{kind}: issue #{open_[0]['number']} shows {open_[0]['total']}, "
                            f"committed {count}")  # fmt: skip
    return problems


def check(history: History) -> Verdict:
    verdict = Verdict()
    expected = expected_counts(history)
    verdict.violations += converged(history.states, history.issues, expected)
    _figures(history, expected, verdict)
    _budget(history, verdict)
    _stale_writes(history, verdict)
    return verdict


def _figures(history: History, expected: Counter[str], verdict: Verdict) -> None:
    totals: dict[str, list[int]] = defaultdict(list)
    for by_sig in history.states.values():
        per_kind: Counter[str] = Counter()
        for state in by_sig.values():
            per_kind[state["kind"]] += state["total"]
        for kind in expected:
            totals[kind].append(per_kind.get(kind, 0))
    signatures = {str(i["signature"]) for i in history.issues}
    verdict.figures.update(
        occurrences=sum(expected.values()),
        uncommitted=len(history.intents) - sum(expected.values()),
        lost=sum(max(0, n - min(totals[k], default=0)) for k, n in expected.items()),
        duplicated=sum(max(0, max(totals[k], default=0) - n) for k, n in expected.items()),
        duplicate_issues=len(history.issues) - len(signatures),
        open_issues=sum(1 for i in history.issues if i["state"] == "open"),
        convergence_s=None
        if history.converged_at is None
        else round(history.converged_at - history.healed_at, 2),
        writes=len(history.writes),
        leaders=len(history.tenures),
        max_term=max((t.term for t in history.tenures), default=0),
        faults=sum(1 for s in history.schedule if s["action"] not in ("clis", "wait")),
        **_propagation(history),
        **_failover(history),
    )


def _propagation(history: History) -> dict[str, float | None]:
    """Raise -> counted by every relay: the count curve's delay (k-th intent of a
    kind -> the sample where every relay's total reached k)."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for intent in sorted(history.committed(), key=lambda i: float(i["time"])):
        by_kind[intent["kind"]].append(float(intent["time"]))
    reached: dict[tuple[str, int, int], float] = {}
    for sample in history.samples:
        for kind, total in sample["totals"].items():
            for k in range(1, min(total, len(by_kind.get(kind, []))) + 1):
                reached.setdefault((kind, int(sample["host"]), k), float(sample["time"]))
    hosts = {int(s["host"]) for s in history.samples}
    delays = []
    for kind, times in by_kind.items():
        for k, at in enumerate(times, 1):
            when = [reached.get((kind, h, k)) for h in hosts]
            if all(w is not None for w in when):
                delays.append(max(w for w in when if w is not None) - at)
    if not delays:
        return {"propagation_p50_s": None, "propagation_p99_s": None}
    delays.sort()
    p99 = delays[min(len(delays) - 1, math.ceil(0.99 * len(delays)) - 1)]
    return {
        "propagation_p50_s": round(statistics.median(delays), 2),
        "propagation_p99_s": round(p99, 2),
    }


def _failover(history: History) -> dict[str, float | None]:
    """Leader killed or paused -> another relay leading, by its own log."""
    gaps = []
    for event in history.events:
        if event["action"] not in ("kill", "stop") or not event.get("was_leader"):
            continue
        at, host = float(event["time"]), int(event["host"])
        nxt = [t.start - at for t in history.tenures if t.host != host and t.start >= at]
        if nxt:
            gaps.append(min(nxt))
    return {"failover_s": round(max(gaps), 2) if gaps else None}


def _budget(history: History, verdict: Verdict) -> None:
    times = sorted(float(w["time"]) for w in history.writes)
    j = k = 0
    for i, t in enumerate(times):
        while t - times[j] >= 60:
            j += 1
        while t - times[k] >= 3600:
            k += 1
        if i - j + 1 > PER_MINUTE:
            verdict.violations.append(f"write {i + 1}: {i - j + 1} writes within a minute")
            break
        if i - k + 1 > PER_HOUR:
            verdict.violations.append(f"write {i + 1}: {i - k + 1} writes within an hour")
            break
    interleaved = sum(1 for a, b in itertools.pairwise(times) if b - a < MIN_INTERVAL)
    by_host: dict[int, list[float]] = defaultdict(list)
    for w in history.writes:
        by_host[int(w["host"])].append(float(w["time"]))
    for host, own in sorted(by_host.items()):
        own.sort()
        close = [b - a for a, b in itertools.pairwise(own) if b - a < MIN_INTERVAL - 0.05]
        if close:
            verdict.violations.append(
                f"h{host}: {len(close)} writes less than {MIN_INTERVAL:g} s after its previous "
                f"one (closest {min(close):.3f} s)"
            )
    verdict.figures["interleaved_writes"] = interleaved


def _separations(history: History) -> list[tuple[float, float, set[frozenset[int]]]]:
    """(start, end, host pairs cut apart) for every partition and cut link."""
    hosts = sorted({int(s["host"]) for s in history.samples})
    out: list[tuple[float, float, set[frozenset[int]]]] = []
    open_partition: tuple[float, set[frozenset[int]]] | None = None
    links: dict[int, float] = {}
    for event in history.events:
        at, action = float(event["time"]), event["action"]
        if action in ("partition", "heal", "heal_all") and open_partition is not None:
            out.append((open_partition[0], at, open_partition[1]))
            open_partition = None
        if action == "partition":
            side = {h: n for n, g in enumerate(event["groups"]) for h in g}
            pairs = {frozenset((a, b)) for a in hosts for b in hosts
                     if a < b and side.get(a, -a) != side.get(b, -b)}  # fmt: skip
            open_partition = (at, pairs)
        elif action == "link_down":
            links[int(event["host"])] = at
        elif action in ("link_up", "heal_all"):
            for host in [int(event["host"])] if action == "link_up" else list(links):
                start = links.pop(host, None)
                if start is not None:
                    out.append((start, at, {frozenset((host, o)) for o in hosts if o != host}))
    end = history.healed_at
    if open_partition is not None:
        out.append((open_partition[0], end, open_partition[1]))
    for host, start in links.items():
        out.append((start, end, {frozenset((host, o)) for o in hosts if o != host}))
    return out


def _tenure_at(tenures: list[Tenure], host: int, at: float) -> Tenure | None:
    mine = [t for t in tenures if t.host == host and t.start <= at <= t.end + SLACK]
    return max(mine, key=lambda t: t.start) if mine else None


def _stale_writes(history: History, verdict: Verdict) -> None:
    cuts = _separations(history)
    stale: list[str] = []
    for w in history.writes:
        host, at = int(w["host"]), float(w["time"])
        tenure = _tenure_at(history.tenures, host, at)
        if tenure is None:
            stale.append(f"h{host} wrote {w['route']} at {at:.3f} while not leading")
            continue
        for other in history.tenures:
            if other.host == host or other.term <= tenure.term or other.start >= at:
                continue
            pair = frozenset((host, other.host))
            knowable = other.start
            for start, end, pairs in cuts:
                if pair in pairs and start <= at and end >= other.start:
                    knowable = max(knowable, end)
            if at - knowable > LEASE:
                stale.append(
                    f"h{host} wrote {w['route']} at {at:.3f} in term {tenure.term}, "
                    f"{at - knowable:.1f} s after h{other.host} led in term {other.term}"
                )
                break
    verdict.figures["stale_writes"] = len(stale)
    verdict.violations += [f"stale write: {s}" for s in stale[:10]]
