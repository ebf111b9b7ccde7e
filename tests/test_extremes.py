"""Reports stay true at the extremes: deep traces, huge messages, exception groups.

Each case runs a real host program (node.install, the file sink, the SQLite
spool) and reads the issue errmesh wrote, as a user would.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, Sandbox
from mesh.scrub import Scrubber
from node.context import EventContext
from node.cut import MESSAGE_CHARS, cut_text
from node.event import exception_event

INSTALL = "import node; node.install(app='hostapp')\n"

#: A host that recurses ``argv[1]`` frames deep, then runs bug ``argv[2]``.
DEEP = INSTALL + textwrap.dedent(
    """
    import sys
    sys.setrecursionlimit(100_000)
    def bug_a():
        raise ValueError("boom")
    def bug_b():
        raise ValueError("boom")
    def recurse(n, bug):
        if n == 0:
            bug()
        return recurse(n - 1, bug)
    recurse(int(sys.argv[1]), {"a": bug_a, "b": bug_b}[sys.argv[2]])
    """
)

_CUT = re.compile(r"…\[cut (\d+) frames\]")


def issue_text(sandbox: Sandbox, number: int = 0) -> str:
    issue = sandbox.issues()[number]
    return (sandbox.issues_dir / issue["file"]).read_text()


def trace_of(text: str) -> str:
    """The fenced stack trace of an issue body."""
    return text.split("## Stack trace\n```python\n", 1)[1].split("\n```", 1)[0]


def rendered_frames(trace: str) -> int:
    return sum(1 for line in trace.splitlines() if line.startswith('  File "'))


def test_two_bugs_under_deep_recursion_get_two_issues(sandbox: Sandbox) -> None:
    assert sandbox.python(DEEP, "1000", "a").returncode == 1
    assert sandbox.python(DEEP, "5000", "b").returncode == 1
    assert len(sandbox.issues()) == 2


def test_one_bug_at_two_recursion_depths_is_one_issue(sandbox: Sandbox) -> None:
    assert sandbox.python(DEEP, "1000", "a", ERRMESH_WINDOW="0").returncode == 1
    assert sandbox.python(DEEP, "5000", "a", ERRMESH_WINDOW="0").returncode == 1
    (issue,) = sandbox.issues()
    assert issue["total"] == 2


def test_a_deep_trace_keeps_the_raising_frame_and_says_exactly_what_it_cut(
    sandbox: Sandbox,
) -> None:
    depth = 5000
    assert sandbox.python(DEEP, str(depth), "b").returncode == 1
    trace = trace_of(issue_text(sandbox))
    total = 1 + (depth + 1) + 1  # <module>, recurse(depth..0), bug_b
    (cut,) = (int(n) for n in _CUT.findall(trace))
    assert cut == total - rendered_frames(trace)
    lines = trace.splitlines()
    assert lines[-2].endswith("line 8, in bug_b")  # the raising frame (no source under -c)
    assert "in <module>" in lines[1]  # the outermost frames are kept too


#: Counts the frames of the unhandled exception, then lets errmesh (chained after it) see it.
COUNTING_HOOK = """
import sys
def counting_hook(exc_type, exc, tb):
    n = 0
    while tb is not None:
        n, tb = n + 1, tb.tb_next
    print("frames", n)
    sys.__excepthook__(exc_type, exc, exc.__traceback__)
sys.excepthook = counting_hook
"""


def test_recursion_error_gives_a_sane_report(sandbox: Sandbox) -> None:
    done = sandbox.python(
        COUNTING_HOOK + INSTALL + "def down(n):\n    return down(n + 1)\ndown(0)\n"
    )
    assert done.returncode == 1
    total = int(done.stdout.split()[-1])
    assert total > 900  # the default recursion limit of 1000
    (issue,) = sandbox.issues()
    assert issue["title"] == "[errmesh] RecursionError: maximum recursion depth exceeded"
    trace = trace_of(issue_text(sandbox))
    (cut,) = (int(n) for n in _CUT.findall(trace))
    assert cut == total - rendered_frames(trace)
    assert rendered_frames(trace) <= 64
    assert trace.splitlines()[-2].endswith("in down")


def _deep_event(depth: int) -> tuple[int, dict[str, object]]:
    """The event of an exception raised ``depth`` frames deep, in this process."""

    def recurse(n: int) -> None:
        if n == 0:
            raise KeyError("deep")
        recurse(n - 1)

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 1000)
    try:
        recurse(depth)
    except KeyError as exc:
        walked = 0
        tb = exc.__traceback__
        while tb is not None:
            walked += 1
            tb = tb.tb_next
        return walked, dict(exception_event(exc, EventContext(), now=0.0))
    finally:
        sys.setrecursionlimit(old)
    raise AssertionError("not raised")


def test_the_walk_keeps_both_ends_and_counts_the_middle_exactly() -> None:
    total, event = _deep_event(20_000)
    frames = event["frames"]
    assert isinstance(frames, tuple)
    markers = [f for f in frames if _CUT.fullmatch(f[1])]
    assert len(markers) == 1
    assert int(_CUT.fullmatch(markers[0][1]).group(1)) == total - (len(frames) - 1)  # type: ignore[union-attr]
    assert len(frames) <= 64
    assert frames[-1][5] == 'raise KeyError("deep")'
    assert frames[0][1].endswith("_deep_event")


#: Times one small and one huge capture in the same (warm) process and prints
#: both; ``HUGE()`` is replaced by an expression for the exception to capture.
TIMED = """
import json, logging, sys, time
import node
node.install(app="hostapp")
logging.basicConfig(level=logging.CRITICAL)

def timed(exc):
    start = time.perf_counter()
    node.capture_exception(exc)
    return time.perf_counter() - start

def small():
    return ValueError("small message")

timed(small())  # warm: imports, the store, the sink
small_s = timed(small())
huge_s = timed(HUGE())
print(json.dumps({"small": small_s, "huge": huge_s}))
"""

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2  # a GitHub token's shape (40 chars after ghp_)


def timed_capture(sandbox: Sandbox, huge: str, *args: str) -> dict[str, float]:
    done = sandbox.python(TIMED.replace("HUGE()", huge), *args, ERRMESH_WINDOW="0")
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    times: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return times


def test_a_10_mb_message_costs_little_and_is_cut_with_a_marker(sandbox: Sandbox) -> None:
    # Tokens back to back: wherever the cut falls, it falls inside one.
    count = 10_000_000 // (len(TOKEN) + 1)
    huge = "RuntimeError(' '.join([sys.argv[1]] * int(sys.argv[2])))"
    times = timed_capture(sandbox, huge, TOKEN, str(count))
    assert times["huge"] - times["small"] < 1.0, times
    (issue,) = [i for i in sandbox.issues() if i["title"].startswith("[errmesh] RuntimeError")]
    text = (sandbox.issues_dir / issue["file"]).read_text()
    cut = re.search(r"…\[cut (\d+) of (\d+) chars\]", text)
    assert cut is not None and int(cut.group(2)) == count * (len(TOKEN) + 1) - 1
    written = sandbox.all_bytes()
    assert b"ghp_" not in written  # not even a token's head at the cut
    assert b"[REDACTED]" in written


def test_huge_log_records_and_arguments_cost_little_and_are_cut(sandbox: Sandbox) -> None:
    huge = (
        "(logging.getLogger('hostapp').critical(' '.join([sys.argv[1]] * 250_000)),"
        " sys.argv.extend(['pos'] + ['--api-key', 'k' * 1_000_000] * 50_000), OSError('disk'))[-1]"
    )
    times = timed_capture(sandbox, huge, TOKEN)
    assert times["huge"] - times["small"] < 1.0, times
    (issue,) = [i for i in sandbox.issues() if i["title"].startswith("[errmesh] OSError")]
    text = (sandbox.issues_dir / issue["file"]).read_text()
    cut = re.search(r"CRITICAL hostapp: .*…\[cut \d+ of (\d+) chars\]", text)
    assert cut is not None and int(cut.group(1)) > 250_000 * (len(TOKEN) + 1)  # and its prefix
    assert "…[cut 99940 arguments]" in text  # 63 kept, then the marker
    assert len(text) < 65_536
    assert b"ghp_" not in sandbox.all_bytes()


def test_a_secret_straddling_the_cut_never_shows_its_head() -> None:
    scrubber = Scrubber()
    room = MESSAGE_CHARS - MESSAGE_CHARS // 8 - 40  # where the cut falls
    secrets = ((TOKEN, "ghp_"), ("password=hunter2hunter2", "hunt"), ("sk-" + "a1" * 20, "sk-a"))
    for secret, tell in secrets:
        for start in range(room - len(secret) - 2, room + 2):
            text = "w" * (start - 1) + " " + secret + " tail" * 2000
            cut = cut_text(text, MESSAGE_CHARS)
            scrubbed = scrubber.text(cut)
            assert tell not in scrubbed, (secret, start)
            omitted, total = map(int, re.findall(r"cut (\d+) of (\d+) chars", cut)[0])
            assert total == len(text) and omitted == len(text) - cut.index("…[cut")
            assert len(scrubbed.encode()) <= MESSAGE_CHARS
            assert cut_text(cut, MESSAGE_CHARS) == cut


def test_short_texts_are_left_alone() -> None:
    text = "x" * MESSAGE_CHARS
    assert cut_text(text, MESSAGE_CHARS) is text


#: A trio program whose nursery has two failing tasks, bugs ``argv[1]`` and ``argv[2]``.
NURSERY = INSTALL + textwrap.dedent(
    """
    import sys, trio
    def parse(raw):
        return int(raw)
    def lookup(key):
        return {}[key]
    def explode():
        raise RuntimeError("engine stalled")
    def unpack():
        raise TypeError("cannot unpack")
    BUGS = {"parse": lambda: parse("x9"), "lookup": lambda: lookup("user"),
            "explode": explode, "unpack": unpack}
    async def task(name):  # no checkpoint: every task fails before any is cancelled
        BUGS[name]()
    async def main():
        async with trio.open_nursery() as nursery:
            for name in sys.argv[1:]:
                nursery.start_soon(task, name)
    trio.run(main)
    """
)

TASK_GROUP = NURSERY.replace("import sys, trio", "import sys, asyncio").replace(
    """    async with trio.open_nursery() as nursery:
        for name in sys.argv[1:]:
            nursery.start_soon(task, name)
trio.run(main)""",
    """    async with asyncio.TaskGroup() as group:
        for name in sys.argv[1:]:
            group.create_task(task(name))
asyncio.run(main())""",
)
assert "trio" not in TASK_GROUP


def test_trio_nurseries_with_different_bugs_get_different_issues(sandbox: Sandbox) -> None:
    for _ in range(3):  # trio runs ready tasks in a random order: the same issues all the same
        assert sandbox.python(NURSERY, "parse", "lookup", ERRMESH_WINDOW="0").returncode == 1
    assert sandbox.python(NURSERY, "explode", "unpack").returncode == 1
    issues = {i["title"].split(": ")[0].split()[-1]: i for i in sandbox.issues()}  # a leaf each
    assert sorted(issues) == ["KeyError", "RuntimeError", "TypeError", "ValueError"]
    assert issues["ValueError"]["total"] == issues["KeyError"]["total"] == 3
    assert issues["RuntimeError"]["total"] == issues["TypeError"]["total"] == 1
    assert not any("Trio nursery" in title for title in issues)
    (lookup,) = [i for i in sandbox.issues() if i["title"].startswith("[errmesh] KeyError")]
    trace = trace_of((sandbox.issues_dir / lookup["file"]).read_text())
    assert "KeyError: 'user'" in trace and "in lookup" in trace and "in parse" not in trace
    assert trace.index("in main") < trace.index("in task") < trace.index("in lookup")


def test_asyncio_task_groups_are_reported_by_their_leaves(sandbox: Sandbox) -> None:
    assert sandbox.python(TASK_GROUP, "parse", "lookup").returncode == 1
    assert sandbox.python(TASK_GROUP, "explode", "unpack").returncode == 1
    assert sandbox.python(TASK_GROUP, "explode").returncode == 1
    issues = sandbox.issues()
    assert len(issues) == 4
    assert all("TaskGroup" not in i["title"] for i in issues)


def _group_event() -> dict[str, object]:
    group_type: Any = getattr(builtins, "ExceptionGroup", None)
    if group_type is None:
        pytest.skip("ExceptionGroup is builtin from Python 3.11")

    def fail(i: int) -> None:
        raise ValueError(f"leaf {i}")

    def caught(i: int) -> BaseException:
        try:
            fail(i)
        except ValueError as exc:
            return exc
        raise AssertionError

    inner = group_type("inner", [caught(i) for i in range(3, 15)])
    group = group_type("outer", [caught(1), caught(2), inner])
    try:
        raise group
    except group_type as exc:
        return dict(exception_event(exc, EventContext(), now=0.0))


def test_a_big_nested_group_keeps_ten_leaves_and_counts_the_rest() -> None:
    from github_sink.render import render_trace
    from node.event import to_report

    report = to_report(_group_event())
    assert [leaf.message for leaf in report.leaves] == [f"leaf {i}" for i in range(1, 11)]
    assert report.leaves_cut == 4
    assert report.leaves[0].frames[-1].function.endswith("fail")
    trace = render_trace(report)
    assert "…[4 more exceptions]" in trace
    assert "--- exception 10 of 14 in the group ---" in trace


def test_both_error_paths_scrub_a_groups_leaves() -> None:
    from node.event import to_report
    from node.handover import scrub_event

    def leak() -> None:
        raise ValueError(f"token {TOKEN}")

    try:
        try:
            leak()
        except ValueError as exc:
            raise builtins.ExceptionGroup("tasks", [exc]) from None
    except Exception as group:
        event = exception_event(group, EventContext(), now=0.0)
    scrubber = Scrubber()
    for report in (to_report(scrub_event(event, scrubber)), scrubber.report(to_report(event))):
        assert report.leaves[0].message == "token [REDACTED]"
        assert report.leaves[0].frames[-1].function.endswith("leak")


#: Runs under Python 3.10, where groups come from the ``exceptiongroup``
#: backport that trio depends on: prints the leaves kept and the signature.
GROUP_ON_310 = textwrap.dedent(
    """
    import json, sys, trio
    assert sys.version_info < (3, 11) and "exceptiongroup" in sys.modules
    from mesh.signature import report_signature, signature_leaf
    from node.context import EventContext
    from node.event import from_exception
    def parse(raw):
        return int(raw)
    def lookup(key):
        return {}[key]
    async def task(bug):
        bug()
    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task, lambda: parse("x9"))
            nursery.start_soon(task, lambda: lookup("user"))
    try:
        trio.run(main)
    except BaseException as group:
        report = from_exception(group, EventContext(app="demo"), now=0.0)
    leaf = signature_leaf(report)
    print(json.dumps({
        "group": report.exc_type,
        "leaves": sorted(l.type for l in report.leaves),
        "signed_by": leaf.type if leaf else None,
        "signature": report_signature(report).hex(),
    }))
    """
)


def _python_310() -> str:
    """A working 3.10 interpreter (pyenv's shim exists even when it cannot run one)."""
    candidates = [*sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))]
    on_path = shutil.which("python3.10")
    if on_path:
        candidates.append(Path(on_path))
    for python in candidates:
        if subprocess.run([python, "-c", ""], capture_output=True, check=False).returncode == 0:
            return str(python)
    pytest.skip("no Python 3.10 interpreter on this machine")


@pytest.mark.slow
def test_on_python_310_the_backports_groups_are_signed_by_their_leaves(tmp_path: Path) -> None:
    """3.10 has no builtin ExceptionGroup: trio raises the backport's, which
    must be walked like the builtin (else every nursery is one issue there)."""
    python = _python_310()
    target = tmp_path / "site"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--target", str(target), "trio>=0.24"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if install.returncode != 0:
        pytest.skip(f"cannot install trio for Python 3.10: {install.stderr.strip()[-300:]}")
    runs = [
        subprocess.run(
            [python, "-c", GROUP_ON_310],
            env={**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{ROOT}"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for _ in range(3)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    results = [json.loads(run.stdout) for run in runs]
    first = results[0]
    assert first["group"] == "exceptiongroup.ExceptionGroup"
    assert first["leaves"] == ["KeyError", "ValueError"]
    assert first["signed_by"] in ("KeyError", "ValueError")
    assert all(r == first for r in results), "trio's task order does not change the signature"
