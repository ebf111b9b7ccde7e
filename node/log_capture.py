"""Log records that become reports: sentry-python's LoggingIntegration, opt-in.

With ``capture_log_level`` set (``warning``, ``error`` or ``critical``), a
host's ``log.error(...)`` is reported like ``capture_message`` (its level
sets the severity) and ``log.exception(...)`` like ``capture_exception``
(the exception's own traceback). The log ring (node/capture.py) already sees
every record of every logger; it compares the record's level with a number
and comes here only for a record at or above it, so the success path pays
one comparison per record, and nothing while the setting is off.

errmesh's own loggers and libp2p's are never captured: a relay, the sink
or the gossip logging its own trouble must not feed reports back into
itself. One exception is one report: the hub marks each exception it
reports, so a ``log.exception`` whose exception is then re-raised to the
hook (or one ``report_errors`` already took) is not reported twice.
"""

from __future__ import annotations

import sys

from node.errors import CapturedMessage

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping
    from types import FrameType

    from node.capture import _Hub

__all__ = ["LEVELS", "OFF", "UNRESOLVED", "capture_record", "threshold_of"]

#: ``capture_log_level``'s values as logging's numbers (logging is not imported for them).
LEVELS = {"warning": 30, "error": 40, "critical": 50}
#: No record reaches this.
OFF = 1 << 30
#: Neither the options nor the environment say: the config file may. It is
#: read at the first record at WARNING or above, the lowest level the
#: setting takes, so a host that logs no warning never reads it.
UNRESOLVED = LEVELS["warning"]
#: Loggers whose records are never reports, and their children.
NEVER = ("errmesh", "libp2p")
#: capture_message's level for a record's (sentry-python's names).
_MESSAGE_LEVELS = ((50, "fatal"), (40, "error"), (30, "warning"), (20, "info"))
_ENV = "ERRMESH_CAPTURE_LOG_LEVEL"


def threshold_of(flags: Mapping[str, object], environ: Mapping[str, str]) -> int | None:
    """The level from ``install()``'s options or the environment; None when neither says.

    A value the setting would refuse is left to the full settings read,
    which says once on stderr that it is ignored.
    """
    level = flags.get("capture_log_level")
    if level is None:
        level = environ.get(_ENV)
        if level is None:
            return None
    text = str(level).strip().lower()
    if text == "":
        return OFF
    return LEVELS.get(text)


def _resolved(hub: _Hub) -> int:
    """The threshold from every source (options, environment, the config file)."""
    from node.settings import load_values

    values = load_values(hub.flags, problems=[])
    return LEVELS.get(str(values.get("capture_log_level", "")), OFF)


def _caller(record: logging.LogRecord) -> FrameType | None:
    """The frame that logged ``record`` (logging found it: its file and line say which)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_lineno == record.lineno and frame.f_code.co_filename == record.pathname:
            return frame
        frame = frame.f_back
    return None


def _message_level(levelno: int) -> str:
    return next((name for floor, name in _MESSAGE_LEVELS if levelno >= floor), "debug")


def capture_record(hub: _Hub, record: logging.LogRecord) -> None:
    """Report ``record`` if its logger and level say so; never raises into the host."""
    ring = hub.ring
    if ring is None:
        return
    if not ring.resolved:
        ring.resolved = True
        ring.threshold = _resolved(hub)
    name = record.name or ""
    if record.levelno < ring.threshold or any(
        name == own or name.startswith(own + ".") for own in NEVER
    ):
        return
    exc_info = record.exc_info
    exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
    if isinstance(exc, BaseException):
        if hub.is_error(exc):
            hub.capture(exc, exiting=False)
        return
    from node.scope import stack_of

    try:
        text = record.getMessage()
    except Exception:  # arguments that do not format: the template is the message
        text = str(record.msg)
    message = CapturedMessage(text, _message_level(record.levelno), logger=name)
    hub.capture(message.with_traceback(stack_of(_caller(record))), exiting=False)
