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
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mesh import wire
from mesh.bounds import MAX_NUMBER, MAX_TERM
from mesh.bundling import BundlePolicy, next_due
from mesh.errors import MeshError, StoreError, StoreUnavailable, WireError
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

__all__ = ["DB_NAME", "Store", "StoreStatistics"]

DB_NAME = "errmesh.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sig BLOB NOT NULL,
    created REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS handover (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS skeleton (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    pid INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS own_counts (sig BLOB PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS states (
    sig BLOB PRIMARY KEY,
    state BLOB NOT NULL,
    last_seen REAL NOT NULL,
    next_due REAL,
    open INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS states_next_due ON states (next_due);
"""
#: ``mesh.sigstate.eviction_key`` as persisted columns (created after the
#: migration in ``_create_schema``: a store from before has no ``open``).
_EVICTION_INDEX = "CREATE INDEX IF NOT EXISTS states_eviction ON states (open, last_seen, sig)"
_UNAVAILABLE = ("readonly", "read-only", "disk is full", "unable to open", "disk i/o")


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


def _translate(exc: BaseException, what: str, path: Path | None = None) -> StoreError:
    text = str(exc).lower()
    if isinstance(exc, OSError) or any(marker in text for marker in _UNAVAILABLE):
        cause = _real_cause(path) if path is not None else None
        return StoreUnavailable(f"{what}: {cause or exc}")
    if "not a database" in text:
        return StoreError(f"{what}: {exc} (move the file away; errmesh makes a new one)")
    return StoreError(f"{what}: {exc}")


#: Less free space than this where the store lives is a full disk for SQLite.
_FULL_BELOW = 1024 * 1024


def _real_cause(path: Path) -> str | None:
    """What SQLite's words hide: "disk I/O error" for a full disk, "unable to
    open database file" for a read-only directory. None when neither holds
    (e.g. the store hit its own ``max_bytes``: "database or disk is full")."""
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent  # the nearest folder that exists
    for target in (path, directory):
        if target.exists() and not os.access(target, os.W_OK):
            return f"{target} is not writable"
    try:
        fs = os.statvfs(directory)
    except OSError:
        return None
    if fs.f_bavail * fs.f_frsize < _FULL_BELOW:
        return f"disk full at {directory}"
    return None


class Store:
    """A handle on one cluster's database. Not thread-safe: one per thread."""

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
        self._sync: Literal["full", "normal"] = "full"
        self._busy_timeout = 5.0
        #: Stored states skipped because they could not be decoded (this process).
        self.unreadable_rows = 0
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
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=not any_thread
            )
        except (OSError, sqlite3.Error) as exc:
            raise _translate(exc, f"cannot open {path}", path) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {sync.upper()}")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(16, max_bytes // page_size)}")
            with _immediate(conn):
                _create_schema(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(exc, f"cannot initialise {path}", path) from exc
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
            with _immediate(self._conn):
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('origin', ?)",
                    (os.urandom(16),),
                )
                row = self._conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot read the store's origin", self.path) from exc
        return bytes(row[0])

    # -- the spool --------------------------------------------------------

    def spool(
        self, report: Report, *, now: float | None = None, skeleton: int | None = None
    ) -> Report:
        """Commit ``report`` durably; return it stamped with origin, seq, count.

        ``skeleton``: the id of the row this report replaces (node/skeleton.py),
        deleted in the same transaction.

        Raises ``StoreUnavailable`` on a full or read-only disk (after trying
        once to make room by dropping the oldest pending reports).
        """
        try:
            return self._spool(report, now, skeleton)
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc).lower():
                raise _translate(exc, "cannot spool the report", self.path) from exc
        # Full: make room by dropping the oldest pending half, then retry once.
        try:
            with _immediate(self._conn):
                pending = self._count_pending()
                drop = max(1, pending // 2)
                self._drop_oldest(drop)
            return self._spool(report, now, skeleton)
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot spool the report (store full)", self.path) from exc

    def _spool(self, report: Report, now: float | None, skeleton: int | None = None) -> Report:
        conn = self._conn
        with _immediate(conn):
            if skeleton is not None:
                conn.execute("DELETE FROM skeleton WHERE id = ?", (skeleton,))
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
                    wire.encode_report(stamped),
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
            with _immediate(self._conn):
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
            raise _translate(exc, f"cannot spool the {table} rows") from exc
        return spooled

    def _count_pending(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def _drop_oldest(self, n: int) -> None:
        self._conn.execute(
            "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)", (n,)
        )
        self._bump("spool_dropped", n)

    def _bump(self, name: str, n: int = 1) -> None:
        self._conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

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
                with _immediate(self._conn):
                    self._conn.executemany(
                        "DELETE FROM spool WHERE seq = ?", [(s,) for s in corrupt]
                    )
                    self._bump("corrupt_rows", len(corrupt))
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot read the spool") from exc
        return reports

    def ack(self, ids: Iterable[tuple[bytes, int]]) -> int:
        """Remove acked reports of this origin from the spool; returns how many."""
        seqs = [(seq,) for origin, seq in ids if origin == self.origin]
        if not seqs:
            return 0
        try:
            with _immediate(self._conn):
                before = self._conn.total_changes
                self._conn.executemany("DELETE FROM spool WHERE seq = ?", seqs)
                return self._conn.total_changes - before
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot ack") from exc

    # -- the aggregate ----------------------------------------------------

    def merge_reports(self, reports: Iterable[Report]) -> list[SigState]:
        """Merge reports into the persisted aggregate and unspool our own.

        One transaction: the merge and the removal from the spool commit
        together. Idempotent (merging is), so re-running after a crash is safe.
        """
        reports = list(reports)
        try:
            with _immediate(self._conn):
                touched: dict[bytes, SigState] = {}
                for report in reports:
                    sig = report.signature
                    base = touched.get(sig) or self._load(sig)
                    touched[sig] = join(base, state_of_report(report), self.limits)
                for state in touched.values():
                    self._save(state)
                self._conn.executemany(
                    "DELETE FROM spool WHERE seq = ?",
                    [(r.seq,) for r in reports if r.origin == self.origin],
                )
                self._evict_signatures()
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot merge into the aggregate") from exc
        return list(touched.values())

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
            with _immediate(self._conn):
                out = []
                for state in joined.values():
                    merged = join(self._load(state.signature), state, self.limits)
                    self._save(merged)
                    out.append(merged)
                self._evict_signatures()
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot merge states") from exc
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
            raise _translate(exc, "cannot read the aggregate") from exc

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
            with _immediate(self._conn):
                self._conn.execute(
                    "INSERT INTO counters (name, value) VALUES ('max_link_number', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                    (highest,),
                )
            return min(highest, MAX_NUMBER)
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot read the aggregate") from exc

    def load_state(self, signature: bytes) -> SigState | None:
        try:
            return self._load(signature)
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot read the aggregate") from exc

    def due_states(self, now: float, limit: int = 1000) -> list[SigState]:
        """States whose next action is due at ``now`` (per the store's policy)."""
        try:
            rows = self._conn.execute(
                "SELECT state FROM states WHERE next_due IS NOT NULL AND next_due <= ? "
                "ORDER BY next_due LIMIT ?",
                (now, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot read the aggregate") from exc
        return [s for s in (self._decode_state(r[0]) for r in rows) if s is not None]

    def states(self, limit: int = 10_000) -> list[SigState]:
        """All states, most recently seen first."""
        try:
            rows = self._conn.execute(
                "SELECT state FROM states ORDER BY last_seen DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot read the aggregate") from exc
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
                raise _translate(exc, "cannot read the aggregate") from exc
            if not rows:
                return
            after = rows[-1][0]
            states = [self._decode_state(r[1]) for r in rows]
            yield [s for s in states if s is not None]

    def _load(self, signature: bytes) -> SigState | None:
        row = self._conn.execute("SELECT state FROM states WHERE sig = ?", (signature,)).fetchone()
        return None if row is None else self._decode_state(row[0])

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

    def _save(self, state: SigState) -> None:
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
            "INSERT INTO states (sig, state, last_seen, next_due, open) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (sig) DO UPDATE SET state = excluded.state, "
            "last_seen = excluded.last_seen, next_due = excluded.next_due, open = excluded.open",
            (
                state.signature,
                wire.encode_state(state),
                last_seen,
                next_due(state, self.policy),
                klass,
            ),
        )

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

    # -- coordination and introspection -----------------------------------

    @contextlib.contextmanager
    def leader_lock(self, timeout: float = 5.0) -> Iterator[bool]:
        """Serialise sink actions between processes sharing this store.

        Yields True when the lock was taken, False if it could not be within
        ``timeout`` (the caller then skips acting: the holder will act).
        """
        lock_path = self.path.parent / "leader.lock"
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield True
            return
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _translate(exc, "cannot open the leader lock") from exc
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    acquired = True
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        acquired = False
                        break
                    time.sleep(0.005)
            try:
                yield acquired
            finally:
                if acquired:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def probe_write(self) -> None:
        """One small write transaction: whether the store can be written again.

        A relay whose disk was full calls it now and then, since nothing else
        may try to write for a while. Raises ``StoreError`` like any write.
        """
        try:
            with _immediate(self._conn):
                self._bump("write_probes")
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot write") from exc

    def counters(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT name, value FROM counters").fetchall()
        return {str(name): int(value) for name, value in rows}

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
            raise _translate(exc, "cannot read statistics") from exc
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


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(states)")}
    if "open" not in columns:  # a store from before eviction kept open issues
        conn.execute("ALTER TABLE states ADD COLUMN open INTEGER NOT NULL DEFAULT 0")
        conn.execute("DROP INDEX IF EXISTS states_last_seen")
        rows = conn.execute("SELECT sig, state FROM states").fetchall()
        for sig, payload in rows:
            with contextlib.suppress(WireError, TypeError):
                klass = eviction_key(wire.decode_state(payload))[0]
                conn.execute("UPDATE states SET open = ? WHERE sig = ?", (klass, sig))
    conn.execute(_EVICTION_INDEX)


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taken up front, so concurrent writers queue cleanly."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite already rolled back on SQLITE_FULL
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
