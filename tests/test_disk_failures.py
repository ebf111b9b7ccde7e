"""A full or read-only disk: errmesh warns once, the host keeps its exit status.

Each test mounts a tiny tmpfs as the state directory inside a private mount
namespace (``unshare --mount``), so the disk is really full or really
read-only for SQLite, and nothing outside the test sees the mount. This
needs root (CI and the developers' machines run as root); elsewhere the
tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mesh_cluster import CONVERGE, Cluster, Relay, wait_until

from conftest import Sandbox

HOST = textwrap.dedent(
    """
    import node
    node.install(app="disk")
    for i in range(3):
        node.capture_exception(RuntimeError(f"soft failure {i}"))
    print("host still running")
    raise ValueError("the real crash")
    """
)

needs_mount = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="mounting a tmpfs needs root and unshare(1)",
)


def run_on_tmpfs(
    sandbox: Sandbox, prepare: str, after: str = "true"
) -> subprocess.CompletedProcess[str]:
    """Mount a 256 KiB tmpfs at the state dir, run ``prepare``, the host, then ``after``.

    Exits with the host's status; ``after`` runs while the mount still exists.
    """
    state = sandbox.root / "state"
    state.mkdir(exist_ok=True)
    script = f"""
        set -e
        mount -t tmpfs -o size=256k,mode=0700 tmpfs {state}
        {prepare}
        set +e
        {sys.executable} -c "$HOST"
        status=$?
        {after}
        exit $status
    """
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
        env={**sandbox.env, "HOST": HOST},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=sandbox.root,
    )


def assert_host_unharmed(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1, done.stderr
    assert "host still running" in done.stdout
    assert "ValueError: the real crash" in done.stderr  # Python's own traceback, unchanged
    assert done.stderr.count("errmesh: could not record this error") == 1


@needs_mount
def test_full_disk_warns_once_and_the_host_goes_on(sandbox: Sandbox) -> None:
    fill = "dd if=/dev/zero of=$(dirname {0})/fill bs=1k 2>/dev/null || true"
    done = run_on_tmpfs(sandbox, fill.format(sandbox.state_dir))
    assert_host_unharmed(done)
    assert "full" in done.stderr or "No space" in done.stderr


@needs_mount
def test_read_only_disk_warns_once_and_the_host_goes_on(sandbox: Sandbox) -> None:
    state = sandbox.root / "state"
    done = run_on_tmpfs(sandbox, f"mount -o remount,ro {state}")
    assert_host_unharmed(done)
    assert "Read-only" in done.stderr or "readonly" in done.stderr


@needs_mount
def test_disk_filling_up_after_reports_were_spooled(sandbox: Sandbox) -> None:
    """The aggregate already holds a report when the disk fills: it survives."""
    first = sandbox.python("import node; node.capture_exception(KeyError('early'))")
    assert first.returncode == 0
    state = sandbox.root / "state"
    keep = sandbox.root / "keep"
    shutil.copytree(state, keep)
    shutil.rmtree(state)
    prepare = (
        f"cp -a {keep}/. {state}/ && (dd if=/dev/zero of={state}/fill bs=1k 2>/dev/null || true)"
    )
    count = (  # once space is freed again, the earlier state is all there
        f"rm {state}/fill; {sys.executable} -c \"import sqlite3; c = sqlite3.connect('{sandbox.state_dir}/errmesh.sqlite3');"
        " print('states', c.execute('SELECT COUNT(*) FROM states').fetchone()[0])\""
    )
    done = run_on_tmpfs(sandbox, prepare, after=count)
    assert_host_unharmed(done)
    assert "states 1" in done.stdout


# ---------------------------------------------------------------------------
# A relay whose disk fills up


def http_status(relay: Relay) -> dict[str, Any]:
    """``GET /status`` of a running relay ({} if it does not answer): unlike
    relay-status.json, it is served from memory, so a full disk cannot stale it."""
    lines = relay.stdout_path.read_text().splitlines()
    url = next(
        line.removeprefix("status on ").strip() for line in lines if line.startswith("status on ")
    )
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            data: dict[str, Any] = json.loads(answer.read())
    except (OSError, ValueError):
        return {}
    return data


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its file system is full."""
    chunk = b"\0" * 65536
    with path.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    with contextlib.suppress(OSError), path.open("ab") as out:  # the last few bytes too
        while True:
            out.write(b"\0")
            out.flush()


@needs_mount
def test_a_relay_on_a_full_disk_stays_up_acks_nothing_and_recovers(cluster: Cluster) -> None:
    """The relay's state dir is a 2 MiB tmpfs (in its own mount namespace). Full:
    it keeps running, acks nothing (the CLI keeps its report), says why once a
    minute and in /status. Space back: it notices by itself, and the next CLI's
    reports (the kept one too) are stored and acked."""
    relay = cluster.relay("R1")
    relay.state_dir.mkdir()
    relay.namespaced = True
    mount = 'mount -t tmpfs -o size=2M,mode=0700 tmpfs "$0" && exec "$@"'
    wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        mount,
        str(relay.state_dir),
    ]
    cluster.start_relay(relay, wrap=wrap)
    assert relay.alive() and http_status(relay)["store"]["ok"] is True
    filler = relay.seen(relay.state_dir / "fill")
    fill(filler)

    machine = cluster.machine("M1")
    cluster.run_clis([(machine, "ValueError", [relay.maddr])], ERRMESH_ACK_TIMEOUT="2")
    down = wait_until(
        lambda: (s := http_status(relay)) and not s["store"]["ok"] and s,
        CONVERGE,
        "the relay reports its store down",
    )
    assert relay.alive(), relay.story()
    assert machine.spool_rows() == 1, "not acked: the CLI kept its report"
    assert "full" in down["store"]["error"]
    assert down["store"]["since"] is not None
    log = relay.stderr_path.read_text()
    assert log.count("store unavailable: disk full at") == 1, log[-3000:]

    filler.unlink()
    wait_until(
        lambda: http_status(relay).get("store", {}).get("ok"),
        CONVERGE,
        "the store recovers by itself",
    )
    assert "store recovered" in relay.stderr_path.read_text()
    # The next CLI on that machine sends what its spool kept, with its own report.
    cluster.run_clis([(machine, "LookupError", [relay.maddr])], ERRMESH_ACK_TIMEOUT="5")
    wait_until(lambda: machine.spool_rows() == 0, CONVERGE, "both reports acked")
    final = http_status(relay)
    assert final["signatures"] == 2, "both stored (acked only once stored)"
    assert final["store"] == {
        "ok": True,
        "error": None,
        "since": None,
        "path": down["store"]["path"],
    }
    assert final["faults"].get("store", 0) >= 1
    assert relay.alive()
