"""``node.uninstall()``: the hub back to how it was before ``install()``.

Its own module because the success path loads node/capture.py on every
start of the host, and nothing here is needed until a test or a host
takes errmesh out again.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.capture import _Hub

__all__ = ["uninstall_hub"]


def uninstall_hub(hub: _Hub) -> None:
    """Undo ``install()``: hooks restored only where they are still ours."""
    for watcher in hub.watchers:
        watcher.remove()
    hub.watchers.clear()
    if hub.installed:
        if sys.excepthook == hub.excepthook:
            sys.excepthook = hub.prev_excepthook or sys.__excepthook__
        threading: Any = sys.modules.get("threading")
        if threading is not None and threading.excepthook == hub.threading_hook:
            threading.excepthook = hub.prev_threading_hook or threading.__excepthook__
        hub.installed = False
    if hub.ring is not None:
        _detach(hub.ring._original)
        hub.ring = None
    hub.flags = {}
    hub.caller_package = ""
    hub.before_send = None
    hub.delivery = None
    hub.tags.clear()
    hub.contexts.clear()
    hub.crumbs.clear()
    hub.warned = False
    hub.last = None
    hub.reset()


def _detach(original: Any) -> None:
    """Put ``Logger.callHandlers`` back, unless someone wrapped it after us."""
    import logging

    current = logging.Logger.callHandlers
    if getattr(current, "__errmesh_original__", None) is original:
        logging.Logger.callHandlers = original  # type: ignore[method-assign,assignment]
