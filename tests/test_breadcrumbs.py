"""Breadcrumbs: what the host noted before an error, shown in time order with its logs.

Through the real capture path into the file sink, in host programs of their
own (as tests/test_capture.py does).
"""

from __future__ import annotations

import re

from conftest import Sandbox


def issue_text(sandbox: Sandbox) -> str:
    (issue,) = sandbox.issues()
    return (sandbox.issues_dir / issue["file"]).read_text()


def test_breadcrumbs_and_log_records_are_shown_in_time_order(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import logging, node
        node.install()
        logging.basicConfig(level=logging.INFO)
        log = logging.getLogger("shop")
        log.info("cart opened")
        node.add_breadcrumb("GET /api/cart", category="http", data={"status": 200})
        log.warning("stock low")
        node.add_breadcrumb({"message": "user clicked pay", "category": "ui", "level": "debug"})
        raise ValueError("payment declined")
        """
    )
    assert done.returncode == 1
    text = issue_text(sandbox)
    order = [
        "INFO shop: cart opened",
        "INFO breadcrumb[http]: GET /api/cart status=200",
        "WARNING shop: stock low",
        "DEBUG breadcrumb[ui]: user clicked pay",
    ]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)
    assert "Last 4 lines before the error" in text


def test_the_ring_keeps_the_last_log_lines_entries(sandbox: Sandbox) -> None:
    sandbox.python(
        """
        import node
        node.install(log_lines=5)
        for i in range(100):
            node.add_breadcrumb(f"step {i}")
        raise ValueError("late")
        """
    )
    text = issue_text(sandbox)
    steps = re.findall(r"breadcrumb\[\]: step (\d+)", text)
    assert steps == ["95", "96", "97", "98", "99"]


def test_a_secret_in_a_breadcrumb_is_scrubbed_before_spooling(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import node
        node.install()
        node.add_breadcrumb("login", category="auth", data={"password": "hunter2-long-enough"})
        node.add_breadcrumb("x" * 100_000, category="big")
        raise ValueError("failed")
        """
    )
    assert done.returncode == 1
    assert b"hunter2-long-enough" not in sandbox.all_bytes()
    text = issue_text(sandbox)
    assert "breadcrumb[auth]: login password=" in text
    assert "x" * 600 not in text  # each line is bounded
