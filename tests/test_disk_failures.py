"""A full or read-only disk: errmesh warns once, the host keeps its exit status.

Each test mounts a tiny tmpfs as the state directory inside a private mount
namespace (``unshare --mount``), so the disk is really full or really
read-only for SQLite, and nothing outside the test sees the mount. This
needs root (CI and the developers' machines run as root); elsewhere the
tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

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
    assert f"{state} is not writable" in done.stderr  # not sqlite's "unable to open"


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
