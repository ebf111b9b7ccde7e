"""The durable store: the spool of unsent reports and the persisted aggregate.

One SQLite database per cluster and machine (``<state_dir>/<cluster>/
errmesh.sqlite3``), shared by every errmesh process on the machine: failing
CLIs write to it concurrently, a relay or the next CLI drains it.

Theory of operation:

- ``origin``: 16 random bytes made on first use and kept in ``meta``. Every
  report spooled here carries it; ``(origin, seq)`` is the report's
  idempotent id, ``seq`` the spool's AUTOINCREMENT key (never reused).
- ``spool(report)`` runs in one ``BEGIN IMMEDIATE`` transaction: it bumps
  this origin's cumulative count for the signature (``own_counts``), stamps
  the report with origin, seq and count, and inserts it. The commit happens
  before anything is sent (DESIGN section 7). ``synchronous=FULL`` makes the
  commit survive power loss; ``normal`` survives a killed process only.
- ``handover`` holds reports that a failing process wrote for the relay on
  this machine, scrubbed but not yet signed (node/handover.py, which owns
  their format); ``take_handovers`` turns them into spooled reports in one
  transaction, so each is spooled exactly once.
- A report leaves the spool when a durable peer acks it, or, in solo mode,
  when it is merged into this store's own aggregate (``merge_reports``: the
  merge and the delete are one transaction, and merging is idempotent, so a
  crash between spool and merge only delays it to the next process).
- ``states`` holds the replicated aggregate (``SigState`` as wire bytes)
  with ``next_due``, so a dying process finds what is due without decoding
  every signature.
- Bounds: at most ``max_reports`` pending rows (the oldest are dropped and
  counted as ``spool_dropped``), at most ``max_bytes`` of database
  (``max_page_count``: SQLite answers "full" like a full disk would), at most
  ``limits.max_signatures`` states (evicted in ``mesh.sigstate.eviction_key``'s
  order: no open issue first, then least recently seen; counted).

Every SQLite or OS failure surfaces as :class:`~mesh.errors.StoreError`;
one that means "cannot write here at all" (read-only, full, bad path) as
:class:`~mesh.errors.StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mesh import wire
from mesh.bundling import BundlePolicy
from mesh.errors import MeshError, WireError
from mesh.leader_lock import take_leader_lock
from mesh.report import Report
from mesh.sampling import DetailLimits, without_detail
from mesh.sigstate import Limits
from mesh.spool_rows import add_handover, add_skeleton
from mesh.store_aggregate import PersistedAggregate
from mesh.store_failures import translate
from mesh.store_schema import connect, immediate

__all__ = ["DB_NAME", "Store", "StoreStatistics"]

DB_NAME = "errmesh.sqlite3"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStatistics:
    """A snapshot for ``errmesh status`` and metrics."""

    path: str
    origin: str
    pending: int
    signatures: int
    spool_dropped: int
    signatures_evicted: int
    corrupt_rows: int
    #: Stored states this process skipped as unreadable (see ``Store._decode_state``).
    unreadable_rows: int = 0


class Store(PersistedAggregate):
    """A handle on one cluster's database. Not thread-safe: one per thread.

    The spool and the hand-over rows are here; the persisted aggregate
    (``merge_*``, ``*_states``, links) is the base class's (mesh/store_aggregate.py).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        max_reports: int,
        policy: BundlePolicy,
        limits: Limits,
    ) -> None:
        self._conn = conn
        self.path = path
        self.max_reports = max_reports
        self.policy = policy
        self.limits = limits
        self._max_bytes = 64 * 1024 * 1024
        self._sync = "full"
        self._busy_timeout = 5.0
        self.unreadable_rows = 0
        self._clock = time.time  # a relay's wall clock, as its leader rounds' ``now``
        self.origin: bytes = self._ensure_origin()

    # -- opening ----------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        max_reports: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        sync: Literal["full", "normal"] = "full",
        busy_timeout: float = 5.0,
        policy: BundlePolicy | None = None,
        limits: Limits | None = None,
        any_thread: bool = False,
    ) -> Store:
        """Open (creating if needed) the database in ``directory``.

        ``any_thread``: the handle may move between threads (one at a time).

        Raises ``StoreUnavailable`` when the directory cannot be created or
        the database cannot be opened for writing.
        """
        path = directory / DB_NAME
        conn = connect(
            path, busy_timeout=busy_timeout, sync=sync, max_bytes=max_bytes, any_thread=any_thread
        )
        store = cls(
            conn,
            path,
            max_reports=max_reports,
            policy=policy or BundlePolicy(),
            limits=limits or Limits(),
        )
        store._max_bytes, store._sync, store._busy_timeout = max_bytes, sync, busy_timeout
        return store

    def sibling(self) -> Store:
        """Another handle on the same database, for worker threads (one at a time):
        the leader's rounds run in trio's worker threads while the event loop keeps
        this handle. Opened once and kept: opening takes two write transactions."""
        return Store.open(
            self.path.parent,
            max_reports=self.max_reports,
            max_bytes=self._max_bytes,
            sync=self._sync,
            busy_timeout=self._busy_timeout,
            policy=self.policy,
            limits=self.limits,
            any_thread=True,
        )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ensure_origin(self) -> bytes:
        try:
            with immediate(self._conn):
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('origin', ?)",
                    (os.urandom(16),),
                )
                row = self._conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the store's origin", self.path) from exc
        return bytes(row[0])

    # -- the spool --------------------------------------------------------

    def spool(
        self,
        report: Report,
        *,
        now: float | None = None,
        skeleton: int | None = None,
        detail: DetailLimits | None = None,
        draw: Callable[[], float] = random.random,
    ) -> Report:
        """Commit ``report`` durably; return it stamped with origin, seq, count.

        ``skeleton``: the id of the row this report replaces (node/skeleton.py),
        deleted in the same transaction. ``detail``: how many occurrences of
        the signature keep their detail (mesh/sampling.py); the others are
        spooled and counted without it.

        Raises ``StoreUnavailable`` on a full or read-only disk (after trying
        once to make room by dropping the oldest pending reports).
        """
        limits = None if detail is None or detail.unlimited else detail
        try:
            return self._spool(report, now, skeleton, limits, draw)
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc).lower():
                raise translate(exc, "cannot spool the report", self.path) from exc
        # Full: make room by dropping the oldest pending half, then retry once.
        try:
            with immediate(self._conn):
                pending = self._count_pending()
                drop = max(1, pending // 2)
                self._drop_oldest(drop)
            return self._spool(report, now, skeleton, limits, draw)
        except sqlite3.Error as exc:
            raise translate(exc, "cannot spool the report (store full)", self.path) from exc

    def hand_over(self, payload: bytes, *, now: float, replaces: int | None = None) -> bool:
        """Commit one hand-over row, as a dying process does (``mesh.spool_rows``).

        Returns False when ``replaces`` names a skeleton already taken.
        Raises ``StoreError``.
        """
        try:
            with immediate(self._conn):
                return add_handover(self._conn, created=now, payload=payload, replaces=replaces)
        except sqlite3.Error as exc:
            raise translate(exc, "cannot hand the report over", self.path) from exc

    def add_skeleton(self, payload: str, *, now: float, pid: int) -> int:
        """Commit one skeleton row, as a dying process does; returns its id."""
        try:
            with immediate(self._conn):
                return add_skeleton(self._conn, created=now, pid=pid, payload=payload)
        except sqlite3.Error as exc:
            raise translate(exc, "cannot commit the skeleton", self.path) from exc

    def _spool(
        self,
        report: Report,
        now: float | None,
        skeleton: int | None = None,
        limits: DetailLimits | None = None,
        draw: Callable[[], float] = random.random,
    ) -> Report:
        conn = self._conn
        with immediate(conn):
            if skeleton is not None:
                conn.execute("DELETE FROM skeleton WHERE id = ?", (skeleton,))
            if limits is not None and not self._keep_detail(report, limits, now, draw):
                report = without_detail(report)
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
            seq = (row[0] if row else 0) + 1
            conn.execute(
                "INSERT INTO own_counts (sig, count) VALUES (?, 1) "
                "ON CONFLICT (sig) DO UPDATE SET count = count + 1",
                (report.signature,),
            )
            count = conn.execute(
                "SELECT count FROM own_counts WHERE sig = ?", (report.signature,)
            ).fetchone()[0]
            stamped = report.replace(origin=self.origin, seq=seq, count=count)
            conn.execute(
                "INSERT INTO spool (seq, sig, created, payload) VALUES (?, ?, ?, ?)",
                (
                    seq,
                    report.signature,
                    time.time() if now is None else now,
                    wire.encode_stamped(report, origin=self.origin, seq=seq, count=count),
                ),
            )
            # seq - oldest + 1 bounds the number of pending rows from above
            # (O(log n) on the primary key), so the exact COUNT(*), which
            # reads every row, runs only when the cap may be exceeded.
            oldest = conn.execute("SELECT MIN(seq) FROM spool").fetchone()[0]
            if oldest is not None and seq - oldest + 1 > self.max_reports:
                excess = self._count_pending() - self.max_reports
                if excess > 0:
                    self._drop_oldest(excess)
        return stamped

    def _keep_detail(
        self, report: Report, limits: DetailLimits, now: float | None, draw: Callable[[], float]
    ) -> bool:
        """Whether ``report`` keeps its detail; counts it in ``detail_rate`` if so.

        Inside the spool transaction, so the processes of one host share the
        per-minute budget of each signature.
        """
        conn = self._conn
        sig = report.signature
        first = conn.execute("SELECT 1 FROM own_counts WHERE sig = ?", (sig,)).fetchone() is None
        minute = int((time.time() if now is None else now) // 60)
        row = conn.execute("SELECT minute, kept FROM detail_rate WHERE sig = ?", (sig,)).fetchone()
        kept = row[1] if row is not None and row[0] == minute else 0
        if not limits.keep(first=first, kept_this_minute=kept, draw=draw()):
            return False
        conn.execute(
            "INSERT INTO detail_rate (sig, minute, kept) VALUES (?, ?, ?) "
            "ON CONFLICT (sig) DO UPDATE SET minute = excluded.minute, kept = excluded.kept",
            (sig, minute, kept + 1),
        )
        return True

    def take_handovers(
        self, convert: Callable[[bytes], Report], *, limit: int = 1000
    ) -> list[Report]:
        """Spool up to ``limit`` hand-over rows, oldest first, in one transaction.

        ``convert`` makes a row's payload a signed report, raising
        ``ValueError``, ``TypeError`` or a ``MeshError`` for a bad one: such
        rows are deleted and counted as ``corrupt_rows``. Returns the
        spooled reports (stamped). Raises ``StoreError``; then nothing moved.
        """
        return self._take(
            "SELECT id, created, payload FROM handover ORDER BY id LIMIT ?",
            "handover",
            lambda row: convert(bytes(row[2])),
            limit,
        )

    def take_skeletons(
        self,
        convert: Callable[[str], Report],
        stale: Callable[[int, float], bool],
        *,
        limit: int = 1000,
    ) -> list[Report]:
        """Spool the skeletons whose writers are gone (node/skeleton.py), in one transaction.

        ``stale(pid, created)`` says whether a row's writer can no longer
        replace it; the others stay. Otherwise as :meth:`take_handovers`.
        """
        return self._take(
            "SELECT id, created, payload, pid FROM skeleton ORDER BY id LIMIT ?",
            "skeleton",
            lambda row: convert(str(row[2])) if stale(int(row[3]), float(row[1])) else None,
            limit,
        )

    def _take(
        self,
        select: str,
        table: str,
        convert: Callable[[tuple[Any, ...]], Report | None],
        limit: int,
    ) -> list[Report]:
        """Rows of ``table`` into the spool; ``convert`` returns None for a row to keep."""
        try:
            # Nearly always empty (a relay drains every second): no write lock then.
            if self._conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None:
                return []
            with immediate(self._conn):
                spooled, corrupt = [], 0
                for row in self._conn.execute(select, (limit,)).fetchall():
                    try:
                        report = convert(row)
                    except (ValueError, TypeError, MeshError):
                        corrupt += 1
                    else:
                        if report is None:
                            continue
                        spooled.append(self._spool(report, float(row[1])))
                    self._conn.execute(f"DELETE FROM {table} WHERE id = ?", (row[0],))
                if corrupt:
                    self._bump("corrupt_rows", corrupt)
        except sqlite3.Error as exc:
            raise translate(exc, f"cannot spool the {table} rows") from exc
        return spooled

    def _count_pending(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def _drop_oldest(self, n: int) -> None:
        self._conn.execute(
            "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)", (n,)
        )
        self._bump("spool_dropped", n)

    def pending(self, limit: int = 1000) -> list[Report]:
        """Unacked reports, oldest first. Undecodable rows are removed and counted."""
        try:
            rows = self._conn.execute(
                "SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            reports, corrupt = [], []
            for seq, payload in rows:
                try:
                    reports.append(wire.decode_report(payload))
                except WireError:
                    corrupt.append(seq)
            if corrupt:
                with immediate(self._conn):
                    self._conn.executemany(
                        "DELETE FROM spool WHERE seq = ?", [(s,) for s in corrupt]
                    )
                    self._bump("corrupt_rows", len(corrupt))
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read the spool") from exc
        return reports

    def ack(self, ids: Iterable[tuple[bytes, int]]) -> int:
        """Remove acked reports of this origin from the spool; returns how many."""
        seqs = [(seq,) for origin, seq in ids if origin == self.origin]
        if not seqs:
            return 0
        try:
            with immediate(self._conn):
                before = self._conn.total_changes
                self._conn.executemany("DELETE FROM spool WHERE seq = ?", seqs)
                return self._conn.total_changes - before
        except sqlite3.Error as exc:
            raise translate(exc, "cannot ack") from exc

    # -- coordination and introspection -----------------------------------

    def leader_lock(self, timeout: float = 5.0) -> contextlib.AbstractContextManager[bool]:
        """Serialise sink actions between processes sharing this store.

        Yields True when the lock was taken, False if it could not be within
        ``timeout`` (the caller then skips acting: the holder will act).
        """
        return take_leader_lock(self.path.parent / "leader.lock", timeout)

    def probe_write(self) -> None:
        """One small write transaction: whether the store can be written again.

        A relay whose disk was full calls it now and then, since nothing else
        may try to write for a while. Raises ``StoreError`` like any write.
        """
        try:
            with immediate(self._conn):
                self._bump("write_probes")
        except sqlite3.Error as exc:
            raise translate(exc, "cannot write") from exc

    def statistics(self) -> StoreStatistics:
        try:
            counters = self.counters()
            signatures = int(self._conn.execute("SELECT COUNT(*) FROM states").fetchone()[0])
            handed = int(
                self._conn.execute(
                    "SELECT (SELECT COUNT(*) FROM handover) + (SELECT COUNT(*) FROM skeleton)"
                ).fetchone()[0]
            )
            pending = self._count_pending() + handed
        except sqlite3.Error as exc:
            raise translate(exc, "cannot read statistics") from exc
        return StoreStatistics(
            path=str(self.path),
            origin=self.origin.hex(),
            pending=pending,
            signatures=signatures,
            spool_dropped=counters.get("spool_dropped", 0),
            signatures_evicted=counters.get("signatures_evicted", 0),
            corrupt_rows=counters.get("corrupt_rows", 0),
            unreadable_rows=self.unreadable_rows,
        )
