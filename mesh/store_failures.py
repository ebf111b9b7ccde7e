"""What a SQLite or OS failure means for the store: a ``StoreError``, or a
``StoreUnavailable`` when it cannot write here at all.

SQLite's own words hide the cause: "disk I/O error" for a full disk,
"unable to open database file" for a read-only directory. A relay reports
which it is (``errmesh status``) and backs off writing until a probe
succeeds, so the translation looks at the file system when SQLite's message
is one of those.
"""

from __future__ import annotations

import os
from pathlib import Path

from mesh.errors import StoreError, StoreUnavailable

__all__ = ["translate"]

_UNAVAILABLE = ("readonly", "read-only", "disk is full", "unable to open", "disk i/o")


def translate(exc: BaseException, what: str, path: Path | None = None) -> StoreError:
    """``exc`` as the store's error, its message starting with ``what``."""
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
