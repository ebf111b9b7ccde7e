"""What happened before the error, as the report's text lines: log records and breadcrumbs.

The log ring and the breadcrumb ring (node/capture.py) only keep references
on the success path; they are formatted here, once, on the error path, and
merged in time order into the report's ``log_tail``: as in sentry-python,
where log records are breadcrumbs too, the two tell one story and share the
``log_lines`` bound. Each line is scrubbed with the rest of the report.
"""

from __future__ import annotations

import time

from node.cut import LOG_LINE_CHARS, LOG_RECORD_CHARS, cut_text, last_lines

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Sequence

__all__ = ["Crumb", "log_lines", "trail_lines"]

#: ``node.add_breadcrumb``'s arguments as the hub keeps them:
#: (time, message, category, level, data).
Crumb = tuple[float, object, object, object, object]
#: A breadcrumb's parts are cut to this before they are joined (each line is
#: cut to LOG_LINE_CHARS after).
_PART_CHARS = LOG_LINE_CHARS


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


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) + f",{int(when % 1 * 1000):03d}"


def _part(value: object) -> str:
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return cut_text(text, _PART_CHARS)


def _crumb_text(crumb: Crumb) -> str:
    """``stamp LEVEL breadcrumb[category]: message k=v ...`` (``k=v``: the scrubber's pairs)."""
    when, message, category, level, data = crumb
    if isinstance(message, dict):  # sentry-python's crumb dict
        category = message.get("category", category)
        level = message.get("level", level)
        data = message.get("data", data)
        message = message.get("message", "")
    text = f"{_stamp(when)} {_part(level).upper()} breadcrumb[{_part(category)}]: {_part(message)}"
    if isinstance(data, dict):
        text += "".join(f" {_part(k)}={_part(v)}" for k, v in list(data.items())[:16])
    return text


def trail_lines(
    records: Sequence[logging.LogRecord], crumbs: Sequence[Crumb], capacity: int
) -> tuple[str, ...]:
    """The last ``capacity`` lines of the log records and breadcrumbs, in time order."""
    entries = [(record.created, _record_text(record)) for record in records]
    entries += [(crumb[0], _crumb_text(crumb)) for crumb in crumbs]
    entries.sort(key=lambda entry: entry[0])  # stable: equal times keep their ring order
    return _last_lines([text for _, text in entries], capacity)


def log_lines(records: Sequence[logging.LogRecord], capacity: int) -> tuple[str, ...]:
    """The last ``capacity`` lines of ``records``, oldest first, each cut to its bound."""
    return _last_lines([_record_text(record) for record in records], capacity)


def _last_lines(texts: Sequence[str], capacity: int) -> tuple[str, ...]:
    out: list[str] = []
    for text in texts:
        if len(text) <= LOG_RECORD_CHARS:
            out.extend(text.splitlines() or [""])
        else:  # only its last lines can be kept: never split (or copy) all of it
            out.extend(last_lines(text, capacity, LOG_LINE_CHARS))
    return tuple(out[-capacity:])
