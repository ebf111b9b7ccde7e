"""Every exception the ``node`` package raises.

::

    NodeError
    ├── ConfigError   a setting has an invalid value; the message names it
    └── RelayRunning  another relay holds this state directory

Capture itself never raises into the host program: failures inside errmesh
are reported once on stderr (see ``node.capture``).
"""

from __future__ import annotations

__all__ = ["CapturedMessage", "ConfigError", "NodeError", "RelayRunning"]


class NodeError(Exception):
    """Base of every ``node`` exception."""


class ConfigError(NodeError, ValueError):
    """A setting is invalid. ``setting`` names it as the user wrote it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class CapturedMessage(Exception):
    """What ``node.capture_message`` reports through the exception path; never raised out.

    Here because it must be loaded on the success path (node/capture.py);
    the report names it ``Message`` (node.event.as_message).
    """

    def __init__(self, text: str, level: str, *, logger: str = "") -> None:
        super().__init__(text)
        self.level = level
        #: The logger of a log record reported as a message (node/log_capture.py).
        self.logger = logger


class RelayRunning(NodeError):
    """Another relay process holds the state directory's lock; ``pid`` is its id."""

    def __init__(self, directory: str, pid: str) -> None:
        super().__init__(
            f"another relay (pid {pid or '?'}) runs on {directory}; "
            "stop it or give this one another --state-dir"
        )
        self.pid = pid
