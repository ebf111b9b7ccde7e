"""The tables under ``mesh.store.Store``, their migration, and a connection set up for them.

One SQLite database per cluster and machine, opened in WAL mode by every
errmesh process on the machine at once. :func:`connect` gives a connection
with the store's pragmas (busy timeout, ``synchronous``, the size cap as
``max_page_count``) and the current schema; a store written by an older
version is migrated in the same write transaction. :func:`immediate` is the
write transaction every writer takes.

The ``handover`` and ``skeleton`` tables and their writes are
``mesh/spool_rows.py``'s, which the dying process's lean paths
(node/handover.py, node/skeleton.py) use with ``sqlite3`` alone.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from mesh import wire
from mesh.errors import WireError
from mesh.sigstate import eviction_key
from mesh.spool_rows import HANDOVER_TABLE, SKELETON_TABLE
from mesh.store_failures import translate

__all__ = ["connect", "create_schema", "immediate"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sig BLOB NOT NULL,
    created REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS own_counts (sig BLOB PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS detail_rate (
    sig BLOB PRIMARY KEY,
    minute INTEGER NOT NULL,
    kept INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS states (
    sig BLOB PRIMARY KEY,
    state BLOB NOT NULL,
    last_seen REAL NOT NULL,
    next_due REAL,
    open INTEGER NOT NULL DEFAULT 0,
    heard REAL
);
CREATE INDEX IF NOT EXISTS states_next_due ON states (next_due);
"""
#: ``mesh.sigstate.eviction_key`` as persisted columns (created after the
#: migration in ``create_schema``: a store from before has no ``open``).
_EVICTION_INDEX = "CREATE INDEX IF NOT EXISTS states_eviction ON states (open, last_seen, sig)"


def connect(
    path: Path,
    *,
    busy_timeout: float,
    sync: Literal["full", "normal"],
    max_bytes: int,
    any_thread: bool,
) -> sqlite3.Connection:
    """The database at ``path`` (created with its folder if needed), schema current.

    ``any_thread``: the connection may move between threads (one at a time).

    Raises ``StoreUnavailable`` when the directory cannot be created or
    the database cannot be opened for writing, ``StoreError`` otherwise.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=not any_thread
        )
    except (OSError, sqlite3.Error) as exc:
        raise translate(exc, f"cannot open {path}", path) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {sync.upper()}")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(16, max_bytes // page_size)}")
        with immediate(conn):
            create_schema(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, f"cannot initialise {path}", path) from exc
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    """Every table and index, and the columns an older store lacks (computed from its rows)."""
    for statement in (*_SCHEMA.split(";"), HANDOVER_TABLE, SKELETON_TABLE):
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
    if "heard" not in columns:  # when this store first held the signature (its clock)
        conn.execute("ALTER TABLE states ADD COLUMN heard REAL")
    conn.execute(_EVICTION_INDEX)


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
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
