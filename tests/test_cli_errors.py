"""errmesh never stands between a user and their program, and says what is wrong in one line.

Wrapped programs and host programs always run and keep their exit status
whatever errmesh's settings hold (bad values fall back to defaults, said
once); operator commands stop on a bad setting or an unusable path with one
line naming it, never a traceback unless ``--log-level debug``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Sandbox

FAIL = (
    "run",
    "--",
    sys.executable,
    "-c",
    "import sys; print('boom', file=sys.stderr); sys.exit(3)",
)


def errmesh_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("errmesh")]


def test_run_with_a_bad_environment_value_runs_reports_and_says_so_once(sandbox: Sandbox) -> None:
    done = sandbox.errmesh(*FAIL, ERRMESH_HEARTBEAT="abc", ERRMESH_WINDOW="0")
    assert done.returncode == 3
    assert "boom" in done.stderr
    (line,) = errmesh_lines(done.stderr)
    assert "ERRMESH_HEARTBEAT" in line and "'abc'" in line
    # The other settings still hold: the issue is in the sandbox's folder.
    assert [i["total"] for i in sandbox.issues()] == [1]


def test_run_with_a_corrupt_config_file_ignores_the_file(sandbox: Sandbox) -> None:
    config = sandbox.root / "config.toml"
    config.write_text("window = = 1\n")
    done = sandbox.errmesh(*FAIL)
    assert done.returncode == 3
    (line,) = errmesh_lines(done.stderr)
    assert str(config) in line and "ignored" in line
    assert len(sandbox.issues()) == 1


def test_run_with_a_bad_value_in_the_file_keeps_the_files_other_settings(
    sandbox: Sandbox,
) -> None:
    elsewhere = sandbox.root / "elsewhere"
    (sandbox.root / "config.toml").write_text(f'issues_dir = "{elsewhere}"\nsettle = "soon"\n')
    done = sandbox.errmesh(*FAIL)
    assert done.returncode == 3
    (line,) = errmesh_lines(done.stderr)
    assert "settle" in line
    assert (elsewhere / "index.json").exists()


@pytest.mark.parametrize(
    "options",
    [
        ("--bogus",),
        ("--colour", "auto"),
        ("--window", "soon"),
        ("--window=soon",),
        ("--sink", "carrier-pigeon"),
    ],
    ids=[
        "unknown flag",
        "unknown option with a value",
        "bad value",
        "bad value with =",
        "bad choice",
    ],
)
def test_run_with_a_bad_global_option_still_runs_and_keeps_the_good_ones(
    sandbox: Sandbox, options: tuple[str, ...]
) -> None:
    """A typo in a cron line's errmesh options must not stop the job: the bad
    option is dropped and said once, the valid ones (here the cluster) hold."""
    done = sandbox.errmesh("--cluster", "nightly", *options, *FAIL)
    assert done.returncode == 3, done.stderr
    assert "boom" in done.stderr
    (line,) = errmesh_lines(done.stderr)
    assert options[0].partition("=")[0] in line and "ignoring" in line
    nightly = sandbox.root / "data" / "nightly" / "issues" / "index.json"
    assert nightly.exists(), "the report went to the cluster the valid option named"
    assert not sandbox.issues_dir.exists()


def test_operator_commands_still_refuse_a_bad_global_option(sandbox: Sandbox) -> None:
    done = sandbox.errmesh("--window", "soon", "status")
    assert done.returncode == 2
    assert "--window" in done.stderr


def test_embedded_capture_with_a_bad_environment_value_still_reports(sandbox: Sandbox) -> None:
    done = sandbox.python(
        "import node\nnode.install()\nraise RuntimeError('host failure')\n",
        ERRMESH_HEARTBEAT="abc",
    )
    assert done.returncode == 1
    assert "RuntimeError: host failure" in done.stderr  # the host's own traceback
    (line,) = errmesh_lines(done.stderr)
    assert "ERRMESH_HEARTBEAT" in line
    assert len(sandbox.issues()) == 1


def _one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("errmesh: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("relay", "--listen", "127.0.0.1:4603"), {}, "listen"),
        (("status",), {"ERRMESH_HEARTBEAT": "0"}, "ERRMESH_HEARTBEAT"),
        (("config",), {"ERRMESH_SCRUB_PATTERNS": "token=(["}, "token=(["),
        (("config",), {"ERRMESH_STATUS_PORT": "70000"}, "ERRMESH_STATUS_PORT"),
        (("config",), {"ERRMESH_PEERS": "/ip4/127.0.0.1/tcp/4747"}, "ERRMESH_PEERS"),
        (("drain",), {"ERRMESH_ACK_TIMEOUT": "-1"}, "ERRMESH_ACK_TIMEOUT"),
        (("relay", "--bootstrap", "/ip4/10.0.0.1/tcp/4747/p2p/not-an-id"), {}, "peers"),
        (("issues", "list"), {"ERRMESH_GITHUB_TIMEOUT": "0"}, "ERRMESH_GITHUB_TIMEOUT"),
    ],
)
def test_operator_commands_name_a_bad_setting_in_one_line(
    sandbox: Sandbox, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    _one_line(sandbox.errmesh(*args, **env), 2, named)


def test_operator_commands_refuse_a_corrupt_config_file(sandbox: Sandbox) -> None:
    config = sandbox.root / "config.toml"
    config.write_text("window = = 1\n")
    _one_line(sandbox.errmesh("status"), 2, str(config))


@pytest.mark.parametrize("content", ["", "not hex at all\n", "abcd\n"])
def test_relay_names_a_bad_key_file(sandbox: Sandbox, content: str) -> None:
    key = sandbox.root / "cluster.key"
    if content:
        key.write_text(content)
    done = sandbox.errmesh("relay", "--key-file", str(key), "--listen", "/ip4/127.0.0.1/tcp/0")
    _one_line(done, 2, "key_file", str(key))


def test_a_non_sqlite_file_where_the_store_is_is_named(sandbox: Sandbox) -> None:
    sandbox.state_dir.mkdir(parents=True)
    db = sandbox.state_dir / "errmesh.sqlite3"
    db.write_text("this is not a database\n" * 100)
    for command in ("status", "drain"):
        _one_line(sandbox.errmesh(command), 1, str(db), "not a database")


def test_keygen_into_a_missing_folder_is_one_line(sandbox: Sandbox) -> None:
    target = sandbox.root / "no" / "such" / "key"
    _one_line(sandbox.errmesh("keygen", str(target)), 1, str(target))


def test_log_level_debug_shows_the_traceback(sandbox: Sandbox) -> None:
    done = sandbox.errmesh("--log-level", "debug", "status", ERRMESH_HEARTBEAT="0")
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "ERRMESH_HEARTBEAT" in done.stderr


def _in_tiny_filesystem(
    sandbox: Sandbox, mount: Path, setup: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run errmesh in a private mount namespace over a 64 KiB tmpfs at ``mount``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux unshare")
    mount.mkdir(parents=True)
    probe = subprocess.run(
        [unshare, "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("user and mount namespaces are not available")
    script = f'mount -t tmpfs -o size=64k tmpfs {mount} && {setup} && exec "$@"'
    return subprocess.run(
        [unshare, "-rm", "sh", "-c", script, "sh", sys.executable, "-m", "node", *args],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=sandbox.root,
    )


def test_a_read_only_state_dir_is_named_not_unable_to_open(sandbox: Sandbox) -> None:
    mount = sandbox.root / "ro"
    done = _in_tiny_filesystem(
        sandbox, mount, f"mount -o remount,ro {mount}", "--state-dir", str(mount), "status"
    )
    line = _one_line(done, 1, f"{mount} is not writable")
    assert "unable to open" not in line


def test_a_full_disk_is_named_not_disk_io_error(sandbox: Sandbox) -> None:
    mount = sandbox.root / "full"
    done = _in_tiny_filesystem(
        sandbox,
        mount,
        f"(dd if=/dev/zero of={mount}/fill bs=4k 2>/dev/null || true)",
        "--state-dir",
        str(mount),
        "status",
    )
    _one_line(done, 1, "disk full at", str(mount))
