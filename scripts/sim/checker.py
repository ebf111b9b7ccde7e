"""The invariants a run must keep, judged from its history, its relays and its GitHub.

After the faults healed and the quiet phase ran (:mod:`scripts.sim.simulation`):

``spooled``      nothing is left in any spool (every report drained or acked)
``counted``      every relay counts every injected occurrence exactly once:
                 per (origin, signature) the injected number, and no origin
                 that injected nothing
``overcounted``  no relay ever counts an occurrence twice (per origin at most
                 the injected number), whatever converged
``lost``         every injected occurrence is held by some relay
``identical``    every relay holds the same aggregate (states compared whole)
``issues``       one open issue per signature, showing its total, and the
                 replicated link pointing at it (duplicates reconciled)
``converged``    both of the above within the quiet phase's bound
``one-leader``   each term was taken (``BecameLeader``) by one relay at most
``term-owner``   every write GitHub saw carries a (relay, term) in which
                 that relay had become leader
``stale-write``  no relay started a write in term T after a heartbeat of a
                 higher term had been delivered to it (to its socket, even
                 while it was paused and could not read it)
``codec``        every sampled message decoded to itself

A failure names the invariant; the caller prints the seed and the schedule.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from scripts.sim.simulation import Simulation

__all__ = ["Violation", "check"]


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


def check(sim: Simulation) -> list[Violation]:
    out: list[Violation] = []
    out += _spooled(sim)
    out += _mesh_counts(sim)
    out += _counted(sim)
    out += _identical(sim)
    out += _issues(sim)
    out += _elections(sim)
    if sim.metrics.codec_mismatches:
        out.append(Violation("codec", f"{sim.metrics.codec_mismatches} messages changed"))
    return out


def _spooled(sim: Simulation) -> list[Violation]:
    left = [f"{r.name}: {len(r.spool)}" for r in sim.relays if r.spool]
    left += [f"{r.name}: {len(r.spool)}" for r in sim.reporters if r.spool]
    return [Violation("spooled", ", ".join(left[:5]))] if left else []


def _mesh_counts(sim: Simulation) -> list[Violation]:
    """At most once anywhere, at least once somewhere: what holds even before convergence."""
    out = []
    for (origin, sig), count in sorted(sim.history.injected.items()):
        held = []
        for relay in sim.relays:
            state = relay.agg.get(sig)
            rec = None if state is None else state.counts.get(origin)
            held.append(0 if rec is None else rec.count)
        where = f"{sim.history.origins[origin]}/{sig.hex()[:8]}"
        if max(held) > count:
            out.append(Violation("overcounted", f"{where}: {max(held)} of {count}"))
        elif max(held) < count:
            out.append(Violation("lost", f"{where}: at most {max(held)} of {count} held"))
    return out[:5]


def _counted(sim: Simulation) -> list[Violation]:
    out = []
    injected = sim.history.injected
    names = sim.history.origins
    for relay in sim.relays:
        wrong = []
        for (origin, sig), count in sorted(injected.items()):
            state = relay.agg.get(sig)
            rec = None if state is None else state.counts.get(origin)
            got = 0 if rec is None else rec.count
            if got != count:
                wrong.append(f"{names[origin]}/{sig.hex()[:8]} {got} of {count}")
        for state in relay.agg:
            for origin in state.counts:
                if (origin, state.signature) not in injected:
                    wrong.append(
                        f"unknown origin {origin.hex()[:8]} in {state.signature.hex()[:8]}"
                    )
            if state.evicted_origins:
                wrong.append(f"{state.signature.hex()[:8]} evicted {state.evicted_origins} origins")
        if wrong:
            out.append(Violation("counted", f"{relay.name}: {'; '.join(wrong[:4])}"))
    return out[:5]


def _identical(sim: Simulation) -> list[Violation]:
    first = sim.relays[0].agg.snapshot()
    odd = [r.name for r in sim.relays[1:] if r.agg.snapshot() != first]
    return (
        [Violation("identical", f"{len(odd)} relays differ from p00000: {odd[:5]}")] if odd else []
    )


def _issues(sim: Simulation) -> list[Violation]:
    out = []
    if sim.data_converged is None:
        out.append(
            Violation("converged", f"data not converged {sim.config.quiet:.0f}s after the faults")
        )
    elif sim.issues_converged is None:
        out.append(
            Violation("converged", f"issues not converged {sim.config.quiet:.0f}s after the faults")
        )
    for state in sim.relays[0].agg:
        if state.detail is None:
            continue
        sig = state.signature.hex()[:8]
        issues = sim.sink.open_issues(state.signature)
        if len(issues) != 1:
            out.append(Violation("issues", f"{sig}: {len(issues)} open issues"))
        elif issues[0].shown != state.total:
            out.append(
                Violation(
                    "issues", f"{sig}: #{issues[0].number} shows {issues[0].shown} of {state.total}"
                )
            )
        elif state.link is None or state.link.number != issues[0].number:
            out.append(Violation("issues", f"{sig}: link {state.link} is not #{issues[0].number}"))
    return out


def _elections(sim: Simulation) -> list[Violation]:
    out = []
    takers: dict[int, set[int]] = defaultdict(set)
    for lead in sim.history.leads:
        takers[lead.term].add(lead.peer)
    for term, peers in sorted(takers.items()):
        if len(peers) > 1:
            names = sorted(sim.relays[p].name for p in peers)
            out.append(Violation("one-leader", f"term {term} taken by {names}"))
    for w in sim.sink.writes:
        who = sim.relays[w.peer].name
        if w.peer not in takers.get(w.term, ()):
            out.append(
                Violation(
                    "term-owner", f"{who} wrote {w.what} #{w.number} in term {w.term} it never took"
                )
            )
        heard = sim.history.heard_by(w.peer, w.started)
        if heard > w.term:
            out.append(
                Violation(
                    "stale-write",
                    f"{who} started {w.what} #{w.number} in term {w.term} at {w.started:.3f}s "
                    f"after term {heard} reached it",
                )
            )
    return out
