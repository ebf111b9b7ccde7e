"""The leader lock: sink actions serialised between processes sharing one store.

Every errmesh process on a machine may act as the leader for a moment (a
relay's round, a dying CLI's flush): an ``flock`` on ``leader.lock`` beside
the database makes them take turns, so two never open the same issue. A
process that cannot take it within its timeout skips acting: the holder
acts. The lock dies with its holder, so a killed leader frees it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from mesh.store_failures import translate

__all__ = ["take_leader_lock"]


@contextlib.contextmanager
def take_leader_lock(lock_path: Path, timeout: float) -> Iterator[bool]:
    """Yields True when the lock at ``lock_path`` was taken, False if it could
    not be within ``timeout``. Raises ``StoreError`` if it cannot be opened."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise translate(exc, "cannot open the leader lock") from exc
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
