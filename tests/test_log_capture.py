"""``capture_log_level``: the host's ``log.error`` and ``log.exception`` become reports.

sentry-python's LoggingIntegration, opt-in. Each test runs a host program in
its own process and reads the file sink's issues (as tests/test_capture.py
does).
"""

from __future__ import annotations

from conftest import Sandbox

#: A host that logs at every level, then exits 0: only the records are reports.
HOST = """
import logging, node
node.install({options})
logging.basicConfig()
log = logging.getLogger("shop")
log.warning("stock low")
log.error("order %s failed", 17)
try:
    {{}}["coupon"]
except KeyError:
    log.exception("lookup failed")
log.critical("payments down")
"""


def host(options: str = "") -> str:
    return HOST.format(options=options)


def text_of(sandbox: Sandbox, title: str) -> str:
    (issue,) = [i for i in sandbox.issues() if i["title"] == f"[errmesh] {title}"]
    return (sandbox.issues_dir / issue["file"]).read_text()


def test_error_records_become_reports_at_or_above_the_level(sandbox: Sandbox) -> None:
    done = sandbox.python(host('capture_log_level="error"'))
    assert done.returncode == 0, done.stderr
    assert "ERROR:shop:order 17 failed" in done.stderr  # the host's own handler still ran
    titles = sorted(i["title"] for i in sandbox.issues())
    assert titles == [
        "[errmesh] KeyError: <str>",
        "[errmesh] Message: order <n> failed",
        "[errmesh] Message: payments down",
    ]  # the warning is below the level
    message = text_of(sandbox, "Message: order <n> failed")
    assert "- level: `error`" in message and "- logger: `shop`" in message
    assert "line 7, in <module>" in message  # the frame that logged it
    assert "severity:medium" in message
    assert "severity:critical" in text_of(sandbox, "Message: payments down")
    exception = text_of(sandbox, "KeyError: <str>")
    assert "KeyError: 'coupon'" in exception
    assert "line 9, in <module>" in exception  # the exception's own traceback
    assert "ERROR shop: lookup failed" in exception  # the record, last in the log tail


def test_it_is_off_by_default(sandbox: Sandbox) -> None:
    assert sandbox.python(host()).returncode == 0
    assert sandbox.issues() == []


def test_the_environment_and_the_config_file_set_it(sandbox: Sandbox) -> None:
    sandbox.env["ERRMESH_WINDOW"] = "0"  # each run updates the issues at once
    sandbox.python(host(), ERRMESH_CAPTURE_LOG_LEVEL="critical")
    assert [i["title"] for i in sandbox.issues()] == ["[errmesh] Message: payments down"]
    (sandbox.root / "config.toml").write_text('capture_log_level = "warning"\n')
    sandbox.python(host())
    assert len(sandbox.issues()) == 4  # and stock low
    sandbox.python(host('capture_log_level=""'))  # the option wins: off
    assert sum(i["total"] for i in sandbox.issues()) == 5


def test_errmeshs_own_and_libp2ps_loggers_are_never_captured(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import logging, node
        node.install(capture_log_level="warning")
        for name in ("errmesh", "errmesh.peer", "libp2p.pubsub", "libp2p"):
            logging.getLogger(name).error("trouble in %s", name)
        logging.getLogger("libp2pish").error("a host logger")
        """
    )
    assert done.returncode == 0, done.stderr
    assert [i["title"] for i in sandbox.issues()] == ["[errmesh] Message: a host logger"]


def test_a_logged_exception_that_then_escapes_is_one_report(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import logging, node
        node.install(capture_log_level="error")
        log = logging.getLogger("job")
        try:
            raise ValueError("bad row 12")
        except ValueError:
            log.exception("import failed")
            raise
        """
    )
    assert done.returncode == 1
    (issue,) = sandbox.issues()
    assert issue["title"] == "[errmesh] ValueError: bad row <n>" and issue["total"] == 1


def test_a_reported_exception_that_is_then_logged_is_one_report(sandbox: Sandbox) -> None:
    sandbox.python(
        """
        import logging, node
        node.install(capture_log_level="error")
        try:
            with node.report_errors():
                raise OSError("disk gone")
        except OSError:
            logging.getLogger("job").exception("giving up")
        """
    )
    (issue,) = sandbox.issues()
    assert issue["total"] == 1


def test_rate_limits_apply_to_logged_errors(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import logging, node
        node.install(capture_log_level="error", max_reports_per_minute=2)
        for i in range(5):
            logging.getLogger("poll").error("timeout talking to db-%d", i)
            print(dict(node.last_outcome().report.facts).get("detail", "full"))
        """,
        ERRMESH_WINDOW="0",
    )
    assert done.stdout.split()[:2] == ["full", "full"]
    assert "full" not in done.stdout.split()[3:]  # (the third only if a minute turned)
    (issue,) = sandbox.issues()
    assert issue["total"] == 5  # every occurrence counted


def test_errors_logged_by_two_threads_at_once_are_both_reported(sandbox: Sandbox) -> None:
    sandbox.python(
        """
        import logging, threading, node
        node.install(capture_log_level="error")
        def work(name):
            logging.getLogger(name).error("worker %s failed", name)
        threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        """,
        ERRMESH_WINDOW="0",
    )
    assert sum(i["total"] for i in sandbox.issues()) == 2


def test_install_does_not_import_logging_for_it(sandbox: Sandbox) -> None:
    for options in ("", 'capture_log_level="error"'):
        done = sandbox.python(
            f"""
            import sys
            before = set(sys.modules)
            import node
            node.install({options})
            print(sorted(m for m in set(sys.modules) - before
                         if m == "logging" or m.startswith("node.")))
            """,
            ERRMESH_CAPTURE_LOG_LEVEL="error",
        )
        extra = "'node.settings', " if options else ""
        assert done.stdout.strip() == f"['node.capture', 'node.errors', {extra}]".replace(
            ", ]", "]"
        ), done.stderr
