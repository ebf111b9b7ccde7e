"""systemd's notify protocol (``Type=notify``), without a dependency.

A relay says ``READY=1`` once it listens for the mesh and serves its status,
so ``systemctl start`` returns when the relay is usable and units ordered
after it start then; ``STATUS=`` is the line ``systemctl status`` shows
(its addresses, then its role in the election whenever that changes);
``STOPPING=1`` on the way out (at SIGTERM, ``systemctl stop``, the relay then
dies of the signal as it always did: whatever it acked is committed). With
``WatchdogSec=`` set, systemd passes ``WATCHDOG_USEC`` and expects
``WATCHDOG=1`` at least that often: the relay sends it from its trio loop at
half the interval, so a loop that hangs is restarted. Without
``$NOTIFY_SOCKET`` (not under systemd) every call does nothing. The socket
is a Unix datagram socket, by path or abstract (``@name``), as
``sd_notify(3)`` describes.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Mapping

import trio

__all__ = ["Notifier", "watchdog_interval"]


def _address(value: str) -> str | bytes:
    """``@name`` is Linux's abstract namespace: a leading NUL byte."""
    return b"\0" + value[1:].encode() if value.startswith("@") else value


class Notifier:
    """Messages to the service manager named by ``$NOTIFY_SOCKET`` (none: silent)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        socket_path = env.get("NOTIFY_SOCKET", "")
        self.address = _address(socket_path) if socket_path else None
        self.watchdog = watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; False when not sent.

        Never raises: a service manager that went away must not stop the relay.
        """
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")

    async def stop_on_sigterm(self) -> None:
        """Say ``STOPPING=1`` at SIGTERM, then die of it as without a service manager."""
        if self.address is None:
            return
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.stopping()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

    async def describe(self, status: Callable[[], str], every: float = 2.0) -> None:
        """``STATUS=`` whenever ``status()`` says something new (checked every ``every`` s)."""
        if self.address is None:
            return
        said = ""
        while True:
            await trio.sleep(every)
            text = status()
            if text != said and self.notify(f"STATUS={text}"):
                said = text

    async def keep_alive(self) -> None:
        """``WATCHDOG=1`` every half interval, for as long as the trio loop runs."""
        if self.watchdog is None or self.address is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await trio.sleep(self.watchdog / 2)


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """``WATCHDOG_USEC`` in seconds, when it is meant for this process."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000
