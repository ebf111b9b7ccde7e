"""The leader's rounds, off the event loop: the only code that calls the sink.

A sink may take seconds per round (GitHub spaces mutating requests a second
apart), so rounds run in a worker thread with their own store handle while
heartbeats, acks and digests keep flowing on the loop: a leader that stops
sending heartbeats would be replaced by a second one. What a round does is
``node.leader.act``; this module decides when it runs and for how long.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable

import trio

from github_sink.sink import Sink
from mesh.election import Election
from mesh.errors import LocalError, StoreError
from mesh.sigstate import SigState
from mesh.store import Store
from node.faults import Faults
from node.leader import RoundResult, act

__all__ = ["Leading"]

#: Seconds between two rounds of a leader with nothing changed, due or pending.
IDLE_ROUND_EVERY = 5.0

log = logging.getLogger("errmesh.peer")


class Leading:
    """Leader rounds of at most ``batch`` sink actions, while this peer leads."""

    def __init__(
        self,
        *,
        store: Store,
        sink: Sink | None,
        election: Election,
        faults: Faults,
        clock: Callable[[], float],
        batch: int,
        announce: Callable[[list[SigState]], Awaitable[None]],
    ) -> None:
        self.store = store
        self.sink = sink
        self.election = election
        self.faults = faults
        self.clock = clock
        self.batch = batch
        self.announce = announce  # publishes the links a round wrote
        self.wanted = trio.Event()
        self._worker_store: Store | None = None  # the rounds' own handle (worker threads)
        self._in_round = False
        #: The term of the round in progress (None between rounds). The
        #: sink's gate refuses a write once the election's term moved past
        #: it: a request begun in term 1 and retried after the leader came
        #: back from a partition in term 3 must not go out (it was planned
        #: on a view that predates the other side's issues).
        self.round_term: int | None = None
        self._not_before = -math.inf
        # When a round is worth its thread hop and its lock (``worth_a_round``).
        self._changed = True
        self._busy = True
        self._next_due: float | None = None
        self._last_term: int | None = None
        self._last_round = -math.inf

    def changed(self) -> None:
        """The store was written: something may have fallen due."""
        self._changed = True

    def worth_a_round(self, monotonic: float) -> bool:
        """Whether the tick loop should ask for a round now.

        An idle leader ran a round (a worker thread, the leader lock, a query)
        at every heartbeat, two a second, most of what an idle relay cost. A
        round is asked for when the store changed since the last one, the last
        one did or failed something (retries, follow-ups), the earliest
        ``next_due`` in the store has passed, leadership is new, or, failing
        all of these, every ``IDLE_ROUND_EVERY`` seconds (a sink's follow-up
        jobs, a wall clock that jumped).
        """
        if self._changed or self._busy or self._last_term != self.election.term:
            return True
        if self._next_due is not None and self._next_due <= self.clock():
            return True
        return monotonic - self._last_round >= IDLE_ROUND_EVERY

    def hold_off(self, until: float) -> None:
        """Taking over from a live leader: let it hear us and stop before our first write."""
        self._not_before = until

    def _leads(self, term: int) -> bool:
        return self.election.role == "leader" and self.election.term == term

    async def loop(self) -> None:
        """One round at a time, whenever the tick loop asks while we lead."""
        try:
            while True:
                await self.wanted.wait()
                self.wanted = trio.Event()
                if self.election.role == "leader":
                    await self.lead(self.clock())
        finally:
            # Not while an abandoned round may still be using it in its thread.
            if self._worker_store is not None and not self._in_round:
                self._worker_store.close()
                self._worker_store = None  # a restarted loop opens a fresh one

    async def lead(self, now: float) -> None:
        """Rounds until nothing is due or leadership ends."""
        if self.sink is None or self.clock() < self._not_before:
            return
        term = self.election.term
        self._changed, self._last_term, self._last_round = False, term, trio.current_time()
        while self._leads(term):
            # Abandoned on cancellation: a shutdown does not wait for GitHub's
            # retry-after; the thread's work is durable step by step anyway.
            self._in_round = True
            self.round_term = term
            try:
                result = await trio.to_thread.run_sync(  # type: ignore[call-arg,unused-ignore]
                    functools.partial(self._round, now, term), abandon_on_cancel=True
                )
            finally:
                self._in_round = False
                self.round_term = None
            for error in result.errors:
                log.warning("%s", error)
            if result.faulted:
                self.faults.fault("lead", LocalError("; ".join(result.errors)), result.faulted)
            await self.announce(list(result.links))
            acted = bool(result.opened or result.updated or result.reopened)
            self._busy = acted or bool(
                result.errors or result.failed or result.follow_ups or result.skipped
            )
            try:
                self._next_due = self.store.next_due()
            except StoreError:
                self._busy = True  # ask again at the next heartbeat
            if not acted:
                return
            now = self.clock()

    def _round(self, now: float, term: int) -> RoundResult:
        """One leader round in the worker thread."""
        if self._worker_store is None:
            self._worker_store = self.store.sibling()
        return self.round_with(self._worker_store, now, term)

    def round_with(self, store: Store, now: float, term: int) -> RoundResult:
        assert self.sink is not None
        return act(
            store,
            self.sink,
            now=now,
            term=term,
            lock_timeout=0.2,
            max_actions=self.batch,
            keep_going=lambda: self._leads(term),
            skip=self.faults.quarantined,
        )
