"""What happened before the error, as the report's text lines: the log ring's records.

The log ring (node/capture.py) only keeps references to the host's records
on the success path; they are formatted here, once, on the error path.
"""

from __future__ import annotations

import time

from node.cut import LOG_LINE_CHARS, LOG_RECORD_CHARS, cut_text, last_lines

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Sequence

__all__ = ["log_lines"]


def _record_text(record: logging.LogRecord) -> str:
    """``stamp LEVEL logger: message``, without modifying the host's record."""
    try:  # no .message/.asctime set on it, unlike logging.Formatter
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return (
            f"{stamp},{int(record.msecs):03d} {record.levelname} {record.name}: "
            f"{record.getMessage()}"
        )
    except Exception:  # a record whose args cannot be formatted
        msg = cut_text(repr(record.msg), LOG_RECORD_CHARS)
        return f"{record.levelname} {record.name}: {msg}"


def log_lines(records: Sequence[logging.LogRecord], capacity: int) -> tuple[str, ...]:
    """The last ``capacity`` lines of ``records``, oldest first, each cut to its bound."""
    out: list[str] = []
    for record in records:
        text = _record_text(record)
        if len(text) <= LOG_RECORD_CHARS:
            out.extend(text.splitlines() or [""])
        else:  # only its last lines can be kept: never split (or copy) all of it
            out.extend(last_lines(text, capacity, LOG_LINE_CHARS))
    return tuple(out[-capacity:])
