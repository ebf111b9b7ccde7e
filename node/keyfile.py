"""The cluster keys a long-running relay holds, re-read when its key file changes.

A rotation (``mesh.keyring``) is rolled host by host by rewriting each
host's key file (``errmesh keygen --rotate|--promote|--retire``); a relay
notices within ``keys_every`` seconds (a ``stat``, no read, while nothing
changed) and signs and accepts under the new ring without a restart, so
the fleet rolls without downtime. A file that became unreadable or invalid
is logged and the keys held stay: a typo during a rotation must not cut a
relay off the mesh.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mesh.keyring import KeyRing
from mesh.wire import Keys
from node.config import read_key_file
from node.errors import ConfigError

__all__ = ["KeyWatch"]

log = logging.getLogger("errmesh.keys")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class KeyWatch:
    """The current ring (None: a keyless mesh) and the file it came from."""

    def __init__(self, ring: KeyRing | None, path: Path | None = None) -> None:
        self.ring = ring
        self.path = path
        self._stamp = _stamp(path) if path is not None else None
        self.reloads = 0

    @classmethod
    def static(cls, key: bytes | None) -> KeyWatch:
        """One fixed key (or none), never re-read."""
        return cls(None if key is None else KeyRing((key,)))

    @property
    def current(self) -> bytes | None:
        """The key frames are signed with."""
        return None if self.ring is None else self.ring.current

    @property
    def accepted(self) -> Keys:
        """The keys a received frame may be MAC'd with."""
        return None if self.ring is None else self.ring.accepted

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the keys changed."""
        if self.path is None or self.ring is None:
            return False  # a keyless relay stays keyless: restart it to join a keyed mesh
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            ring = read_key_file(self.path)
        except ConfigError as exc:
            log.warning("keeping the cluster keys held: %s", exc.message)
            return False
        if ring == self.ring:
            return False
        self.ring = ring
        self.reloads += 1
        log.info("cluster keys reloaded from %s: %d accepted", self.path, len(ring.keys))
        return True
