"""``errmesh run -- CMD``: pass everything through, report failures, exit like CMD."""

from __future__ import annotations

import signal
import sys
import time

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
    runs = [
        sandbox.errmesh("run", "--", sys.executable, "-c", f"raise SystemExit({code})")
        for code in ("1", "2")
    ]
    runs.append(
        sandbox.errmesh(
            "run",
            "--",
            sys.executable,
            "-c",
            "import os, signal; os.kill(os.getpid(), signal.SIGINT)",
        )
    )
    issues = sandbox.issues()
    # (Failed once in CI with two issues: say which, and what each run said.)
    assert len(issues) == 3, (
        [i["title"] for i in issues],
        [(r.returncode, r.stderr[-1500:]) for r in runs],
    )


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


def test_a_job_past_its_timeout_is_killed_and_reported_with_its_own_signature(
    sandbox: Sandbox,
) -> None:
    hang = "import sys, time, random; print('step', random.random(), file=sys.stderr, flush=True); time.sleep(60)"
    for _ in range(2):
        started = time.monotonic()
        done = sandbox.errmesh(
            "run", "--name", "nightly-backup", "--timeout", "0.5", "--",
            sys.executable, "-c", hang,
            ERRMESH_WINDOW="0",
        )  # fmt: skip
        assert done.returncode == 124
        assert time.monotonic() - started < 30  # killed, not waited for
    (issue,) = sandbox.issues()  # one signature whatever the job printed
    assert issue["title"].startswith("[errmesh] nightly-backup timed out after 0.5 s")
    assert issue["total"] == 2
    sandbox.errmesh(
        "run", "--name", "nightly-backup", "--", sys.executable, "-c", "raise SystemExit(1)"
    )
    assert len(sandbox.issues()) == 2  # failing is another bug than hanging


def test_a_job_that_ignores_sigterm_is_killed(sandbox: Sandbox) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
        "time.sleep(60)"
    )
    done = sandbox.errmesh("run", "--timeout", "0.3", "--", sys.executable, "-c", stubborn)
    assert done.returncode == 124 and done.stdout == "up\n"
    assert "timed out after 0.3 s" in sandbox.issues()[0]["title"]


def test_named_jobs_of_one_program_group_apart(sandbox: Sandbox) -> None:
    for name in ("import-a", "import-b"):
        sandbox.errmesh("run", "--name", name, "--", sys.executable, "-c", "raise SystemExit(2)")
    titles = sorted(i["title"] for i in sandbox.issues())
    assert titles == ["[errmesh] import-a exited 2", "[errmesh] import-b exited 2"]


def test_a_failure_reports_the_last_50_lines_of_stderr_and_stdout(sandbox: Sandbox) -> None:
    script = (
        "import sys\n"
        "for i in range(80):\n"
        "    print(f'out {i}')\n"
        "    print(f'err {i}', file=sys.stderr)\n"
        "print('token=ghp_' + 'a1B2c3D4' * 5)\n"
        "sys.exit(4)\n"
    )
    done = sandbox.errmesh("run", "--", sys.executable, "-c", script)
    assert done.returncode == 4
    assert done.stdout.count("\n") == 81 and "out 79" in done.stdout  # passed through
    (issue,) = sandbox.issues()
    text = (sandbox.issues_dir / issue["file"]).read_text()
    assert "## Output (stderr tail)" in text and "## Output (stdout tail)" in text
    assert "err 79" in text and "err 30\n" in text and "err 29\n" not in text
    assert "out 79" in text and "out 31\n" in text and "out 30\n" not in text
    assert "a1B2c3D4" * 5 not in text  # the stdout tail is scrubbed too
