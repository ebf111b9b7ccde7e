"""Source context (issue 14): the lines around the innermost in-app frames.

A host program's module on disk fails; the issue shows its lines numbered,
the failing one marked, scrubbed like everything else before the spool. The
bounds (5 lines a side, 10 frames, a line's length, a report's total) are
driven in-process through ``node.event``; the wire keeps the context as
optional keys that a decoder from before them skips.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from secrets_corpus import SECRETS
from test_handover import full_path, handed_over
from test_scrub_pass import bare

from conftest import ROOT, Sandbox
from github_sink.render import render_body, render_trace
from mesh import wire
from mesh.report import Frame, Report
from mesh.sigstate import OriginCount, SigState
from node.config import resolve
from node.context import EventContext
from node.cut import SOURCE_LINE_CHARS
from node.event import from_exception
from node.source import CONTEXT_CHARS, CONTEXT_FRAMES, CONTEXT_LINES

#: The commit before source context: its mesh/wire is "an older peer".
BEFORE_SOURCE_CONTEXT = "02c8714"

SECRET = "gh" + "p_" + "Zq7Y" * 9

HOSTAPP = f'''\
import json


def load(raw):
    api_key = "{SECRET}"
    data = json.loads(raw)
    return data


def main():
    total = 0
    for i in range(3):
        total += i
    load("not json")
    return total
'''


def run_hostapp(sandbox: Sandbox, **env: str) -> str:
    """``hostapp.main()`` fails in a real process; the issue file's text."""
    (sandbox.root / "hostapp.py").write_text(HOSTAPP)
    done = sandbox.python(
        "import node; node.install(app='hostapp')\nimport hostapp\nhostapp.main()\n", **env
    )
    assert done.returncode == 1, done.stderr
    (issue,) = sandbox.issues()
    return (sandbox.issues_dir / issue["file"]).read_text()


def test_the_issue_shows_the_lines_around_each_in_app_frame(sandbox: Sandbox) -> None:
    text = run_hostapp(sandbox)
    assert '  File "hostapp.py", line 14, in main\n' in text
    assert (
        "       9 |\n"
        "      10 | def main():\n"
        "      11 |     total = 0\n"
        "      12 |     for i in range(3):\n"
        "      13 |         total += i\n"
        '    > 14 |     load("not json")\n'
        "      15 |     return total\n"
    ) in text
    assert "    >  6 |     data = json.loads(raw)\n" in text
    # The standard library's frames keep their one line, no context.
    assert '  File "json/decoder.py", line 355, in JSONDecoder.raw_decode\n    raise' in text


def test_a_secret_on_a_source_line_never_reaches_the_spool_or_the_issue(
    sandbox: Sandbox,
) -> None:
    text = run_hostapp(sandbox)
    assert '       5 |     api_key = "[REDACTED]"\n' in text
    written = sandbox.all_bytes().replace((sandbox.root / "hostapp.py").read_bytes(), b"")
    assert SECRET.encode() not in written  # the store, its WAL, the issue files


def test_source_context_off_keeps_the_one_line_per_frame(sandbox: Sandbox) -> None:
    text = run_hostapp(sandbox, ERRMESH_SOURCE_CONTEXT="false")
    assert '  File "hostapp.py", line 14, in main\n    load("not json")\n' in text
    assert " | " not in text.split("## Stack trace")[1].split("## Hosts")[0]


# ---------------------------------------------------------------------------
# Bounds, in-process


def module_from(tmp_path: Path, name: str, source: str) -> ModuleType:
    """A module imported from a real file, so linecache reads its lines."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report_of(call: object, **ctx: object) -> Report:
    try:
        call()  # type: ignore[operator]
    except Exception as exc:
        return from_exception(exc, EventContext(app="t", **ctx), now=1.0)  # type: ignore[arg-type]
    raise AssertionError("did not raise")


def with_context(report: Report) -> list[Frame]:
    return [f for f in report.frames if f.context_line or f.pre_context or f.post_context]


def test_only_the_innermost_ten_in_app_frames_get_five_lines_a_side(tmp_path: Path) -> None:
    deep = module_from(
        tmp_path,
        "deep",
        """
        def down(n):
            if n == 0:
                raise RuntimeError("bottom")
            return down(n - 1)
        """,
    )
    report = report_of(lambda: deep.down(14))
    sourced = with_context(report)
    assert CONTEXT_FRAMES == 10 and len(sourced) == CONTEXT_FRAMES
    assert sourced == [f for f in report.frames if f.filename == "deep.py"][-CONTEXT_FRAMES:]
    bottom = sourced[-1]
    assert bottom.context_line == '        raise RuntimeError("bottom")'
    assert bottom.line == 'raise RuntimeError("bottom")'
    assert bottom.pre_context == ("", "def down(n):", "    if n == 0:")  # the file's start
    assert bottom.post_context == ("    return down(n - 1)",)  # ... and its end
    assert len(sourced[0].pre_context) <= CONTEXT_LINES


def test_long_lines_are_cut_and_a_reports_context_is_bounded(tmp_path: Path) -> None:
    filler = "\n".join(f"    x{i} = {'77 ' * 100!r}" for i in range(6))
    wide = module_from(
        tmp_path,
        "wide",
        f"def down(n):\n{filler}\n    if n == 0:\n        raise RuntimeError('bottom')\n"
        f"    down(n - 1)\n{filler}\n",
    )
    report = report_of(lambda: wide.down(12))
    sourced = with_context(report)
    lines = [line for f in sourced for line in (*f.pre_context, f.context_line, *f.post_context)]
    assert max(len(line) for line in lines) <= SOURCE_LINE_CHARS
    assert "…[cut" in lines[0]
    assert sum(map(len, lines)) <= CONTEXT_CHARS
    assert 0 < len(sourced) < CONTEXT_FRAMES  # the budget, not the frame count, stopped it
    assert sourced[-1] == report.frames[-1]  # the innermost frames come first


def test_library_frames_and_the_setting_off_carry_none(tmp_path: Path) -> None:
    import json

    report = report_of(lambda: json.loads("{"))
    assert report.frames[-1].filename.startswith("json")
    assert [f.filename for f in with_context(report)] == [__file__.rpartition("/")[2]] * 2
    off = report_of(lambda: json.loads("{"), source_context=False)
    assert with_context(off) == []
    assert [f.function for f in off.frames] == [f.function for f in report.frames]


# ---------------------------------------------------------------------------
# Both error paths scrub it alike


SINGLE_LINE = [(text, secret) for text, secret in SECRETS if '"""' not in text]


@pytest.mark.parametrize("case", range(len(SINGLE_LINE)))
def test_both_paths_scrub_source_lines_alike(sandbox: Sandbox, tmp_path: Path, case: int) -> None:
    """A secret of the corpus written in the source after the failing line."""
    text, secret = SINGLE_LINE[case]
    failing = module_from(
        tmp_path,
        f"leaky{case}",
        'def fail():\n    raise RuntimeError("boom")\n    NOTE = """\n' + text + '\n"""\n',
    )
    try:
        failing.fail()
    except RuntimeError as caught:
        exc = caught
    env = {**sandbox.env}
    config = resolve(environ=env)
    kw: dict[str, object] = {"fingerprint": None}
    full = full_path(exc, config, env, **kw)
    handed = handed_over(exc, config, env, **kw)
    assert handed == full
    assert with_context(full)[-1].post_context  # the lines after the raise are there
    assert secret not in repr(handed)


# ---------------------------------------------------------------------------
# The wire


def sourced_report() -> Report:
    frame = Frame(
        module="app",
        function="load",
        filename="app.py",
        lineno=6,
        in_app=True,
        line="data = json.loads(raw)",
        pre_context=("def load(raw):", '    api_key = "[REDACTED]"'),
        context_line="    data = json.loads(raw)",
        post_context=("    return data",),
    )
    return bare(exc_type="ValueError", message="bad", frames=(frame,))


def test_the_context_round_trips_and_a_frame_without_it_encodes_as_before() -> None:
    report = sourced_report()
    assert wire.decode_report(wire.encode_report(report)) == report
    plain = report.replace(
        frames=tuple(
            dataclasses.replace(f, pre_context=(), context_line="", post_context=())
            for f in report.frames
        )
    )
    (frame,) = wire._REPORT.write(plain)["f"]
    assert set(frame) == {"m", "fn", "f", "n", "a", "s"}  # no new key without context


def test_the_context_is_not_part_of_the_signature() -> None:
    from mesh.signature import report_signature

    report = sourced_report()
    plain = report.replace(frames=(dataclasses.replace(report.frames[0], pre_context=()),))
    assert report_signature(report) == report_signature(plain)


def test_a_decoder_from_before_source_context_reads_the_report(tmp_path: Path) -> None:
    """The wire codec of the commit before this feature, run in its own process."""
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{BEFORE_SOURCE_CONTEXT}^{{commit}}"], cwd=ROOT, check=False
    )
    if known.returncode != 0:
        pytest.skip(f"commit {BEFORE_SOURCE_CONTEXT} is not in this clone (shallow?)")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "archive", BEFORE_SOURCE_CONTEXT, "mesh"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    data = wire.encode_report(sourced_report())
    reader = (
        "import sys; from mesh import wire; r = wire.decode_report(sys.stdin.buffer.read()); "
        "f = r.frames[0]; print(f.function, f.lineno, f.line, hasattr(f, 'pre_context'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", reader],
        input=data,
        capture_output=True,
        cwd=old,
        env={"PYTHONPATH": str(old), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert done.stdout.decode().strip() == "load 6 data = json.loads(raw) False"


def test_bound_report_cuts_context_lines_to_the_wire() -> None:
    report = sourced_report()
    frame = dataclasses.replace(
        report.frames[0],
        pre_context=("p" * 900,) * 8,
        context_line="c" * 900,
        post_context=("q" * 900,) * 8,
    )
    bounded = wire.bound_report(report.replace(frames=(frame,)))
    (cut,) = bounded.frames
    assert len(cut.pre_context) == len(cut.post_context) == wire.MAX_CONTEXT_LINES
    assert max(len(x.encode()) for x in (*cut.pre_context, cut.context_line)) <= 300
    assert wire.decode_report(wire.encode_report(bounded)) == bounded


# ---------------------------------------------------------------------------
# The issue body's budget


def state_of(report: Report) -> SigState:
    return SigState(
        signature=report.signature,
        detail=report,
        counts={report.origin: OriginCount(count=1, first_seen=1.0, last_seen=1.0, host="h")},
    )


def test_a_tight_body_drops_the_outer_frames_context_before_cutting_the_trace() -> None:
    window = tuple(f"    step_{i} = compute({i})" for i in range(5))
    frames = tuple(
        Frame(
            module="app",
            function=f"f{i}",
            filename="app.py",
            lineno=100 * i + 6,
            in_app=True,
            line=f"f{i + 1}()",
            pre_context=window,
            context_line=f"    f{i + 1}()",
            post_context=window,
        )
        for i in range(10)
    )
    report = sourced_report().replace(frames=frames)
    full = render_trace(report)
    bare = render_trace(report, context_frames=0)
    roomy = render_body(state_of(report))
    assert full in roomy
    body = render_body(state_of(report), max_chars=len(roomy) - len(full) + len(bare) + 1400)
    trace = body.split("## Stack trace")[1]
    assert all(f"line {100 * i + 6}, in f{i}" in trace for i in range(10))  # every frame kept
    assert "    > 906 | f10()\n" in trace  # the innermost keeps its context
    assert ">   6 |" not in trace and "in f0\n    f1()\n" in trace  # the outermost: its line
    assert "earlier lines cut" not in trace
    assert len(full) > len(bare) + 3000


def test_a_skeleton_holds_code_locations_only_so_its_report_has_no_context(
    tmp_path: Path,
) -> None:
    """A process killed before its report was written: the taker's report has none."""
    from node import skeleton
    from node.event import to_report

    leaky = module_from(tmp_path, "leaky", f'def fail():\n    raise KeyError("{SECRET}")\n')
    try:
        leaky.fail()
    except KeyError as exc:
        payload = skeleton.encode(
            exc,
            now=1.0,
            app="t",
            caller_package="",
            in_app_include=(),
            in_app_exclude=(),
            fingerprint=None,
        )
    assert SECRET not in payload and "raise" not in payload
    report = to_report(skeleton.to_event(payload, facts={}))
    assert report.frames[-1].function == "fail" and report.frames[-1].in_app
    assert with_context(report) == []
