"""``errmesh run -- CMD``: pass everything through, report failures, exit like CMD."""

from __future__ import annotations

import signal
import sys

from conftest import Sandbox


def test_success_passes_output_through_and_reports_nothing(sandbox: Sandbox) -> None:
    done = sandbox.errmesh(
        "run", "--", sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"
    )
    assert done.returncode == 0
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"
    assert sandbox.issues() == []


def test_failure_keeps_the_exit_code_and_reports_the_error_line(sandbox: Sandbox) -> None:
    script = (
        "import sys, random\n"
        "print('compiling unit', random.randint(1, 99), file=sys.stderr)\n"
        "print(f'error: cannot open /srv/data/{random.randint(1, 999)}.db', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    for _ in range(2):
        done = sandbox.errmesh("run", "--", sys.executable, "-c", script, ERRMESH_WINDOW="0")
        assert done.returncode == 3
        assert "error: cannot open" in done.stderr  # stderr still reaches the user
    (issue,) = sandbox.issues()  # variable parts normalised: one signature
    assert issue["total"] == 2
    program = sys.executable.rsplit("/", 1)[-1]
    assert issue["title"].startswith(f"[errmesh] {program} exited 3: error: cannot open")
    text = (sandbox.issues_dir / issue["file"]).read_text()
    assert "## Output (stderr tail)" in text and "compiling unit" in text


def test_death_by_signal_is_passed_on(sandbox: Sandbox) -> None:
    done = sandbox.errmesh(
        "run", "--", sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    )
    assert done.returncode == -signal.SIGTERM
    (issue,) = sandbox.issues()
    assert "killed by SIGTERM" in issue["title"]


def test_exit_code_and_signal_make_different_signatures(sandbox: Sandbox) -> None:
    for code in ("1", "2"):
        sandbox.errmesh("run", "--", sys.executable, "-c", f"raise SystemExit({code})")
    sandbox.errmesh(
        "run", "--", sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGINT)"
    )
    assert len(sandbox.issues()) == 3


def test_missing_program_answers_like_a_shell(sandbox: Sandbox) -> None:
    done = sandbox.errmesh("run", "--", "no-such-program-errmesh")
    assert done.returncode == 127
    assert "command not found" in done.stderr
    assert "no-such-program-errmesh exited 127" in sandbox.issues()[0]["title"]


def test_stdin_is_passed_through(sandbox: Sandbox) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "node", "run", "--", sys.executable, "-c", "print(input()[::-1])"],
        input="olleh\n",
        capture_output=True,
        text=True,
        env=sandbox.env,
        timeout=60,
    )
    assert done.stdout == "hello\n"


def test_run_needs_a_command(sandbox: Sandbox) -> None:
    done = sandbox.errmesh("run")
    assert done.returncode == 2
    assert "Missing argument" in done.stderr
