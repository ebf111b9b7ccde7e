"""errmesh inside a program: capture API, configuration, CLI, runtimes.

Importing ``node`` loads only the standard library: the success path of a
host program must cost nothing. ``Config`` and ``load_config`` are resolved
on first use (PEP 562) for the same reason.
"""

from __future__ import annotations

from node.capture import (
    add_breadcrumb,
    capture_exception,
    capture_message,
    install,
    last_outcome,
    report_errors,
    set_context,
    set_tag,
    set_user,
    uninstall,
)
from node.errors import ConfigError, NodeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from node.config import Config, load_config

__all__ = [
    "Config",
    "ConfigError",
    "NodeError",
    "add_breadcrumb",
    "capture_exception",
    "capture_message",
    "install",
    "last_outcome",
    "load_config",
    "report_errors",
    "set_context",
    "set_tag",
    "set_user",
    "uninstall",
]


def __getattr__(name: str) -> Any:
    if name in ("Config", "load_config"):
        from node import config

        return getattr(config, name)
    raise AttributeError(f"module 'node' has no attribute {name!r}")
