"""Progress counts on stderr: redrawn in place on a terminal, a line a second in a log."""

from __future__ import annotations

import io

from conftest import Sandbox
from node.progress import Progress, wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_at_most_every_second_and_the_final_count() -> None:
    log, clock = io.StringIO(), Clock()
    counter = Progress("merging", 3000, enabled=True, unit="reports", stream=log, clock=clock)
    for _ in range(30):  # 30 batches of 100 over 3 s
        counter.advance(100)
        clock.now += 0.1
    counter.finish()
    lines = log.getvalue().splitlines()
    assert lines[0] == "merging: 100/3000 reports"
    assert lines[-1] == "merging: 3000/3000 reports"
    assert len(lines) == 4  # at 0 s, 1 s, 2 s, and the end


def test_a_terminal_line_is_redrawn_in_place_and_ended_once() -> None:
    term, clock = Terminal(), Clock()
    counter = Progress("occurrences", 9, enabled=True, stream=term, clock=clock)
    for done in (3, 6, 9):
        counter.update(done)
        clock.now += 0.5
    counter.finish()
    out = term.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert out.split("\r")[1:] == [f"occurrences: {n}/9\x1b[K" for n in (3, 6)] + [
        "occurrences: 9/9\x1b[K\n"
    ]


def test_off_unless_asked_or_on_a_terminal() -> None:
    assert wanted(None, Terminal()) and not wanted(None, io.StringIO())
    assert wanted(True, io.StringIO()) and not wanted(False, Terminal())
    quiet = io.StringIO()
    counter = Progress("x", 1, enabled=False, stream=quiet)
    counter.advance()
    counter.finish()
    assert quiet.getvalue() == ""


def test_drain_counts_a_large_spool_on_stderr_and_merges_all_of_it(sandbox: Sandbox) -> None:
    """1,200 spooled reports (more than one batch) of two signatures, drained in one go."""
    spool = """
        import sys, time
        from pathlib import Path
        from mesh.report import Report
        from mesh.store import Store
        with Store.open(Path(sys.argv[1])) as store:
            for i in range(1200):
                store.spool(Report(
                    origin=b"", seq=0, count=0, signature=bytes([i % 2]) * 16,
                    kind="exception", exc_type="ValueError", message=f"boom {i % 2}",
                    host="web-1", timestamp=time.time(),
                ), now=time.time())
    """
    done = sandbox.python(spool, str(sandbox.state_dir))
    assert done.returncode == 0, done.stderr
    drained = sandbox.errmesh("drain", "--progress")
    assert drained.returncode == 0, drained.stderr
    assert drained.stderr.splitlines()[-1] == "merging the spool: 1200/1200 reports"
    assert "opened 2," in drained.stdout  # both filed at once, without waiting to settle
    assert sandbox.errmesh("drain").stderr == ""  # not a terminal, not asked: quiet
    assert sorted(e["total"] for e in sandbox.issues()) == [600, 600]
