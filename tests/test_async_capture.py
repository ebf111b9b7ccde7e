"""asyncio and trio: the errors a loop only logs, and groups reported leaf by leaf.

Each test runs a host program in its own process and reads the file sink's
issues (as tests/test_capture.py does).
"""

from __future__ import annotations

from test_extremes import TASK_GROUP

from conftest import Sandbox


def titles(sandbox: Sandbox) -> list[str]:
    return sorted(i["title"].removeprefix("[errmesh] ") for i in sandbox.issues())


def text_of(sandbox: Sandbox, title: str) -> str:
    (issue,) = [i for i in sandbox.issues() if i["title"] == f"[errmesh] {title}"]
    return (sandbox.issues_dir / issue["file"]).read_text()


#: A task nobody awaits and a failing callback: asyncio only logs them.
FORGOTTEN = """
import asyncio, gc, sys, node
node.install()
async def sync_inventory():
    raise ConnectionError("inventory service down")
def on_tick():
    raise ZeroDivisionError("no ticks yet")
async def main():
    if sys.argv[1] == "hook":
        node.install_asyncio()
    asyncio.create_task(sync_inventory())  # fire and forget
    asyncio.get_running_loop().call_soon(on_tick)
    await asyncio.sleep(0.05)
    gc.collect()
asyncio.run(main())
print("main done")
"""


def test_errors_asyncio_only_logs_are_reported_with_install_asyncio(sandbox: Sandbox) -> None:
    done = sandbox.python(FORGOTTEN, "hook")
    assert done.returncode == 0 and "main done" in done.stdout, done.stderr
    assert titles(sandbox) == [
        "ConnectionError: inventory service down",
        "ZeroDivisionError: no ticks yet",
    ]
    assert "Task exception was never retrieved" in done.stderr  # asyncio's handler still ran
    assert "in sync_inventory" in text_of(sandbox, "ConnectionError: inventory service down")


def test_without_install_asyncio_they_are_only_logged(sandbox: Sandbox) -> None:
    done = sandbox.python(FORGOTTEN, "none")
    assert done.returncode == 0 and "Task exception was never retrieved" in done.stderr
    assert sandbox.issues() == []


def test_a_task_groups_leaves_are_reported_each_on_its_own(sandbox: Sandbox) -> None:
    done = sandbox.python(TASK_GROUP, "parse", "lookup")  # two tasks, two bugs
    assert done.returncode == 1
    assert "ExceptionGroup: unhandled errors in a TaskGroup" in done.stderr  # as Python prints it
    assert titles(sandbox) == [
        "KeyError: <str>",
        "ValueError: invalid literal for int() with base <n>: <str>",
    ]
    text = text_of(sandbox, "KeyError: <str>")
    # One trace from the program's entry, through the group, to the leaf.
    trace = text[text.index("Traceback") :]
    assert trace.index("in main") < trace.index("in task") < trace.index("in lookup")
    assert "in parse" not in text  # the other leaf is the other issue


#: A trio nursery with two failing tasks; ``sys.argv[1]`` says how the program ends.
NURSERY = """
import sys, trio, node
node.install()
def explode():
    raise RuntimeError("engine stalled")
def unpack():
    raise TypeError("cannot unpack")
async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, explode)
        nursery.start_soon(run, unpack)
async def run(bug):
    bug()
if sys.argv[1] == "unhandled":
    trio.run(main)
else:
    try:
        with node.report_errors():
            trio.run(main)
    except BaseExceptionGroup:
        print("handled")
"""


def test_a_trio_nursery_that_escapes_reports_each_failed_task(sandbox: Sandbox) -> None:
    done = sandbox.python(NURSERY, "unhandled")
    assert done.returncode == 1
    assert titles(sandbox) == ["RuntimeError: engine stalled", "TypeError: cannot unpack"]
    assert "in main" in text_of(sandbox, "TypeError: cannot unpack")


def test_report_errors_around_trio_run_reports_a_handled_nursery(sandbox: Sandbox) -> None:
    done = sandbox.python(NURSERY, "handled")
    assert done.returncode == 0 and "handled" in done.stdout, done.stderr
    assert titles(sandbox) == ["RuntimeError: engine stalled", "TypeError: cannot unpack"]


def test_nested_groups_are_flattened_and_a_leaf_already_reported_is_not_again(
    sandbox: Sandbox,
) -> None:
    done = sandbox.python(
        """
        import node
        node.install()
        def fail(exc):
            try:
                raise exc
            except Exception as caught:
                return caught
        seen = fail(KeyError("reported by the task itself"))
        node.capture_exception(seen)
        inner = ExceptionGroup("inner", [fail(OSError("disk")), seen])
        raise ExceptionGroup("outer", [fail(ValueError("bad")), inner])
        """,
        ERRMESH_WINDOW="0",
    )
    assert done.returncode == 1
    assert titles(sandbox) == ["KeyError: <str>", "OSError: disk", "ValueError: bad"]
    assert all(i["total"] == 1 for i in sandbox.issues())


def test_install_imports_neither_asyncio_nor_trio(sandbox: Sandbox) -> None:
    done = sandbox.python(
        """
        import sys, node
        node.install()
        print(sorted(m for m in ("asyncio", "trio") if m in sys.modules))
        node.install_asyncio  # resolved on first use
        print("asyncio" in sys.modules)
        """
    )
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stderr
