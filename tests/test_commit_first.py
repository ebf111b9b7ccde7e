"""Committed means counted: a report that reached the disk is never stranded.

Two ways a committed report used to be lost, each shown with real processes
and a real store:

- a failing process handed its report to the relay on its machine, and the
  relay died before taking it: ``errmesh drain`` (and every errmesh process
  that opens the store) now takes such rows, and ``errmesh status`` counts
  them as pending;
- a failing process killed between its ``raise`` and the commit of its
  report (tens of milliseconds of imports) left nothing: it now commits a
  skeleton first (type and call site, node/skeleton.py) and replaces it
  with the full report, so a kill at any point after the first commit still
  counts the occurrence exactly once.

The kill is made deterministic with an audit hook in the failing process: it
SIGKILLs its own process the moment errmesh imports a given module, i.e. at
a precise point of the error path.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Sandbox
from mesh.store import DB_NAME, Store
from node import skeleton
from node.config import Config, resolve

FAIL = """
import os, signal, sys
kill_at = sys.argv[1]
def hook(event, args):
    if event == "import" and args[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
import node
node.install(app="cli")
def handler(job):
    raise ValueError(f"job {job} failed: password=hunter2")
handler(42)
"""


def config_of(sandbox: Sandbox) -> Config:
    return resolve(environ=sandbox.env)


@contextlib.contextmanager
def dead_relay(path: Path) -> Iterator[None]:
    """A relay that takes the nudge and dies before it takes the row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def rows(config: Config, table: str) -> int:
    with contextlib.closing(sqlite3.connect(config.cluster_state_dir / DB_NAME)) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def status(sandbox: Sandbox) -> dict[str, object]:
    done = sandbox.errmesh("status", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def signatures(sandbox: Sandbox) -> list[dict[str, object]]:
    sigs = status(sandbox)["signatures"]
    assert isinstance(sigs, list)
    return sigs


# ---------------------------------------------------------------------------
# Hand-over rows that no relay took


def test_drain_delivers_a_report_whose_relay_died_before_taking_it(sandbox: Sandbox) -> None:
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()  # as the relay opened it
    with dead_relay(config.relay_socket):
        done = sandbox.python(FAIL, "-")  # never killed
    assert done.returncode == 1
    assert rows(config, "handover") == 1

    drained = sandbox.errmesh("drain")
    assert drained.returncode == 0, drained.stderr
    assert rows(config, "handover") == 0
    [state] = signatures(sandbox)
    assert state["occurrences"] == 1
    assert "hunter2" not in json.dumps(state)
    [issue] = sandbox.issues()
    assert issue["total"] == 1


def test_status_counts_rows_it_cannot_take_as_pending(sandbox: Sandbox) -> None:
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()
    with dead_relay(config.relay_socket):
        sandbox.python(FAIL, "-")
    # A read-only store (another user's, a full disk): status still reads it.
    db = config.cluster_state_dir / DB_NAME
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    config.cluster_state_dir.chmod(0o500)
    db.chmod(0o400)
    try:
        done = sandbox.errmesh("status", "--json")
    finally:
        config.cluster_state_dir.chmod(0o700)
        db.chmod(0o600)
    if done.returncode != 0:
        pytest.skip(f"running as a user that a read-only mode does not stop: {done.stderr}")
    assert json.loads(done.stdout)["spool_pending"] == 1


def test_the_next_failing_process_takes_a_stranded_row(sandbox: Sandbox) -> None:
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()
    with dead_relay(config.relay_socket):
        sandbox.python(FAIL, "-")
    # No relay now: the next failure goes the full path and merges both.
    sandbox.python(FAIL, "-")
    assert rows(config, "handover") == 0
    [state] = signatures(sandbox)
    assert state["occurrences"] == 2


# ---------------------------------------------------------------------------
# Killed between the raise and the report


@pytest.mark.parametrize("relay", [False, True], ids=["full-path", "hand-over"])
@pytest.mark.parametrize("kill_at", ["mesh.scrub", "node.event"])
def test_a_process_killed_before_its_report_is_built_leaves_a_skeleton(
    sandbox: Sandbox, relay: bool, kill_at: str
) -> None:
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()
    with dead_relay(config.relay_socket) if relay else contextlib.nullcontext():
        done = sandbox.python(FAIL, kill_at)
    assert done.returncode == -9, done.stderr
    assert rows(config, "skeleton") == 1

    assert sandbox.errmesh("drain").returncode == 0
    [state] = signatures(sandbox)
    assert state["occurrences"] == 1
    assert "ValueError: <not recorded" in str(state["title"])
    detail = json.dumps(state)
    assert "hunter2" not in detail
    assert rows(config, "skeleton") == 0


def test_a_skeleton_groups_by_type_and_call_site(sandbox: Sandbox) -> None:
    """Two killed occurrences of one bug are one signature; they are not lost."""
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()
    for _ in range(2):
        assert sandbox.python(FAIL, "mesh.scrub").returncode == -9
    assert sandbox.errmesh("drain").returncode == 0
    [state] = signatures(sandbox)
    assert state["occurrences"] == 2


@pytest.mark.parametrize("relay", [False, True], ids=["full-path", "hand-over"])
def test_a_process_killed_after_its_report_is_committed_counts_once(
    sandbox: Sandbox, relay: bool
) -> None:
    """Killed while loading what comes after the commit: the skeleton is gone, the report is in."""
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()
    after_commit = "_socket" if relay else "github_sink.file_sink"
    with dead_relay(config.relay_socket) if relay else contextlib.nullcontext():
        done = sandbox.python(FAIL, after_commit)
    assert rows(config, "skeleton") == 0, done.stderr
    assert sandbox.errmesh("drain").returncode == 0
    [state] = signatures(sandbox)
    assert state["occurrences"] == 1
    assert "failed" in str(state["title"])  # the full report, message and all


def test_a_live_writer_keeps_its_skeleton() -> None:
    import os
    import time

    now = time.time()
    assert not skeleton.stale(os.getpid(), now, now)
    assert skeleton.stale(os.getpid(), now - skeleton.GRACE - 1, now)
    assert skeleton.stale(2**22 + 12345, now, now)  # above pid_max: no such process


def test_a_corrupt_skeleton_row_is_dropped_and_counted(sandbox: Sandbox) -> None:
    config = config_of(sandbox)
    with Store.open(config.cluster_state_dir) as store:
        store.add_skeleton("junk", now=1.0, pid=999999999)
    assert sandbox.errmesh("drain").returncode == 0
    with Store.open(config.cluster_state_dir) as store:
        assert store.counters().get("corrupt_rows") == 1
    assert rows(config, "skeleton") == 0
