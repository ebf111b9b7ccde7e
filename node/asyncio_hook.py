"""asyncio's unhandled errors: the loop's exception handler, chained.

An exception that escapes ``asyncio.run(main())`` reaches ``sys.excepthook``
like any other (an ``asyncio.TaskGroup``'s group is reported leaf by leaf,
node/groups.py). What never reaches it is an error asyncio only *logs*: a
task nobody awaited ("Task exception was never retrieved"), a failing
callback of ``call_soon``, a failing ``Protocol`` method. Those go to the
loop's exception handler, so :func:`install_asyncio` sets one that reports
the exception and then calls the handler that was there before (asyncio's
default one logs it, as without errmesh).

A helper to call inside the loop, not something ``node.install()`` does:
a handler belongs to one loop, and ``install()`` runs before ``asyncio.run``
creates it. Doing it for every loop would mean patching asyncio's
``BaseEventLoop`` class, which is not free (importing asyncio costs ~15 ms,
so ``install()`` cannot do it eagerly), reaches loops that are not the
program's own, and still misses uvloop's loops. sentry-python's
AsyncioIntegration likewise asks for ``init()`` inside the running loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from node.capture import _hub

__all__ = ["install_asyncio"]

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def install_asyncio(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Report the errors asyncio would only log; call it first in your ``async def main``.

    ``loop`` defaults to the running loop (``RuntimeError`` when none runs).
    The previous handler still runs; installing twice chains nothing twice.
    """
    loop = loop or asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    if getattr(previous, "__errmesh__", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        try:
            exc = context.get("exception")
            if isinstance(exc, BaseException) and _hub.is_error(exc):
                _hub.capture(exc, exiting=False)
        finally:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

    handler.__errmesh__ = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
