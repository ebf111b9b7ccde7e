"""``errmesh run [--name NAME] [--timeout S] -- CMD ARGS...``: report the failures of any program.

The program runs with stdin inherited and its stdout and stderr passed
through as they come (chunks are copied as soon as they are read), while
the last lines of each are kept for the report. A program still running
after ``--timeout`` seconds is terminated (then killed) and reported as a
timeout, with a signature of its own, like a missed cron check-in. Signals
that would stop errmesh (INT, TERM, HUP, QUIT) are forwarded to the
program, so errmesh never outlives or orphans it. When the program exits
non-zero or dies by a signal, one report goes through the same pipeline as
a Python exception; errmesh then exits the way the program did: same exit
code, or the same signal (124 after a timeout).

A program that cannot be started answers like a shell: 127 (not found) or
126 (not executable), and that failure is reported too.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CommandResult", "exit_like", "run_command"]

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


#: Seconds a program past its timeout has between SIGTERM and SIGKILL.
GRACE = 5.0
#: How errmesh exits after a timeout (GNU ``timeout``'s convention).
TIMEOUT_EXIT = 124


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """How the program ended, and the stderr and stdout tails kept for the report."""

    returncode: int  # negative: killed by that signal (subprocess convention)
    stderr_tail: tuple[str, ...]
    stdout_tail: tuple[str, ...] = ()
    #: The timeout it ran past (then errmesh killed it), or None.
    timed_out_after: float | None = None

    @property
    def failed(self) -> bool:
        return self.returncode != 0 or self.timed_out_after is not None

    @property
    def exit_code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


class _Tail:
    """One of the program's pipes: copied to ``fd`` as it comes, its last lines kept."""

    def __init__(self, fd: int, lines: int) -> None:
        self.fd = fd
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.partial = b""

    def feed(self, chunk: bytes) -> None:
        _write_all(self.fd, chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        self.lines.extend(line.decode("utf-8", "replace").rstrip("\r") for line in lines)
        if len(self.partial) > 65536:  # a huge line without newline: keep its end
            self.partial = self.partial[-65536:]

    def close(self) -> tuple[str, ...]:
        if self.partial:
            self.lines.append(self.partial.decode("utf-8", "replace"))
            self.partial = b""
        return tuple(self.lines)


def run_command(
    argv: Sequence[str],
    *,
    tail_lines: int = 50,
    stderr: int | None = None,
    stdout: int | None = None,
    timeout: float | None = None,
    grace: float = GRACE,
) -> CommandResult:
    """Run ``argv`` to completion, passing stdout and stderr through and keeping their tails.

    Past ``timeout`` seconds the program gets SIGTERM, then SIGKILL after
    ``grace`` seconds. Its stdout is a pipe, not the terminal (DECISIONS 50).
    """
    err_fd = sys.stderr.fileno() if stderr is None else stderr
    out_fd = sys.stdout.fileno() if stdout is None else stdout
    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        return _not_started(err_fd, f"errmesh: {argv[0]}: command not found", 127)
    except PermissionError:
        return _not_started(err_fd, f"errmesh: {argv[0]}: permission denied", 126)
    previous = {}
    for signum in _FORWARDED:
        try:
            previous[signum] = signal.signal(signum, lambda s, _f: _forward(proc, s))
        except (ValueError, OSError):  # not the main thread, or not supported
            pass
    assert proc.stderr is not None and proc.stdout is not None
    err, out = _Tail(err_fd, tail_lines), _Tail(out_fd, tail_lines)
    watch = _Deadline(proc, timeout, grace)
    try:
        _pump(proc, {proc.stderr.fileno(): err, proc.stdout.fileno(): out}, watch)
        returncode = watch.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        proc.stderr.close()
        proc.stdout.close()
    return CommandResult(
        returncode=returncode,
        stderr_tail=err.close(),
        stdout_tail=out.close(),
        timed_out_after=timeout if watch.expired else None,
    )


class _Deadline:
    """The program's timeout: SIGTERM when it passes, SIGKILL ``grace`` seconds later."""

    def __init__(self, proc: subprocess.Popen[bytes], timeout: float | None, grace: float) -> None:
        self.proc = proc
        self.grace = grace
        self.at = None if timeout is None else time.monotonic() + timeout
        self.expired = False

    def left(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def passed(self) -> None:
        """The deadline passed: the first time terminate, the second kill."""
        if not self.expired:
            self.expired = True
            _forward(self.proc, signal.SIGTERM)
            self.at = time.monotonic() + self.grace
        else:
            _forward(self.proc, signal.SIGKILL)
            self.at = None

    def wait(self) -> int:
        """The exit status, past the deadline too (a program that closed its pipes)."""
        while True:
            try:
                return self.proc.wait(self.left())
            except subprocess.TimeoutExpired:
                self.passed()


def _pump(proc: subprocess.Popen[bytes], tails: dict[int, _Tail], watch: _Deadline) -> None:
    """Copy both pipes until they close, minding the deadline."""
    with selectors.DefaultSelector() as selector:
        for fd in tails:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            events = selector.select(watch.left())
            if not events:
                if watch.at is not None and watch.left() == 0.0:
                    watch.passed()
                continue
            for key, _ in events:
                try:
                    chunk = os.read(key.fd, 65536)
                except InterruptedError:
                    continue
                if chunk:
                    tails[key.fd].feed(chunk)
                else:
                    selector.unregister(key.fd)


def _not_started(fd: int, message: str, returncode: int) -> CommandResult:
    _say(fd, message)
    return CommandResult(returncode=returncode, stderr_tail=(message,))


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
    if result.timed_out_after is not None:
        sys.exit(TIMEOUT_EXIT)
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
