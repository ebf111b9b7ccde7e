"""The relay's dashboard in a real browser: headless Chromium against real relays.

Two relays (``errmesh relay`` on loopback, filing issues in the test
GitHub) and failing CLIs reporting to them; Chromium (driven over the DevTools protocol, ``tests/chromium.py``)
opens the leader's ``/dashboard`` and must show the signatures, then,
without a reload, the one a later CLI reports: an error whose message is
a ``<script>``, which must show as text and run nowhere. The screenshot
is kept in the test's folder (``ERRMESH_DASHBOARD_PNG=path`` copies it
there: how ``docs/dashboard.png`` is made).

The session fixture installs Debian's ``chromium`` when it is missing and
the tests run as root (a clean CI machine: apt-get install took 34 s here; printed), and
skips with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium import Browser, ensure_chromium
from mesh_cluster import (
    CONVERGE,
    ERRORS,
    STARTUP,
    Cluster,
    print_figure,
    start_pair,
    wait_until,
)

from tests.github_fake import GitHubApp, serve
from tests.github_fake.fixtures import assert_no_violations

pytestmark = pytest.mark.slow

REPO = "octo-org/octo-repo"
TOKEN = "test-token-for-the-dashboard"

#: A failing program's message that is markup: it must reach the page as text.
SCRIPT_ERROR = 'RuntimeError("<script>window.pwned = true</script> in checkout")'


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    binary, said = ensure_chromium()
    print_figure(f"dashboard browser: {said}")
    if binary is None:
        pytest.skip(said)
    return binary


@pytest.fixture
def browser(chromium_binary: str, tmp_path: Path) -> Iterator[Browser]:
    with Browser(chromium_binary, tmp_path / "profile") as opened:
        yield opened


@pytest.fixture
def github_url() -> Iterator[str]:
    """The test GitHub (``tests/github_fake``), so that the page links real issue URLs."""
    app = GitHubApp(repos=[REPO], tokens=[TOKEN])
    with serve(app) as url:
        yield url
    assert_no_violations(app)


def test_the_dashboard_shows_the_signatures_and_updates_after_a_new_report(
    cluster: Cluster,
    browser: Browser,
    github_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(ERRORS, "RuntimeError", SCRIPT_ERROR)
    r1, r2 = start_pair(
        cluster,
        env={
            "ERRMESH_SINK": "github",
            "ERRMESH_REPO": REPO,
            "ERRMESH_GITHUB_TOKEN": TOKEN,
            "ERRMESH_GITHUB_API_URL": github_url,
            "ERRMESH_GITHUB_MIN_INTERVAL": "0.05",
        },
    )
    leader = r1 if r1.status().get("role") == "leader" else r2
    machines = [cluster.machine("web-1"), cluster.machine("web-2")]
    cluster.run_clis(
        [(machines[i % 2], kind, [r1.maddr]) for i, kind in enumerate(["ValueError"] * 3)]
        + [(machines[1], "LookupError", [r2.maddr]), (machines[0], "ZeroDivisionError", [r2.maddr])]
    )
    wait_until(lambda: len(leader.totals()) == 3, CONVERGE, "the leader holds three signatures")

    browser.open(leader.status()["status_url"].removesuffix("/status") + "/dashboard")
    text = "document.body ? document.body.innerText : ''"
    wait_until(
        lambda: all(k in browser.evaluate(text) for k in ("ValueError", "LookupError")),
        STARTUP,
        "the page shows the signatures",
    )
    shown = browser.evaluate(text)
    assert "ZeroDivisionError" in shown and "Peers and links" in shown
    rows = browser.evaluate("document.querySelectorAll('#signatures tr.sig').length")
    relays = "#members tr.member:not(.role-reporter)"  # a CLI still connected is a reporter
    members = browser.evaluate(f"document.querySelectorAll('{relays}').length")
    assert (rows, members) == (3, 2)

    cluster.run_clis([(machines[0], "RuntimeError", [r1.maddr])])
    wait_until(
        lambda: "<script>window.pwned = true</script>" in browser.evaluate(text),
        CONVERGE,
        "the open page shows the new report, as text",
    )
    assert browser.evaluate("typeof window.pwned") == "undefined"
    assert browser.evaluate("document.scripts.length") == 1  # the page's own poller
    assert browser.evaluate("document.querySelectorAll('#signatures tr.sig').length") == 4
    spark = "document.querySelectorAll('#signatures svg.spark rect').length"
    assert browser.evaluate(spark) >= 4  # every signature has a bar in the last minutes
    issues = "document.querySelectorAll('#signatures a[href*=\"/octo-repo/issues/\"]').length"
    wait_until(lambda: browser.evaluate(issues) == 4, CONVERGE, "every row links its issue")
    assert "writes left this minute" in browser.evaluate(
        "document.getElementById('budget').innerText"
    )

    png = browser.screenshot(tmp_path / "dashboard.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    if target := os.environ.get("ERRMESH_DASHBOARD_PNG"):
        shutil.copyfile(tmp_path / "dashboard.png", target)
