"""``errmesh run -- CMD ARGS...``: report the failures of any program.

The program runs with stdin and stdout inherited and its stderr passed
through as it comes (chunks are copied as soon as they are read), while the
last lines are kept for the report. Signals that would stop errmesh (INT,
TERM, HUP, QUIT) are forwarded to the program, so errmesh never outlives or
orphans it. When the program exits non-zero or dies by a signal, one report
goes through the same pipeline as a Python exception; errmesh then exits the
way the program did: same exit code, or the same signal.

A program that cannot be started answers like a shell: 127 (not found) or
126 (not executable), and that failure is reported too.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["CommandResult", "exit_like", "run_command"]

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """How the program ended, and the stderr tail kept for the report."""

    returncode: int  # negative: killed by that signal (subprocess convention)
    stderr_tail: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return self.returncode != 0

    @property
    def exit_code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


def run_command(
    argv: Sequence[str],
    *,
    tail_lines: int = 50,
    stderr: int | None = None,
    on_start_error: Callable[[str], None] | None = None,
) -> CommandResult:
    """Run ``argv`` to completion, passing stderr through and keeping its tail."""
    out_fd = sys.stderr.fileno() if stderr is None else stderr
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    try:
        proc = subprocess.Popen(list(argv), stderr=subprocess.PIPE)
    except FileNotFoundError:
        message = f"errmesh: {argv[0]}: command not found"
        _say(out_fd, message)
        return CommandResult(returncode=127, stderr_tail=(message,))
    except PermissionError:
        message = f"errmesh: {argv[0]}: permission denied"
        _say(out_fd, message)
        return CommandResult(returncode=126, stderr_tail=(message,))
    previous = {}
    for signum in _FORWARDED:
        try:
            previous[signum] = signal.signal(signum, lambda s, _f: _forward(proc, s))
        except (ValueError, OSError):  # not the main thread, or not supported
            pass
    try:
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        partial = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not chunk:
                break
            _write_all(out_fd, chunk)
            partial += chunk
            *lines, partial = partial.split(b"\n")
            tail.extend(line.decode("utf-8", "replace").rstrip("\r") for line in lines)
            if len(partial) > 65536:  # a huge line without newline: keep its end
                partial = partial[-65536:]
        if partial:
            tail.append(partial.decode("utf-8", "replace"))
        returncode = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.stderr is not None:
            proc.stderr.close()
    return CommandResult(returncode=returncode, stderr_tail=tuple(tail))


def _forward(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        proc.send_signal(signum)
    except (ProcessLookupError, OSError):
        pass


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            written = os.write(fd, data)
            data = data[written:]
    except OSError:
        pass  # our stderr went away; keep reading so the program is not blocked


def _say(fd: int, message: str) -> None:
    _write_all(fd, (message + "\n").encode())


def exit_like(result: CommandResult) -> None:
    """Leave this process the way the program left: same code or same signal."""
    sys.stdout.flush()
    sys.stderr.flush()
    if result.signal is not None:
        signum = result.signal
        try:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            time.sleep(1)  # the signal is delivered before this returns
        except (OSError, ValueError):
            pass
        os._exit(128 + signum)
    sys.exit(result.returncode)
