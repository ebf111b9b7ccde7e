"""Every exception the ``node`` package raises.

::

    NodeError
    └── ConfigError   a setting has an invalid value; the message names it

Capture itself never raises into the host program: failures inside errmesh
are reported once on stderr (see ``node.capture``).
"""

from __future__ import annotations

__all__ = ["ConfigError", "NodeError"]


class NodeError(Exception):
    """Base of every ``node`` exception."""


class ConfigError(NodeError, ValueError):
    """A setting is invalid. ``setting`` names it as the user wrote it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message
