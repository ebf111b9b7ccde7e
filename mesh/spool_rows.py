"""The two rows a dying process writes, shared by the store and the lean paths.

A failing process commits its skeleton (``node/skeleton.py``) and, with a
local relay, its hand-over row (``node/handover.py``) with ``sqlite3``
alone: those paths must stay within tens of milliseconds and cannot import
the store (msgpack, the wire, the aggregate). They write through these
functions, which are also what :class:`mesh.store.Store` runs for the same
rows (``Store.hand_over``, ``Store.add_skeleton``) and whose table
definitions the store's schema includes: one definition of each row and of
each write, whoever does it. Imports nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

__all__ = ["HANDOVER_TABLE", "SKELETON_TABLE", "add_handover", "add_skeleton"]

#: Scrubbed events a failing process left for this machine's relay.
HANDOVER_TABLE = (
    "CREATE TABLE IF NOT EXISTS handover ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, payload BLOB NOT NULL)"
)
#: The first durable byte of an error: its type and call site (DECISIONS 31).
SKELETON_TABLE = (
    "CREATE TABLE IF NOT EXISTS skeleton ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, "
    "pid INTEGER NOT NULL, payload TEXT NOT NULL)"
)


def add_skeleton(conn: sqlite3.Connection, *, created: float, pid: int, payload: str) -> int:
    """Insert one skeleton row (the caller commits); returns its id."""
    cursor = conn.execute(
        "INSERT INTO skeleton (created, pid, payload) VALUES (?, ?, ?)", (created, pid, payload)
    )
    return int(cursor.lastrowid or 0)


def add_handover(
    conn: sqlite3.Connection, *, created: float, payload: bytes, replaces: int | None = None
) -> bool:
    """Insert one hand-over row inside the caller's write transaction.

    ``replaces``: the skeleton this row supersedes, deleted in the same
    transaction so the occurrence is counted once. Returns False, inserting
    nothing, when that skeleton is gone already (a relay took it as stale:
    it is counted, and the caller must roll back and keep it so).
    """
    if replaces is not None:
        gone = conn.execute("DELETE FROM skeleton WHERE id = ?", (replaces,)).rowcount
        if gone == 0:
            return False
    conn.execute("INSERT INTO handover (created, payload) VALUES (?, ?)", (created, payload))
    return True
