"""The persisted aggregate: the half of ``mesh.store.Store`` that keeps SigStates.

``states`` holds one row per signature: the state as wire bytes, with
``next_due`` (``mesh.bundling.next_due`` under the store's policy), so a dying
process finds what is due without decoding every signature, and
``mesh.sigstate.eviction_key`` as the ``open`` and ``last_seen`` columns, so
eviction at ``limits.max_signatures`` is one indexed delete. Every merge
loads a row, applies ``mesh.sigstate.join`` and writes it back: the store has
no merge rule of its own (``tests/test_one_aggregate.py`` drives it and
``mesh.aggregate.Aggregate`` with the same records). The highest link term
and issue number are kept as running maxima in ``counters``.

:class:`PersistedAggregate` is ``Store``'s base class: it declares what it
shares with the spool half (the connection, the policy, the limits, the
origin), which ``Store.__init__`` sets.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

from mesh import wire
from mesh.bounds import MAX_NUMBER, MAX_TERM
from mesh.bundling import BundlePolicy, next_due
from mesh.errors import WireError
from mesh.report import Report
from mesh.sigstate import (
    IssueLink,
    Limits,
    SigState,
    eviction_key,
    join,
    merge_states,
    state_of_link,
    state_of_report,
)
from mesh.store_failures import translate
from mesh.store_schema import immediate

__all__ = ["PersistedAggregate"]


class PersistedAggregate:
    """Merges into, reads and bounds the ``states`` table; the ``counters`` too."""

    _conn: sqlite3.Connection
    path: Path
    origin: bytes
    policy: BundlePolicy
    limits: Limits
    _sync: Literal["full", "normal"]
    #: The store's wall clock: when a signature was first held here.
    _clock: Callable[[], float]
    #: Stored states skipped because they could not be decoded (this process).
    unreadable_rows: int

    def merge_reports(self, reports: Iterable[Report]) -> list[SigState]:
        """Merge reports into the persisted aggregate and unspool our own.

        One transaction: the merge and the removal from the spool commit
        together. Idempotent (merging is), so re-running after a crash is safe.
        """
        reports = list(reports)
        try:
            with immediate(self._conn):
                touched: dict[bytes, tuple[SigState, float]] = {}
                for report in reports:
                    sig = report.signature
                    base, heard = touched.get(sig) or self._load_row(sig)
                    touched[sig] = (join(base, state_of_report(report), self.limits), heard)
                for state, heard in touched.values():
                    self._save(state, heard)
                self._conn.executemany(
                    "DELETE FROM spool WHERE seq = ?",
                    [(r.seq,) for r in reports if r.origin == self.origin],
                )
                self._evict_signatures()
        except sqlite3.Error as exc:
            raise translate(exc, "cannot merge into the aggregate") from exc
        return [state for state, _ in touched.values()]

    def merge_states(self, states: Iterable[SigState], *, durable: bool = True) -> list[SigState]:
        """Merge states heard from peers (anti-entropy) into the aggregate.

        ``durable=False`` commits without waiting for the disk (SQLite's
        ``synchronous=NORMAL`` for this transaction): for states that any
        peer can send again, a power cut may lose them but never corrupts
        the store, and a relay merging gossip spent its time in fsync.
        """
        # Joined in memory first: a batch often holds many states of one
        # signature, and each load and save decodes and encodes the whole state.
        joined: dict[bytes, SigState] = {}
        for state in states:  # not join(): the incoming state is capped once, below
            seen = joined.get(state.signature)
            joined[state.signature] = (
                state if seen is None else merge_states(seen, state, self.limits)
            )
        relaxed = not durable and self._sync == "full"
        try:
            if relaxed:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            with immediate(self._conn):
                out = []
                for state in joined.values():
                    base, heard = self._load_row(state.signature)
                    merged = join(base, state, self.limits)
                    self._save(merged, heard)
                    out.append(merged)
                self._evict_signatures()
        except sqlite3.Error as exc:
            raise translate(exc, "cannot merge states") from exc
        finally:
            if relaxed:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA synchronous = FULL")
        return out

    def set_link(self, signature: bytes, link: IssueLink) -> SigState:
        """Record where a signature's issue is (last writer by term wins)."""
        return self.merge_states([state_of_link(signature, link)])[0]

    def max_link_term(self) -> int:
        """The highest election term among the recorded issue links (0 if none).

        A leader must act in a term at least this high, or its links would
        lose to the ones already written (last writer by term). Kept as a
        running maximum, so reading it costs one row. At most
        ``mesh.bounds.MAX_TERM``: an older version stored any uint.
        """
        try:
            return min(self.counters().get("max_link_term", 0), MAX_TERM)
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the aggregate") from exc

    def max_link_number(self) -> int:
        """The highest issue number among the recorded links (0 if none).

        A sink that numbers its own issues (files) allocates above it, so a
        new leader continues the numbering of every leader before it instead
        of its own folder's. A running maximum like ``max_link_term``; a store
        written before it existed is scanned once.
        """
        try:
            known = self.counters().get("max_link_number")
            if known is not None:
                return min(known, MAX_NUMBER)  # an older version stored any uint
            highest = 0
            for batch in self.iter_states():
                for state in batch:
                    if state.link is not None and state.link.number is not None:
                        highest = max(highest, state.link.number)
            with immediate(self._conn):
                self._conn.execute(
                    "INSERT INTO counters (name, value) VALUES ('max_link_number', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                    (highest,),
                )
            return min(highest, MAX_NUMBER)
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the aggregate") from exc

    def load_state(self, signature: bytes) -> SigState | None:
        try:
            return self._load(signature)
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the aggregate") from exc

    def due_states(self, now: float, limit: int = 1000) -> list[SigState]:
        """States whose next action is due at ``now`` (per the store's policy)."""
        try:
            rows = self._conn.execute(
                "SELECT state FROM states WHERE next_due IS NOT NULL AND next_due <= ? "
                "ORDER BY next_due LIMIT ?",
                (now, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the aggregate") from exc
        return [s for s in (self._decode_state(r[0]) for r in rows) if s is not None]

    def next_due(self) -> float | None:
        """The earliest ``next_due`` of any state (None: nothing will fall due by itself)."""
        try:
            row = self._conn.execute("SELECT MIN(next_due) FROM states").fetchone()
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the aggregate") from exc
        return None if row is None or row[0] is None else float(row[0])

    def states(self, limit: int = 10_000) -> list[SigState]:
        """All states, most recently seen first."""
        try:
            rows = self._conn.execute(
                "SELECT state FROM states ORDER BY last_seen DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the aggregate") from exc
        return [s for s in (self._decode_state(r[0]) for r in rows) if s is not None]

    def iter_states(self, batch: int = 500) -> Iterator[list[SigState]]:
        """All states in batches, by signature, without holding them all at once."""
        after = b""
        while True:
            try:
                rows = self._conn.execute(
                    "SELECT sig, state FROM states WHERE sig > ? ORDER BY sig LIMIT ?",
                    (after, batch),
                ).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc, "cannot read the aggregate") from exc
            if not rows:
                return
            after = rows[-1][0]
            states = [self._decode_state(r[1]) for r in rows]
            yield [s for s in states if s is not None]

    def _load(self, signature: bytes) -> SigState | None:
        row = self._conn.execute("SELECT state FROM states WHERE sig = ?", (signature,)).fetchone()
        return None if row is None else self._decode_state(row[0])

    def _load_row(self, signature: bytes) -> tuple[SigState | None, float]:
        """The stored state and when this store first held it (now, for a new one):
        one read for what ``_save`` needs, inside the caller's transaction."""
        row = self._conn.execute(
            "SELECT state, heard FROM states WHERE sig = ?", (signature,)
        ).fetchone()
        if row is None:
            return None, self._clock()
        heard = self._clock() if row[1] is None else float(row[1])
        return self._decode_state(row[0]), heard

    def _decode_state(self, payload: object) -> SigState | None:
        """A stored state, or None for a row this version cannot read.

        Such a row (a blob of another SQLite type, bytes from an older version
        with a term above the ceiling, a truncated write) must not stop the
        relay that loads it: it is skipped and counted (``unreadable_rows``),
        and the next merge of its signature overwrites it with a sound state.
        """
        try:
            if not isinstance(payload, bytes):
                raise WireError("undecodable", f"a stored state of type {type(payload).__name__}")
            return wire.decode_state(payload)
        except WireError:
            self.unreadable_rows += 1
            return None

    def _save(self, state: SigState, heard: float) -> None:
        """Write ``state``; ``heard`` from ``_load_row`` (a row that has one keeps it)."""
        if state.link is not None:
            self._conn.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                [
                    ("max_link_term", state.link.term),
                    ("max_link_number", state.link.number or 0),
                ],
            )
        klass, last_seen, _ = eviction_key(state)
        self._conn.execute(
            "INSERT INTO states (sig, state, last_seen, next_due, open, heard) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (sig) DO UPDATE SET state = excluded.state, "
            "last_seen = excluded.last_seen, next_due = excluded.next_due, open = excluded.open, "
            "heard = coalesce(states.heard, excluded.heard)",
            (
                state.signature,
                wire.encode_state(state),
                last_seen,
                next_due(state, self.policy, heard),
                klass,
                heard,
            ),
        )

    def _heard(self, signature: bytes) -> float | None:
        row = self._conn.execute("SELECT heard FROM states WHERE sig = ?", (signature,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def heard_at(self, signature: bytes) -> float | None:
        """When this store first held ``signature``, on its own clock
        (``mesh.bundling.plan``'s ``heard``); None if it does not."""
        try:
            return self._heard(signature)
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the aggregate") from exc

    def _evict_signatures(self) -> None:
        total = int(self._conn.execute("SELECT COUNT(*) FROM states").fetchone()[0])
        excess = total - self.limits.max_signatures
        if excess > 0:
            self._conn.execute(  # mesh.sigstate.eviction_key's order
                "DELETE FROM states WHERE sig IN "
                "(SELECT sig FROM states ORDER BY open, last_seen, sig LIMIT ?)",
                (excess,),
            )
            self._bump("signatures_evicted", excess)

    def counters(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT name, value FROM counters").fetchall()
        return {str(name): int(value) for name, value in rows}

    def _bump(self, name: str, n: int = 1) -> None:
        self._conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )
