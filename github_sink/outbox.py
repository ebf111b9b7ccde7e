"""The leader's durable outbox for GitHub work that spans several requests.

An issue action (open, update, reopen) needs no outbox of its own: it stays
due in the replicated aggregate until its link records it, and a replay is
harmless because the issue is found again by its marker. The follow-ups are
different: a draft PR is four requests (branch, brief, fixer's patch, pull),
a Copilot hand-over one, and none of them shows in the aggregate. Each is a
job here, in SQLite next to the leader's store, advanced one idempotent step
at a time and removed from the pending set only when GitHub confirmed the
last step. A restarted leader resumes its jobs where they stopped; a new
leader rebuilds missing jobs from GitHub itself (branches and pulls are
found by their ``errmesh/fix-<sig12>`` names), see ``github_sink.followup``.

Intents record issue actions that GitHub confirmed but whose link the
aggregate may not hold yet (the leader died in between): a restarted leader
does not post the same comment twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Job", "JobKind", "Outbox"]

JobKind = Literal["pr", "copilot"]
JobState = Literal["pending", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    sig BLOB NOT NULL,
    kind TEXT NOT NULL,
    issue INTEGER NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL,
    PRIMARY KEY (sig, kind)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_at);
CREATE TABLE IF NOT EXISTS writes (at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    sig BLOB NOT NULL,
    action TEXT NOT NULL,
    total INTEGER NOT NULL,
    issue INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (sig, action, total)
);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One multi-request follow-up of a signature's issue."""

    sig: bytes
    kind: JobKind
    issue: int
    step: str
    state: JobState = "pending"
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Outbox:
    """Jobs and intents in ``<dir>/github-outbox.sqlite``. One per thread."""

    FILE = "github-outbox.sqlite"

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, directory: Path) -> Outbox:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / cls.FILE
        # Opened by the relay's main thread, used by its leader's worker thread,
        # one round at a time.
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(_SCHEMA)
        return cls(conn, path)

    @classmethod
    def memory(cls) -> Outbox:
        """A throwaway outbox (dry runs, unit tests)."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.executescript(_SCHEMA)
        return cls(conn, Path(":memory:"))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- jobs ---------------------------------------------------------------

    def enqueue(self, sig: bytes, kind: JobKind, issue: int, step: str) -> bool:
        """Add a job unless one exists for (sig, kind); True when added."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO jobs (sig, kind, issue, step, state, updated_at)"
                " VALUES (?, ?, ?, ?, 'pending', ?)",
                (sig, kind, issue, step, time.time()),
            )
            return cur.rowcount == 1

    def get(self, sig: bytes, kind: JobKind) -> Job | None:
        row = self._conn.execute(
            "SELECT sig, kind, issue, step, state, attempts, next_at, last_error, data"
            " FROM jobs WHERE sig = ? AND kind = ?",
            (sig, kind),
        ).fetchone()
        return None if row is None else _job(row)

    def due(self, now: float, limit: int = 10) -> list[Job]:
        rows = self._conn.execute(
            "SELECT sig, kind, issue, step, state, attempts, next_at, last_error, data"
            " FROM jobs WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, sig LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_job(r) for r in rows]

    def jobs(self) -> list[Job]:
        rows = self._conn.execute(
            "SELECT sig, kind, issue, step, state, attempts, next_at, last_error, data"
            " FROM jobs ORDER BY sig, kind"
        ).fetchall()
        return [_job(r) for r in rows]

    @classmethod
    def read_pulls(cls, path: Path) -> dict[bytes, int]:
        """Each signature's draft PR number, read through a connection of our own.

        For the relay's dashboard, on the relay's main thread while the
        leader's worker thread writes through ``self``: read-only, and an
        outbox that is absent or busy answers nothing rather than waiting.
        """
        if not path.is_file():
            return {}
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
            try:
                rows = conn.execute(
                    "SELECT sig, data FROM jobs WHERE kind = 'pr' AND state = 'done'"
                ).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return {}
        pulls = {}
        for sig, data in rows:
            number = json.loads(data).get("pull")
            if isinstance(number, int):
                pulls[bytes(sig)] = number
        return pulls

    def advance(self, job: Job, step: str, **data: Any) -> Job:
        """Record that ``job.step`` was confirmed by GitHub; the next one is ``step``."""
        merged = {**job.data, **data}
        state: JobState = "done" if step == "done" else "pending"
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET step = ?, state = ?, attempts = 0, next_at = 0, last_error = '',"
                " data = ?, updated_at = ? WHERE sig = ? AND kind = ?",
                (step, state, json.dumps(merged), time.time(), job.sig, job.kind),
            )
        return Job(sig=job.sig, kind=job.kind, issue=job.issue, step=step, state=state, data=merged)

    def retry_later(self, job: Job, error: str, at: float) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET attempts = attempts + 1, next_at = ?, last_error = ?,"
                " updated_at = ? WHERE sig = ? AND kind = ?",
                (at, error[:500], time.time(), job.sig, job.kind),
            )

    def fail(self, job: Job, error: str) -> None:
        """A person has to act (bad permissions, a fixer that failed): stop retrying."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'failed', last_error = ?, updated_at = ?"
                " WHERE sig = ? AND kind = ?",
                (error[:500], time.time(), job.sig, job.kind),
            )

    def counts(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}

    # -- the pace of writes --------------------------------------------------------

    def record_write(self, at: float) -> None:
        """A mutating request went to GitHub at ``at`` (kept for an hour)."""
        with self._tx() as conn:
            conn.execute("INSERT INTO writes (at) VALUES (?)", (at,))
            conn.execute("DELETE FROM writes WHERE at < ?", (at - 3600.0,))

    def recent_writes(self, since: float) -> list[float]:
        rows = self._conn.execute(
            "SELECT at FROM writes WHERE at >= ? ORDER BY at", (since,)
        ).fetchall()
        return [float(r[0]) for r in rows]

    # -- intents ------------------------------------------------------------

    def confirmed(self, sig: bytes, action: str, total: int) -> int | None:
        """The issue number of an already confirmed action, if any."""
        row = self._conn.execute(
            "SELECT issue FROM intents WHERE sig = ? AND action = ? AND total = ?",
            (sig, action, total),
        ).fetchone()
        return None if row is None else int(row[0])

    def confirm(self, sig: bytes, action: str, total: int, issue: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO intents (sig, action, total, issue, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (sig, action, total, issue, time.time()),
            )
            # Only the latest few per signature matter for replays.
            conn.execute(
                "DELETE FROM intents WHERE sig = ? AND at < ?", (sig, time.time() - 7 * 86400)
            )


def _job(row: tuple[Any, ...]) -> Job:
    return Job(
        sig=bytes(row[0]),
        kind=row[1],
        issue=int(row[2]),
        step=str(row[3]),
        state=row[4],
        attempts=int(row[5]),
        next_at=float(row[6]),
        last_error=str(row[7]),
        data=json.loads(row[8]),
    )
