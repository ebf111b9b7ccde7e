"""Every exception the ``node`` package raises.

::

    NodeError
    ├── ConfigError   a setting has an invalid value; the message names it
    └── RelayRunning  another relay holds this state directory

Capture itself never raises into the host program: failures inside errmesh
are reported once on stderr (see ``node.capture``).
"""

from __future__ import annotations

__all__ = ["ConfigError", "NodeError", "RelayRunning"]


class NodeError(Exception):
    """Base of every ``node`` exception."""


class ConfigError(NodeError, ValueError):
    """A setting is invalid. ``setting`` names it as the user wrote it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class RelayRunning(NodeError):
    """Another relay process holds the state directory's lock; ``pid`` is its id."""

    def __init__(self, directory: str, pid: str) -> None:
        super().__init__(
            f"another relay (pid {pid or '?'}) runs on {directory}; "
            "stop it or give this one another --state-dir"
        )
        self.pid = pid
