"""Headless Chromium for the dashboard's end-to-end test, with nothing but the standard library.

Chromium speaks the DevTools protocol over a pipe (``--remote-debugging-pipe``:
it reads commands on fd 3 and answers on fd 4, each message JSON ended
by a NUL byte), so no WebDriver, no chromium-driver and no selenium are
needed: :class:`Browser` opens a page, evaluates JavaScript in it and
takes screenshots. :func:`ensure_chromium` finds the browser, or installs
Debian's ``chromium`` package when the tests run as root (a clean CI
machine), timing the install so its cost stays visible.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["Browser", "BrowserError", "ensure_chromium"]

BINARIES = ("chromium", "chromium-browser", "google-chrome")


class BrowserError(Exception):
    """Chromium answered a command with an error, or went away."""


def find_chromium() -> str | None:
    return next((path for name in BINARIES if (path := shutil.which(name))), None)


def ensure_chromium() -> tuple[str | None, str]:
    """The browser's path (None when there is none), and what happened, for the log.

    Installs ``chromium`` with apt (no recommended packages) when missing and
    we are root; otherwise says why not, for the skip message.
    """
    found = find_chromium()
    if found:
        return found, f"found {found}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "no chromium, and not root on a Debian system to install it"
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, f"{' '.join(command)} failed: {done.stderr[-500:]}"
    found = find_chromium()
    took = time.monotonic() - started
    return found, f"installed chromium with apt-get in {took:.0f} s"


class Browser:
    """One headless Chromium process; one page at a time (:meth:`open`)."""

    def __init__(
        self, binary: str, profile: Path, *, width: int = 1400, height: int = 1000
    ) -> None:
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def wire_pipes() -> None:  # in the child, before exec: the pipes at fds 3 and 4
            read, write = os.dup(commands_read), os.dup(answers_write)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",  # root in a container has no user namespace for it
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes,
            close_fds=False,
        )
        os.close(commands_read)
        os.close(answers_write)
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None

    def close(self) -> None:
        for fd in (self._commands, self._answers):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc.kill()
        self.proc.wait(10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, params: dict[str, Any] | None = None, **where: str) -> Any:
        """One DevTools command; its result (``BrowserError`` for an error answer)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        message.update(where)
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def _read(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], deadline - time.monotonic())
            if not ready:
                raise BrowserError(f"chromium did not answer within {timeout} s")
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise BrowserError("chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def open(self, url: str) -> None:
        """A new tab on ``url``; later calls act on it."""
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]

    def evaluate(self, expression: str) -> Any:
        """``expression``'s value in the page (JSON-able values only)."""
        assert self._session is not None, "open a page first"
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True},
            sessionId=self._session,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        """The whole page as a PNG, written to ``path``; returns its bytes."""
        assert self._session is not None, "open a page first"
        shot = self.send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True},
            sessionId=self._session,
        )
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data
