"""One round of the leader's work: find what is due, let the sink do it.

Solo mode runs this in the failing process itself (a mesh of one is its own
leader); the mesh's elected leader will run the same function from its loop.
The decisions come from the pure core (``mesh.bundling.plan``); this module
only feeds it the persisted state, carries out the actions through a sink,
and records the resulting issue links, stamped with the leader's ``term``.

Rounds are serialised between processes sharing a store by the store's
leader lock, so two failing CLIs on one machine never act on the same
signature at once. A sink that is down leaves the action due: the next round
(the next failing process, the relay, the next leader) retries it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from github_sink.errors import SinkError, SinkRejected
from github_sink.sink import FollowUps, Numbering, Replica, Sink, execute
from mesh.bundling import OpenIssue, ReopenIssue, plan
from mesh.errors import StoreUnavailable
from mesh.sigstate import SigState
from mesh.store import Store

__all__ = ["RoundResult", "act"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundResult:
    """What one round did, for logs, status and tests."""

    opened: int = 0
    updated: int = 0
    reopened: int = 0
    failed: int = 0
    renumbered: int = 0
    follow_ups: int = 0
    skipped: bool = False
    errors: tuple[str, ...] = ()
    #: Every state whose link this round changed, for the leader to announce.
    links: tuple[SigState, ...] = ()
    #: Signatures whose action failed with an unexpected error (not the sink's
    #: nor the disk's): the caller may quarantine them.
    faulted: tuple[bytes, ...] = ()


def act(
    store: Store,
    sink: Sink,
    *,
    now: float,
    term: int,
    flush: Collection[bytes] = (),
    lock_timeout: float = 5.0,
    max_actions: int | None = None,
    keep_going: Callable[[], bool] = lambda: True,
    skip: Callable[[bytes], bool] | None = None,
) -> RoundResult:
    """Carry out the actions due at ``now``; ``flush`` signatures skip the settle delay.

    ``max_actions`` bounds one round (the rest stay due for the next one), so
    a leader with a backlog keeps its heartbeats and its inbox going between
    rounds instead of blocking its loop for seconds. Never raises a sink
    error: failures are counted and described in the result; ``StoreError``
    from the store propagates (the caller decides). ``keep_going`` is asked
    before every action: a leader that lost its election mid-round stops.
    A sink with follow-up jobs (draft PRs, hand-overs) advances them after
    the round's actions. Signatures ``skip`` names are left alone; an action
    that fails with any other error (a bug a poisoned state reaches) costs
    only its signature, which the result lists in ``faulted``; a store that
    cannot be written at all (``StoreUnavailable``) ends the round.
    """
    with store.leader_lock(lock_timeout) as held:
        if not held:
            return RoundResult(skipped=True)
        candidates = _candidates(store, now, flush, max_actions)
        tally = _Tally()
        if isinstance(sink, Numbering):  # continue the mesh's numbering, not this folder's
            sink.number_above(store.max_link_number())
        candidates = _observe(store, sink, candidates, now, tally.written)
        done = 0
        for sig in sorted(candidates):
            if (max_actions is not None and done >= max_actions) or not keep_going():
                break
            if skip is not None and skip(sig):
                continue
            if _act_on(store, sink, sig, candidates[sig], tally, now=now, term=term, flush=flush):
                done += 1
        if isinstance(sink, Numbering) and keep_going():
            _renumber(store, sink, tally, now=now, term=term)
        if isinstance(sink, FollowUps) and keep_going():
            try:
                tally.follow_ups = sink.follow_up(now=now, term=term, load=store.load_state)
            except SinkError as exc:
                tally.errors.append(f"{sink.name} sink follow-ups: {exc}")
        return tally.result()


@dataclass(slots=True)
class _Tally:
    """A round in progress: what each step did, for the one :class:`RoundResult`."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("opened", "updated", "reopened", "failed", "renumbered"), 0
        )
    )
    errors: list[str] = field(default_factory=list)
    faulted: list[bytes] = field(default_factory=list)
    written: dict[bytes, SigState] = field(default_factory=dict)
    follow_ups: int = 0

    def result(self) -> RoundResult:
        return RoundResult(
            follow_ups=self.follow_ups,
            opened=self.counts["opened"],
            updated=self.counts["updated"],
            reopened=self.counts["reopened"],
            failed=self.counts["failed"],
            renumbered=self.counts["renumbered"],
            errors=tuple(self.errors),
            links=tuple(self.written.values()),
            faulted=tuple(self.faulted),
        )


def _candidates(
    store: Store, now: float, flush: Collection[bytes], max_actions: int | None
) -> dict[bytes, SigState]:
    """The states due at ``now`` (a bounded batch) and every ``flush`` signature's."""
    limit = 1000 if max_actions is None else max(1, max_actions * 2)
    candidates: dict[bytes, SigState] = {s.signature: s for s in store.due_states(now, limit=limit)}
    for sig in flush:
        state = store.load_state(sig)
        if state is not None:
            candidates[sig] = state
    return candidates


def _act_on(
    store: Store,
    sink: Sink,
    sig: bytes,
    candidate: SigState,
    tally: _Tally,
    *,
    now: float,
    term: int,
    flush: Collection[bytes],
) -> bool:
    """Carry out ``sig``'s due action, if any; True if one was due (done or failed).

    Every error of the action is caught in the one ``try``: the sink's count
    against the sink, any other costs only this signature (``faulted``), and
    a store that cannot be written at all ends the round.
    """
    due = False
    try:
        # Re-read the state: links announced by another leader while this
        # round was busy with GitHub (seconds per action) must be seen.
        current = store.load_state(sig) or candidate
        action = plan(current, now, store.policy, flush=sig in flush, heard=store.heard_at(sig))
        if action is None:
            return False
        due = True
        link = execute(sink, action, now=now, term=term)
        tally.written[sig] = store.set_link(sig, link)
    except StoreUnavailable:
        raise
    except SinkError as exc:  # only the sink raises these: not this signature's fault
        tally.counts["failed"] += 1
        kind = "rejected" if isinstance(exc, SinkRejected) else "unavailable"
        tally.errors.append(f"{sink.name} sink {kind}: {exc}")
        return due
    except Exception as exc:
        tally.counts["failed"] += 1
        tally.faulted.append(sig)
        tally.errors.append(f"acting on {sig.hex()} failed: {type(exc).__name__}: {exc}"[:500])
        return due
    if isinstance(action, OpenIssue):
        tally.counts["opened"] += 1
    elif isinstance(action, ReopenIssue):
        tally.counts["reopened"] += 1
    else:
        tally.counts["updated"] += 1
    return True


def _renumber(store: Store, sink: Numbering, tally: _Tally, *, now: float, term: int) -> None:
    """Give a fresh number to every issue whose number another signature owns.

    Two leaders of a partition (or an old leader's late write) may have given
    one number to two signatures; every relay shows both until the leader
    renumbers the losers, in its own term, so the new links win everywhere.
    """
    try:
        losers = sink.collisions()
    except SinkError as exc:
        tally.errors.append(f"file sink numbering: {exc}")
        return
    for sig, number in losers:
        state = store.load_state(sig)
        if state is None or state.link is None or state.link.number != number:
            continue  # the folder has not shown this signature's newer link yet
        try:
            link = sink.renumber(state, state.link, now=now, term=term)
        except SinkError as exc:
            tally.errors.append(f"file sink renumbering: {exc}")
            continue
        tally.written[sig] = store.set_link(sig, link)
        tally.counts["renumbered"] += 1


def _observe(
    store: Store,
    sink: Sink,
    candidates: dict[bytes, SigState],
    now: float,
    written: dict[bytes, SigState],
) -> dict[bytes, SigState]:
    """Learn which issues people closed, so that the plan can reopen them."""
    linked = [sig for sig, state in candidates.items() if state.link is not None]
    if not linked:
        return candidates
    try:
        observed = sink.observe(linked)
    except SinkError:
        return candidates  # act on what we know; the next round observes again
    out = dict(candidates)
    for sig, issue_state in observed.items():
        link = candidates[sig].link
        if link is not None and link.state != issue_state:
            seen = dataclasses.replace(link, state=issue_state, synced_at=max(link.synced_at, now))
            out[sig] = written[sig] = store.set_link(sig, seen)
    if isinstance(sink, Replica) and observed:
        # The folder now shows the link it asked for; else the change it
        # reported would stay "new" and later undo a newer link.
        with contextlib.suppress(SinkError):
            sink.mirror([out[sig] for sig in observed], now=now)
    return out
