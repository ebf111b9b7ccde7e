"""errmesh inside a program: capture API, configuration, CLI, runtimes.

Importing ``node`` loads only the standard library: the success path of a
host program must cost nothing. ``Config``, ``load_config`` and
``install_asyncio`` are resolved on first use (PEP 562) for the same reason.
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

    from node.asyncio_hook import install_asyncio
    from node.config import Config, load_config

__all__ = [
    "Config",
    "ConfigError",
    "NodeError",
    "add_breadcrumb",
    "capture_exception",
    "capture_message",
    "install",
    "install_asyncio",
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
    if name == "install_asyncio":  # imports asyncio: only when asked for
        from node.asyncio_hook import install_asyncio

        return install_asyncio
    raise AttributeError(f"module 'node' has no attribute {name!r}")
