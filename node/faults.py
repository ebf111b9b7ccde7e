"""What went wrong inside a relay, kept so that it can go on and say so.

A relay is a long-running process that other machines depend on: one bad
message, one bad stored row or a full disk must cost that message, that row
or that write, never the process. Its loops (``node.relay.MeshPeer``) report
every failure here instead of dying:

- **faults by loop**: counted for ``/status`` and logged at most once per
  :data:`LOG_EVERY` seconds per loop (with how many were not logged), so a
  poison that arrives a thousand times a second does not fill the disk with
  tracebacks;
- **quarantine**: a signature whose handling failed :data:`QUARANTINE_AFTER`
  times is skipped by digest answers, leader rounds and merges for
  :data:`QUARANTINE_FOR` seconds, then tried again; listed in ``/status``;
- **the store's health**: a write that failed because the store cannot be
  written at all (a full or read-only disk) marks the store down, with one
  log line a minute saying why and where, until a write succeeds again.

Bookkeeping only: no IO but logging; time comes from the ``clock`` given.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from mesh.errors import StoreError

__all__ = ["LOG_EVERY", "QUARANTINE_AFTER", "QUARANTINE_FOR", "Faults"]

log = logging.getLogger("errmesh.peer")

#: Seconds between two log lines about the same loop, or about the store.
LOG_EVERY: Final = 60.0
#: Failures of one signature before it is quarantined, and for how long.
QUARANTINE_AFTER: Final = 3
QUARANTINE_FOR: Final = 300.0
#: Quarantined signatures listed in the status (the count is always exact).
STATUS_LIST_MAX: Final = 50


def _what_failed(error: str) -> str:
    """The store failure in a few words a person acts on."""
    text = error.lower()
    if "full" in text or "no space" in text:
        return "disk full"
    if "readonly" in text or "read-only" in text:
        return "read-only"
    return "cannot write"


@dataclass
class Faults:
    """Failures of a relay's loops, quarantined signatures and the store's health."""

    store_path: str = ""
    clock: Callable[[], float] = time.time
    by_loop: collections.Counter[str] = field(default_factory=collections.Counter)
    _failures: collections.Counter[bytes] = field(default_factory=collections.Counter)
    _quarantined: dict[bytes, float] = field(default_factory=dict)  # signature -> until
    _logged_at: dict[str, float] = field(default_factory=dict)
    _unlogged: collections.Counter[str] = field(default_factory=collections.Counter)
    store_error: str | None = None
    store_since: float | None = None

    # -- faults and quarantine ------------------------------------------

    def fault(self, loop: str, exc: BaseException, signatures: Iterable[bytes] = ()) -> None:
        """Count a failure of ``loop``; blame ``signatures`` (handled when it failed)."""
        self.by_loop[loop] += 1
        sigs = sorted(set(signatures))
        where = f" (signatures {', '.join(s.hex()[:12] for s in sigs[:4])})" if sigs else ""
        if self._may_log(loop):
            log.error(
                "%s failed%s: %s%s",
                loop,
                where,
                f"{type(exc).__name__}: {exc}"[:500],
                self._suppressed(loop),
                exc_info=exc,
            )
        now = self.clock()
        for sig in sigs:
            self._failures[sig] += 1
            if self._failures[sig] >= QUARANTINE_AFTER:
                del self._failures[sig]
                self._quarantined[sig] = now + QUARANTINE_FOR
                log.warning(
                    "signature %s quarantined for %.0f s after %d failures",
                    sig.hex(),
                    QUARANTINE_FOR,
                    QUARANTINE_AFTER,
                )

    def quarantined(self, signature: bytes) -> bool:
        until = self._quarantined.get(signature)
        if until is None:
            return False
        if self.clock() >= until:
            self._quarantined.pop(signature, None)  # try it again (leader rounds ask from a thread)
            return False
        return True

    def quarantine(self) -> list[str]:
        """The signatures in quarantine now, hex, sorted."""
        now = self.clock()
        self._quarantined = {s: u for s, u in self._quarantined.items() if u > now}
        return sorted(s.hex() for s in self._quarantined)

    def _may_log(self, key: str) -> bool:
        now = self.clock()
        if now - self._logged_at.get(key, -LOG_EVERY) < LOG_EVERY:
            self._unlogged[key] += 1
            return False
        self._logged_at[key] = now
        return True

    def _suppressed(self, key: str) -> str:
        n = self._unlogged.pop(key, 0)
        return f" ({n} more since the last report)" if n else ""

    # -- the store ---------------------------------------------------------

    def store_failed(self, exc: StoreError) -> None:
        """A write failed: the store is down until one succeeds (:meth:`store_ok`)."""
        if self.store_error is None:
            self.store_since = self.clock()
        self.store_error = str(exc)[:500]
        self.by_loop["store"] += 1
        if self._may_log("store"):
            log.error(
                "store unavailable: %s at %s (%s); not acking reports, their senders keep "
                "them and retry%s",
                _what_failed(self.store_error),
                self.store_path,
                self.store_error,
                self._suppressed("store"),
            )

    def store_ok(self) -> None:
        """A write succeeded: if the store was down, it is back."""
        if self.store_error is None:
            return
        since = self.store_since if self.store_since is not None else self.clock()
        log.warning(
            "store recovered at %s after %.0f s (%s)",
            self.store_path,
            self.clock() - since,
            _what_failed(self.store_error),
        )
        self.store_error = None
        self.store_since = None
        self._logged_at.pop("store", None)
        self._unlogged.pop("store", None)

    @property
    def store_down(self) -> bool:
        return self.store_error is not None

    # -- status ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        quarantined = self.quarantine()
        return {
            "faults": dict(self.by_loop),
            "quarantined": quarantined[:STATUS_LIST_MAX],
            "quarantined_count": len(quarantined),
            "store": {
                "ok": self.store_error is None,
                "error": self.store_error,
                "since": self.store_since,
                "path": self.store_path,
            },
        }
