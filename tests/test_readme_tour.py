"""The README's 60-second tour is a doc test: its commands run as written and print what it shows.

The tour (the section ``## A 60-second tour`` of README.md) is made of
``console`` blocks. A line starting with ``$ `` is a command, typed as a
newcomer types it; the lines under it, up to the next command, are what it
prints (stdout and stderr together, as a terminal shows them). The commands
run one after another in one bash session, in a copy of this checkout whose
``.venv`` holds this checkout's packages, with a home of its own. The
comparison of a command's output with the README's lines:

- ``…`` inside a line stands for any text (ids, times, paths, counts);
- a line that is only ``…`` stands for any number of lines the README leaves out;
- runs of spaces count as one, and blank lines are ignored;
- lines match in any order, because the product prints some in an order that
  varies from run to run (the demo's processes end in any order; ``errmesh
  status`` sorts by a last-seen time that is the same second for several rows).
  Every line shown must be printed, and, unless a ``…`` line says some are left
  out, every line printed must be shown.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## A 60-second tour"
ELLIPSIS = "…"
#: Printed by the session between two commands' outputs (no command prints it).
MARK = "@@errmesh-tour-step@@"


@dataclass(frozen=True)
class Step:
    """One command of the tour and the lines the README shows under it."""

    command: str
    shown: tuple[str, ...]


def tour_steps(readme: str) -> list[Step]:
    """The commands and shown outputs of the tour's ``console`` blocks, in order."""
    start = readme.index(HEADING)
    end = readme.find("\n## ", start + len(HEADING))
    section = readme[start : end if end != -1 else len(readme)]
    steps: list[Step] = []
    for block in re.findall(r"^```console\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL):
        command: str | None = None
        shown: list[str] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command is not None:
                    steps.append(Step(command, tuple(shown)))
                command, shown = line[2:], []
            elif command is not None:
                shown.append(line)
        if command is not None:
            steps.append(Step(command, tuple(shown)))
    return steps


def _squeeze(line: str) -> str:
    return " ".join(line.split())


def _pattern(shown: str) -> re.Pattern[str]:
    parts = _squeeze(shown).split(ELLIPSIS)
    return re.compile(".*".join(re.escape(part) for part in parts), flags=re.DOTALL)


def differences(shown: Sequence[str], printed: Sequence[str]) -> list[str]:
    """What keeps ``printed`` from being what the README ``shown``; empty when it is.

    Lines pair up one to one in any order (a bipartite matching, so that a
    masked line cannot take the place an exact line needs).
    """
    wanted = [_squeeze(s) for s in shown if _squeeze(s)]
    leaves_out = ELLIPSIS in wanted
    wanted = [w for w in wanted if w != ELLIPSIS]
    got = [_squeeze(p) for p in printed if _squeeze(p)]
    fits = [[j for j, line in enumerate(got) if _pattern(w).fullmatch(line)] for w in wanted]
    owner: dict[int, int] = {}  # printed line -> shown line

    def place(i: int, seen: set[int]) -> bool:
        for j in fits[i]:
            if j not in seen:
                seen.add(j)
                if j not in owner or place(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    problems = [
        f"shown but not printed: {wanted[i]!r}" for i in range(len(wanted)) if not place(i, set())
    ]
    if not leaves_out:
        problems += [
            f"printed but not shown: {got[j]!r}" for j in range(len(got)) if j not in owner
        ]
    return problems


def _copy_checkout(destination: Path) -> Path:
    """This checkout's files without its venv, caches and demo output."""
    skip = shutil.ignore_patterns(
        ".git",
        ".venv",
        "__pycache__",
        "*.egg-info",
        ".errmesh-demo",
        ".*_cache",
        ".hypothesis",
        "build",
    )
    shutil.copytree(ROOT, destination, ignore=skip, symlinks=True)
    return destination


def _venv_for(checkout: Path) -> None:
    """A real ``.venv`` in the copy, seeing this checkout's installed packages.

    Installing errmesh's dependencies afresh would take minutes and the
    network; a ``.pth`` line adds this venv's site-packages (and so its
    editable errmesh) to a new venv's, and an ``errmesh`` script starts the
    same entry point ``pip install`` would. The stamp tells ``scripts/demo``
    the install is done.
    """
    venv = checkout / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    ours = sysconfig.get_paths()["purelib"]
    theirs = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(theirs, "_errmesh_checkout.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    script = venv / "bin" / "errmesh"
    script.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom node.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    (venv / ".errmesh-installed").touch()


def run_tour(checkout: Path, home: Path, steps: Sequence[Step]) -> list[list[str]]:
    """Each step's output, from one bash session in ``checkout`` (stderr merged)."""
    script = ["exec 2>&1", f"cd {checkout}", "__tour_status=0"]
    for step in steps:  # ``$?`` is the previous command's, as at a prompt
        script += [
            f"printf '\\n{MARK}\\n'",
            "(exit $__tour_status)",
            step.command,
            "__tour_status=$?",
        ]
    keep = ("PATH", "TMPDIR", "USER", "LOGNAME")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if ".venv" not in p
    )
    env.update(HOME=str(home), LC_ALL="C.UTF-8", COLUMNS="80", TERM="dumb")
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], env=env, capture_output=True, text=True, timeout=120
    )
    outputs = done.stdout.split(f"{MARK}\n")[1:]
    assert len(outputs) == len(steps), done.stdout[-3000:]
    return [output.splitlines() for output in outputs]


def wait_until_the_demo_relay_is_gone(demo: Path, timeout: float = 20.0) -> None:
    """Until ``errmesh status`` no longer counts the stopped demo relay as running.

    The demo stops its relay before it returns; the test still polls, in
    case the relay's process outlives the demo by a moment.
    """
    from node.cli_table import local_relay_status

    status = demo / "relay" / "state" / "demo" / "relay-status.json"
    deadline = time.monotonic() + timeout
    while local_relay_status(status) is not None:
        assert time.monotonic() < deadline, f"{status} still fresh after {timeout} s"
        time.sleep(0.1)


def test_a_line_the_product_does_not_print_fails_the_comparison() -> None:
    printed = ["cluster demo (solo), sink: file", "spool: 0 pending, 0 dropped"]
    assert (
        differences(["spool: … pending, … dropped", "cluster demo (solo), sink: file"], printed)
        == []
    )
    assert differences(["cluster demo (solo), sink: github", "…"], printed) == [
        "shown but not printed: 'cluster demo (solo), sink: github'"
    ]


def test_a_printed_line_the_readme_leaves_out_fails_unless_an_ellipsis_line_says_so() -> None:
    printed = ["store x.sqlite3", "spool: 0 pending, 0 dropped"]
    assert differences(["store x.sqlite3"], printed) == [
        "printed but not shown: 'spool: 0 pending, 0 dropped'"
    ]
    assert differences(["store x.sqlite3", "…"], printed) == []


def test_a_masked_line_does_not_take_the_place_an_exact_line_needs() -> None:
    printed = ["#5 open 1x ls exited 2", "#1 open 3x python exited 2"]
    assert differences(["#… open …x … exited 2", "#5 open 1x ls exited 2"], printed) == []


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short path.

    The relay's nudge socket lives in its state directory, and a Unix
    socket's path has at most 107 bytes: under pytest's deep ``tmp_path`` the
    demo's relay could not bind it. And ``errmesh status`` cuts an issue's
    URL to the terminal's width, as it would a long checkout path.
    """
    short = "/tmp" if os.path.isdir("/tmp") else None
    with tempfile.TemporaryDirectory(prefix="tour-", dir=short) as name:
        yield Path(name)


@pytest.mark.slow
def test_the_tour_prints_what_the_readme_shows(short_tmp: Path) -> None:
    tmp_path = short_tmp
    steps = tour_steps((ROOT / "README.md").read_text(encoding="utf-8"))
    assert steps[0].command == "./scripts/demo", (
        "the tour starts where the README's first command does"
    )
    checkout = _copy_checkout(tmp_path / "errmesh")
    _venv_for(checkout)
    (tmp_path / "home").mkdir()
    outputs = run_tour(checkout, tmp_path / "home", steps[:1])
    wait_until_the_demo_relay_is_gone(checkout / ".errmesh-demo")
    outputs += run_tour(checkout, tmp_path / "home", steps[1:])
    for step, printed in zip(steps, outputs, strict=True):
        problems = differences(step.shown, printed)
        assert not problems, f"$ {step.command}\n" + "\n".join([*problems, "printed:", *printed])
