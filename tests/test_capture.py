"""Capture inside real host programs: hooks, exit statuses, logs, solo mode.

Each test runs a small host program in its own process, the way errmesh is
used, then reads what errmesh left behind (spool, issue files).
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import textwrap

from conftest import Sandbox

INSTALL = "import node; node.install(app='hostapp')\n"


def host(code: str) -> str:
    """A host program: errmesh installed, then ``code``."""
    return INSTALL + textwrap.dedent(code)


def test_unhandled_exception_becomes_one_issue_and_the_exit_status_is_kept(
    sandbox: Sandbox,
) -> None:
    done = sandbox.python(
        host(
            """
        import logging
        logging.basicConfig(level=logging.INFO)
        log = logging.getLogger("hostapp.jobs")
        for i in range(60):
            log.info("step %d", i)
        def parse(raw):
            return int(raw)
        parse("x9")
        """
        )
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr  # the previous hook still ran
    assert "ValueError: invalid literal" in done.stderr
    (issue,) = sandbox.issues()
    assert issue["title"] == "[errmesh] ValueError: invalid literal for int() with base <n>: <str>"
    assert issue["total"] == 1 and issue["state"] == "open"
    text = (sandbox.issues_dir / issue["file"]).read_text()
    assert "in parse" in text
    assert "INFO hostapp.jobs: step 59" in text  # the log ring kept the last lines
    assert "step 9\n" not in text  # ... and only the last 50
    assert "Last 50 lines before the error" in text


def test_the_same_bug_again_counts_on_the_same_issue(sandbox: Sandbox) -> None:
    code = host("import random\nraise KeyError(f'user-{random.randint(1, 10**6)}')\n")
    for _ in range(3):
        assert sandbox.python(code, ERRMESH_WINDOW="0").returncode == 1
    (issue,) = sandbox.issues()
    assert issue["total"] == 3


def test_updates_wait_for_the_bundle_window(sandbox: Sandbox) -> None:
    code = host("raise RuntimeError('disk on fire')\n")
    for _ in range(3):
        sandbox.python(code, ERRMESH_WINDOW="3600")
    (issue,) = sandbox.issues()
    assert issue["total"] == 1  # opened at once, then bundled for an hour
    status = sandbox.errmesh("status", "--json")
    assert '"occurrences": 3' in status.stdout  # ... while the aggregate counts all


def test_distinct_bugs_get_distinct_issues(sandbox: Sandbox) -> None:
    sandbox.python(host("raise ValueError('a')\n"))
    sandbox.python(host("raise TypeError('a')\n"))
    sandbox.python(host("def other():\n    raise ValueError('a')\nother()\n"))
    assert len(sandbox.issues()) == 3


def test_report_errors_decorator_reraises_and_keeps_exit_codes(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import sys, node
        @node.report_errors
        def main():
            sys.exit(3)
        main()
        """
    )
    assert done.returncode == 3
    assert sandbox.issues()[0]["title"].startswith("[errmesh] SystemExit: <n>")
    clean = sandbox.python(
        """
        import sys, node
        @node.report_errors
        def main():
            sys.exit(0)
        main()
        """
    )
    assert clean.returncode == 0
    assert len(sandbox.issues()) == 1  # SystemExit(0) is not an error


def test_decorator_and_excepthook_report_one_exception_once(sandbox: Sandbox) -> None:
    done = sandbox.python(
        host(
            """
        @node.report_errors
        def main():
            raise OSError("no space left on device")
        main()
        """
        )
    )
    assert done.returncode == 1
    (issue,) = sandbox.issues()
    assert issue["total"] == 1
    assert issue["severity"] == "high"


def test_keyboard_interrupt_is_not_an_error_by_default(sandbox: Sandbox) -> None:
    done = sandbox.python(host("raise KeyboardInterrupt\n"))
    assert done.returncode == -signal.SIGINT  # Python's own exit for Ctrl-C, unchanged
    assert sandbox.issues() == []
    opted_in = sandbox.python(
        host("raise KeyboardInterrupt\n"), ERRMESH_CAPTURE_KEYBOARD_INTERRUPT="1"
    )
    assert opted_in.returncode == -signal.SIGINT
    assert len(sandbox.issues()) == 1


def test_context_manager_and_capture_exception(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import node
        try:
            with node.report_errors():
                {}["missing"]
        except KeyError:
            pass
        try:
            1 / 0
        except ZeroDivisionError:
            sig = node.capture_exception()
        print(sig)
        print(node.capture_exception())  # nothing being handled
        """
    )
    assert done.returncode == 0, done.stderr
    sig, nothing = done.stdout.split()
    assert len(sig) == 12 and nothing == "None"
    assert {i["title"].split(":")[0] for i in sandbox.issues()} == {
        "[errmesh] KeyError",
        "[errmesh] ZeroDivisionError",
    }


def test_thread_exceptions_are_captured_and_the_previous_hook_runs(sandbox: Sandbox) -> None:
    done = sandbox.python(
        host(
            """
        import threading
        def work():
            raise LookupError("worker lost its shard")
        t = threading.Thread(target=work)
        t.start(); t.join()
        print("host goes on")
        """
        )
    )
    assert done.returncode == 0
    assert "host goes on" in done.stdout
    assert "LookupError: worker lost its shard" in done.stderr
    assert sandbox.issues()[0]["title"] == "[errmesh] LookupError: worker lost its shard"


def test_before_send_can_edit_or_drop(sandbox: Sandbox) -> None:
    code = """
        import node
        def hook(report):
            if "ignore me" in report.message:
                return None
            return report.replace(message=report.message + " (edited)", fingerprint=("{{ default }}", "x"))
        node.install(before_send=hook)
        node.capture_exception(ValueError("ignore me"))
        node.capture_exception(ValueError("keep me"))
    """
    assert sandbox.python(code).returncode == 0
    (issue,) = sandbox.issues()
    assert issue["title"].endswith("keep me (edited)")


def test_a_two_argument_before_send_gets_the_original_exception(sandbox: Sandbox) -> None:
    code = """
        import node
        class Declined(Exception):
            def __init__(self, order):
                super().__init__("declined")
                self.order = order
        def hook(report, hint):
            if "exc_info" not in hint:  # a message
                return report
            exc_type, exc, tb = hint["exc_info"]
            assert exc_type is Declined and tb is exc.__traceback__
            if exc.order == "skip":
                return None
            return report.replace(message=f"{report.message} for order {exc.order}")
        node.install(before_send=hook)
        for order in ("skip", "A-17"):
            try:
                raise Declined(order)
            except Declined:
                node.capture_exception()
        node.capture_message("only a message")  # no exception: an empty hint
    """
    done = sandbox.python(code)
    assert done.returncode == 0, done.stderr
    assert "errmesh:" not in done.stderr
    titles = sorted(i["title"] for i in sandbox.issues())
    assert titles == [
        "[errmesh] Message: only a message",
        "[errmesh] __main__.Declined: declined for order A-<n>",
    ]


def test_chained_causes_are_in_the_report(sandbox: Sandbox) -> None:
    sandbox.python(
        host(
            """
        try:
            raise OSError("connection refused")
        except OSError as exc:
            raise ConnectionError("cannot reach the API") from exc
        """
        )
    )
    (issue,) = sandbox.issues()
    text = (sandbox.issues_dir / issue["file"]).read_text()
    assert "OSError: connection refused" in text
    assert "direct cause of the following exception" in text


def test_errmesh_failing_says_so_once_and_the_host_goes_on(sandbox: Sandbox) -> None:
    blocker = sandbox.root / "blocked"
    blocker.write_text("a file where the state directory should be")
    done = sandbox.python(
        host(
            """
        for i in range(3):
            node.capture_exception(ValueError(f"try {i}"))
        print("still running")
        raise SystemExit(7)
        """
        ),
        ERRMESH_STATE_DIR=str(blocker / "state"),
    )
    assert done.returncode == 7
    assert "still running" in done.stdout
    assert done.stderr.count("errmesh: could not record this error") == 1


def test_killed_right_after_spooling_the_report_waits_in_the_spool(sandbox: Sandbox) -> None:
    """SIGKILL between spool and delivery: the report is durable, the next process delivers it."""
    done = sandbox.python(
        """
        import os, signal, node
        class DieAfterSpool:
            def deliver(self, store, reports, *, exiting):
                os.kill(os.getpid(), signal.SIGKILL)
        node.install(app="victim", delivery=DieAfterSpool())
        raise RuntimeError("killed mid-report")
        """,
        ERRMESH_SPOOL_SYNC="full",
    )
    assert done.returncode == -signal.SIGKILL
    db = sandbox.state_dir / "errmesh.sqlite3"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 1
    conn.close()
    assert sandbox.issues() == []
    # The next errmesh process on this machine delivers it.
    sandbox.python(host("raise ValueError('another error')\n"))
    titles = sorted(i["title"] for i in sandbox.issues())
    assert titles == [
        "[errmesh] RuntimeError: killed mid-report",
        "[errmesh] ValueError: another error",
    ]


def test_import_and_install_load_nothing_heavy(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import sys, threading
        before = set(sys.modules)
        threads = threading.active_count()
        import node
        node.install(app="x")
        heavy = [m for m in ("libp2p", "trio", "httpx", "msgpack", "sqlite3", "mesh", "socket", "node.config")
                 if m in sys.modules]
        print(heavy, threading.active_count() - threads)
        """
    )
    assert done.stdout.strip() == "[] 0", done.stderr


def test_install_checks_options_at_once() -> None:
    import pytest

    import node

    with pytest.raises(node.ConfigError, match="windwo"):
        node.install(windwo=5)


def test_interactive_shells_keep_their_excepthook(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import sys
        sys.ps1 = ">>> "
        hook = sys.excepthook
        import node
        node.install()
        print(sys.excepthook is hook)
        """
    )
    assert done.stdout.strip() == "True"


def test_uninstall_restores_the_previous_hooks() -> None:
    import threading

    import node

    before = (sys.excepthook, threading.excepthook)
    node.install(app="t")
    assert sys.excepthook is not before[0]
    node.uninstall()
    assert (sys.excepthook, threading.excepthook) == before
