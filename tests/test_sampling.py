"""ignore_errors, sample_rate and max_reports_per_minute: fewer details, exact counts.

Through the real capture path into the file sink (host programs of their
own), and the store's share of the rule with an explicit clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store import make_report

from conftest import Sandbox
from mesh.report import Frame, Report
from mesh.sampling import SAMPLED_FACT, DetailLimits
from mesh.store import Store
from node.config import resolve
from node.errors import ConfigError

REPEAT = """
    import node, sys
    node.install(**eval(sys.argv[1]))
    def work(n):
        raise ValueError(f"job {n} failed")
    for n in range(int(sys.argv[2])):
        try:
            work(n)
        except ValueError:
            node.capture_exception()
            out = node.last_outcome()
            print(len(out.report.frames), dict(out.report.facts).get("detail", "full"))
    """


def kept(done_stdout: str) -> list[bool]:
    return [line.endswith("full") for line in done_stdout.splitlines()]


def test_ignored_types_are_not_reported_on_either_path(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import node
        node.install(ignore_errors=["LookupError", "__main__.Retry"])
        class Retry(Exception):
            pass
        try:
            {}["x"]
        except KeyError:
            print(node.capture_exception())  # KeyError is a LookupError
        print(node.capture_exception(Retry("later")))
        raise IndexError("dying, but ignored too")
        """
    )
    assert done.returncode == 1
    assert done.stdout.split() == ["None", "None"]
    assert "IndexError: dying, but ignored too" in done.stderr  # the host's own hook ran
    assert sandbox.issues() == []
    done = sandbox.python("import node; node.install(ignore_errors='KeyError'); 1/0")
    assert [i["title"] for i in sandbox.issues()] == [
        "[errmesh] ZeroDivisionError: division by zero"
    ]


def test_sample_rate_zero_keeps_only_the_first_detail_and_counts_all(sandbox: Sandbox) -> None:
    done = sandbox.python(REPEAT, "{'sample_rate': 0}", "4", ERRMESH_WINDOW="0")
    assert done.returncode == 0, done.stderr
    assert kept(done.stdout) == [True, False, False, False]
    assert done.stdout.splitlines()[1].startswith("0 ")  # no frames in a sampled-out one
    (issue,) = sandbox.issues()
    assert issue["total"] == 4
    text = (sandbox.issues_dir / issue["file"]).read_text()
    assert "in work" in text  # the issue shows the first, full detail


def test_max_reports_per_minute_caps_the_details_not_the_count(sandbox: Sandbox) -> None:
    done = sandbox.python(REPEAT, "{'max_reports_per_minute': 2}", "6", ERRMESH_WINDOW="0")
    assert done.returncode == 0, done.stderr
    assert sum(kept(done.stdout)) in (2, 3)  # 3 only if a minute turned during the run
    assert kept(done.stdout)[:2] == [True, True]
    (issue,) = sandbox.issues()
    assert issue["total"] == 6


def test_the_settings_are_checked() -> None:
    for bad in ({"sample_rate": 1.5}, {"sample_rate": "half"}, {"max_reports_per_minute": -1}):
        with pytest.raises(ConfigError):
            resolve(environ={}, flags=bad)
    assert resolve(environ={"ERRMESH_SAMPLE_RATE": "0.25"}).sample_rate == 0.25


def report(sig: bytes) -> Report:
    frame = Frame(module="m", function="f", filename="m.py", lineno=1, in_app=True)
    return make_report(sig=sig, frames=(frame,), tags=(("k", "v"),))


def test_the_store_shares_the_per_minute_budget_and_counts_every_occurrence(
    tmp_path: Path,
) -> None:
    limits = DetailLimits(per_minute=2)
    with Store.open(tmp_path) as store:
        first_minute = [store.spool(report(b"S" * 16), now=600.0, detail=limits) for _ in range(4)]
    with Store.open(tmp_path) as store:  # another process on the host, the same minute
        later = store.spool(report(b"S" * 16), now=610.0, detail=limits)
        next_minute = store.spool(report(b"S" * 16), now=660.0, detail=limits)
        other = store.spool(report(b"T" * 16), now=610.0, detail=limits)
    assert [bool(r.frames) for r in first_minute] == [True, True, False, False]
    assert [r.count for r in (*first_minute, later, next_minute)] == [1, 2, 3, 4, 5, 6]
    assert later.facts == (SAMPLED_FACT,) and later.tags == () and later.message == "boom"
    assert next_minute.frames and other.frames


def test_a_sampled_out_first_occurrence_still_keeps_its_detail(tmp_path: Path) -> None:
    never = DetailLimits(sample_rate=0.0)
    with Store.open(tmp_path) as store:
        spooled = [store.spool(report(b"S" * 16), detail=never, draw=lambda: 0.0) for _ in range(3)]
    assert [bool(r.frames) for r in spooled] == [True, False, False]
    assert DetailLimits(sample_rate=0.5).keep(first=False, kept_this_minute=0, draw=0.49)
    assert not DetailLimits(sample_rate=0.5).keep(first=False, kept_this_minute=0, draw=0.5)
