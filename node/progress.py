"""A count on stderr while long work runs (``errmesh drain``, ``errmesh demo``).

On a terminal the line is redrawn in place (at most five times a second),
so a drain of a 100,000-row spool says where it is without scrolling;
elsewhere (cron, CI logs) it says nothing unless asked with ``--progress``,
and then one line at most every second, so a log holds a few lines, not
one per row. stdout is never touched: scripts parse it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "wanted"]


def wanted(flag: bool | None, stream: TextIO | None = None) -> bool:
    """``--progress``/``--no-progress`` if given, else whether stderr is a terminal."""
    if flag is not None:
        return flag
    out = stream if stream is not None else sys.stderr
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


class Progress:
    """``label: done/total unit``, drawn when due; :meth:`finish` ends the line."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        enabled: bool,
        unit: str = "",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.unit = unit
        self._stream = stream if stream is not None else sys.stderr
        self._inplace = self.enabled and wanted(None, self._stream)
        self._clock = clock
        self._every = 0.2 if self._inplace else 1.0
        self._drawn_at: float | None = None
        self._drawn: str = ""

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int) -> None:
        self.done = done
        now = self._clock()
        if self._drawn_at is None or now - self._drawn_at >= self._every:
            self._draw(now)

    def finish(self) -> None:
        """Draw the final count (once) and end the line."""
        if not self.enabled:
            return
        if self._line() != self._drawn:
            self._draw(self._clock())
        if self._inplace and self._drawn:
            self._write("\n")

    def _line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.label}: {self.done}{of}{unit}"

    def _draw(self, now: float) -> None:
        if not self.enabled:
            return
        self._drawn_at = now
        line = self._line()
        self._drawn = line
        self._write(f"\r{line}\x1b[K" if self._inplace else f"{line}\n")

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed stderr: the work matters, not the count
            self.enabled = False
