"""Raise to commit: how long a failing CLI holds its report only in memory.

A process killed between its ``raise`` and the first durable byte of its
report leaves nothing behind (issue 10). This measures that window on both
ways a dying CLI records an error, in fresh processes as a user runs them:

- **full path**: no relay on the machine (solo mode, the default), the
  report committed through the store;
- **hand-over path**: a relay's socket next to the spool (a stand-in that
  only receives the nudge datagram: what is timed happens before it).

Each child does ``node.install()``, writes ``time.time()`` to a pipe, and
raises. The parent polls the store's ``sqlite_sequence`` (every spool and
hand-over row takes a new id from it, and a reader sees a row only once its
transaction has committed) from its own connection, every ~50 us, and
stamps the moment the row becomes visible. Both clocks are the same
``CLOCK_REALTIME``. The figure is therefore raise -> visible to another
process, an upper bound of raise -> commit by the polling interval.

Also timed: raise -> process exit (the whole cost the dying CLI pays after
its error), for context.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from _common import REPO, emit, parser, samples_ms, summary_ms, table

CHILD = textwrap.dedent(
    """
    import os, sys, time
    import node
    node.install(app="bench")
    fd = int(sys.argv[1])
    def fail(depth):
        if depth:
            return fail(depth - 1)
        os.write(fd, repr(time.time()).encode())
        os.close(fd)
        raise RuntimeError("bench failure token=hunter2")
    fail(20)
    """
)
GOAL_MS = 10.0


def _sequence(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=5.0)
    try:
        row = conn.execute("SELECT COALESCE(SUM(seq), 0) FROM sqlite_sequence").fetchone()
        return int(row[0])
    finally:
        conn.close()


def _prepare(state: Path) -> Path:
    """A store that exists already, as on any machine after its first error."""
    env = {**os.environ, "ERRMESH_STATE_DIR": str(state), "ERRMESH_SINK": "none"}
    code = "import node; node.install(app='bench'); raise SystemExit(3)"
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=False)
    seed = "from node.compose import open_store; from node.config import load_config; "
    seed += "open_store(load_config({})).close()"
    subprocess.run([sys.executable, "-c", seed], env=env, cwd=REPO, check=True)
    return state / "default" / "errmesh.sqlite3"


def _one(env: dict[str, str], db: Path) -> tuple[float, float]:
    before = _sequence(db)
    conn = sqlite3.connect(db, timeout=5.0, isolation_level=None)
    read, write = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(write)],
        env=env,
        cwd=REPO,
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    raised = float(os.read(read, 64).decode())
    os.close(read)
    visible = None
    while visible is None:
        row = conn.execute("SELECT COALESCE(SUM(seq), 0) FROM sqlite_sequence").fetchone()
        if int(row[0]) > before:
            visible = time.time()
        elif child.poll() is not None and int(row[0]) <= before:
            # One last look: the row may have committed just before exit.
            row = conn.execute("SELECT COALESCE(SUM(seq), 0) FROM sqlite_sequence").fetchone()
            if int(row[0]) <= before:
                raise RuntimeError("the child exited without committing a report")
        else:
            time.sleep(0.00005)
    child.wait()
    exited = time.time()
    conn.close()
    return visible - raised, exited - raised


def _measure(path: str, runs: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"errmesh-r2c-{path}-"))
    receiver = None
    try:
        db = _prepare(tmp / "state")
        env = {
            **os.environ,
            "ERRMESH_STATE_DIR": str(tmp / "state"),
            "ERRMESH_DATA_DIR": str(tmp / "data"),
            "ERRMESH_SINK": "file",
        }
        if path == "handover":
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            receiver.bind(str(db.parent / "relay.sock"))
            receiver.setblocking(False)
        commits, exits = [], []
        for _ in range(runs):
            commit, exit_ = _one(env, db)
            commits.append(commit)
            exits.append(exit_)
            if receiver is not None:
                try:
                    while receiver.recv(64):
                        pass
                except BlockingIOError:
                    pass
        return {
            "commit": summary_ms(commits),
            "exit": summary_ms(exits),
            "commit_samples_ms": samples_ms(commits),
        }
    finally:
        if receiver is not None:
            receiver.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    args = parser(__doc__).parse_args()
    runs = 8 if args.quick else 60
    results: dict[str, Any] = {}
    for path in ("full", "handover"):
        _measure(path, 2)  # warm the page cache and the bytecode caches
        results[path] = _measure(path, runs)
    rows = [
        [
            path,
            results[path]["commit"]["p50"],
            results[path]["commit"]["p99"],
            results[path]["exit"]["p50"],
            results[path]["exit"]["p99"],
        ]
        for path in ("full", "handover")
    ]
    print(f"raise -> report durable (visible to another process), {runs} fresh processes each")
    print(table(["path", "commit p50 ms", "commit p99 ms", "exit p50 ms", "exit p99 ms"], rows))
    worst = max(results[p]["commit"]["p50"] for p in ("full", "handover"))
    results["headline"] = (
        f"commit p50 full {results['full']['commit']['p50']:.1f} ms, "
        f"hand-over {results['handover']['commit']['p50']:.1f} ms"
    )
    emit(
        "raise_to_commit",
        goal=f"p50 <= {GOAL_MS:.0f} ms both paths",
        met=worst <= GOAL_MS,
        quick=args.quick,
        results=results,
    )


if __name__ == "__main__":
    main()
