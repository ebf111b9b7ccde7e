"""A relay's log lines on stderr: text for people, JSON lines for collectors.

``log_format = "json"`` writes one JSON object per line (``ts``, ``level``,
``logger``, ``message``, and ``exc`` with the traceback when there is one),
what journald, Loki, Vector or Cloud Logging parse without a regular
expression. A traceback is inside its record's line, never lines of its own,
so a collector never splits one error into many.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Final, TextIO

__all__ = ["TEXT_FORMAT", "JsonFormatter", "configure_logging"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The relay's root handler: ``level`` and ``log_format`` from its settings."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if log_format == "json":
        logging.captureWarnings(True)  # a warning's own stderr lines would not be JSON
