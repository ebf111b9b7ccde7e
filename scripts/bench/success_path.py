"""Startup cost on the success path: what ``node.install()`` adds to a program.

DESIGN section 10 promises "no measurable cost on the success path": a CLI
that installs errmesh and then succeeds must start as fast as one that does
not. This measures the wall time (spawn to exit) of child interpreters,
interleaved in one run (round-robin, the order rotated every round) so that
drift (CPU frequency, page cache, other load) affects all of them equally:

- ``bare``:         ``python -c pass``
- ``errmesh``:      ``python -c "import node; node.install(app='x')"``
- ``sentry``:       ``python -c "import sentry_sdk; sentry_sdk.init()"`` (no
  DSN: nothing is sent), with the same ``sys.path`` as the others, i.e. next
  to errmesh's dependencies (sentry-sdk then imports httpcore, and through
  it trio, for its HTTP/2 transport);
- ``sentry-alone``: the same with only sentry-sdk and its own requirements
  (urllib3, certifi) importable: sentry-sdk in a venv of its own.

Goal: errmesh adds at most 5 ms (median) over bare Python.

How the children are run, so that they look like a normal install:

- A throwaway venv (``python -m venv --without-pip``) provides the child
  interpreter: no ``.pth`` files, in particular not the editable-install
  finder of the development venv, whose ``.pth`` imports ``pathlib`` and more
  at every start-up (a regular ``pip install`` has no such finder).
- ``PYTHONPATH=<repo root>:<site-packages of the development venv>`` makes
  errmesh and sentry-sdk importable without processing that venv's ``.pth``
  files (``sentry-alone`` gets a directory of symlinks to its three packages).
- ``PYTHONDONTWRITEBYTECODE`` (set in this sandbox) is removed for the
  children and ``PYTHONPYCACHEPREFIX`` points into the temp directory: the
  repo's packages are precompiled with ``compileall`` and two warm-up runs of
  each command compile whatever else it imports, so timed runs load ``.pyc``
  like an installed package does, and nothing is written outside the temp
  directory. The script checks that no ``.pyc`` is written while timing.

Also printed: the modules ``import node; node.install()`` adds to a bare
interpreter and their ``-X importtime``, which says where the time goes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from _common import REPO, emit, parser, percentile, table

GOAL_MS = 5.0
_SENTRY = "import sentry_sdk; sentry_sdk.init()"
#: name -> code run with ``python -c``.
COMMANDS: dict[str, str] = {
    "bare": "pass",
    "errmesh": "import node; node.install(app='x')",
    "sentry": _SENTRY,
    "sentry-alone": _SENTRY,
}
#: The sentry runs take ~0.3-0.5 s each: they run in every third round only
#: (still interleaved), which keeps the whole benchmark well under a minute.
EVERY: dict[str, int] = {"bare": 1, "errmesh": 1, "sentry": 3, "sentry-alone": 3}
#: sentry-sdk and its Requires-Dist, for the ``sentry-alone`` run.
SENTRY_ALONE = ("sentry_sdk", "urllib3", "certifi")
_NEW_MODULES = (
    "import sys; before = set(sys.modules); {code}; "
    "print(' '.join(sorted(set(sys.modules) - before)))"
)


def make_child_python(tmp: Path) -> Path:
    """A throwaway venv without pip; returns its interpreter."""
    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    python = venv / "bin" / "python"
    if not python.exists():  # pragma: no cover - Windows layout
        python = venv / "Scripts" / "python.exe"
    return python


def child_envs(tmp: Path) -> dict[str, dict[str, str]]:
    """Per command, the parent's environment made to look like a normal install."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    base["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    site_packages = Path(sysconfig.get_paths()["purelib"])  # the development venv's
    shared = base | {"PYTHONPATH": os.pathsep.join([str(REPO), str(site_packages)])}
    alone_dir = tmp / "sentry-alone"
    alone_dir.mkdir()
    for package in SENTRY_ALONE:
        (alone_dir / package).symlink_to(site_packages / package, target_is_directory=True)
    alone = base | {"PYTHONPATH": str(alone_dir)}
    return {name: alone if name == "sentry-alone" else shared for name in COMMANDS}


def count_pyc(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.pyc")) if root.exists() else 0


def run_once(python: Path, code: str, env: Mapping[str, str]) -> float:
    """Wall time of one child, from spawn to exit, in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(python), "-c", code],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({code!r}): {proc.stderr.decode(errors='replace')}")
    return elapsed


def _output(
    python: Path, args: list[str], env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], env=env, capture_output=True, text=True, check=True)


def new_modules(python: Path, code: str, env: Mapping[str, str]) -> list[str]:
    """The modules ``code`` imports beyond a bare interpreter's start-up."""
    return _output(python, ["-c", _NEW_MODULES.format(code=code)], env).stdout.split()


def _importtime_rows(stderr: str) -> list[tuple[int, int, str]]:
    """``(self us, cumulative us, indented name)`` of ``-X importtime`` output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|", 2)
        rows.append((int(self_us), int(cumulative), name[1:]))
    return rows


def importtime(python: Path, code: str, env: Mapping[str, str]) -> tuple[int, list[str]]:
    """Total ``-X importtime`` (us) of what ``code`` imports beyond start-up, and the rows."""
    startup = {
        name.strip()
        for _, _, name in _importtime_rows(
            _output(python, ["-X", "importtime", "-c", "pass"], env).stderr
        )
    }
    rows = _importtime_rows(_output(python, ["-X", "importtime", "-c", code], env).stderr)
    total = 0
    lines: list[str] = []
    for self_us, cumulative, name in rows:
        if name.strip() in startup:
            continue
        lines.append(f"{self_us:>6} us self {cumulative:>6} us cumulative  {name}")
        if not name.startswith(" "):  # a top-level import: its cumulative time counts
            total += cumulative
    return total, lines


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """What one run found; ``samples[name][r]`` is round r's ms, None if skipped."""

    samples: dict[str, list[float | None]]
    pyc_before: int
    pyc_after: int
    added: list[str]
    sentry_added: int
    sentry_alone_added: int
    import_us: int
    import_lines: list[str]
    version: str
    pythonpath: str


def measure(rounds: int) -> Measurement:
    """Everything the report needs; the temp directory is gone afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="errmesh-bench-"))
    try:
        python = make_child_python(tmp)
        envs = child_envs(tmp)
        shared = envs["errmesh"]
        _output(python, ["-m", "compileall", "-q", str(REPO / "mesh"), str(REPO / "node")], shared)
        for _ in range(2):  # compile whatever else each command imports
            for name, code in COMMANDS.items():
                run_once(python, code, envs[name])
        pyc_before = count_pyc(tmp / "pycache")
        # samples[name][r] is round r's time, None when the command skipped round r
        samples: dict[str, list[float | None]] = {name: [] for name in COMMANDS}
        names = list(COMMANDS)
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                if r % EVERY[name]:
                    samples[name].append(None)
                else:
                    samples[name].append(run_once(python, COMMANDS[name], envs[name]) * 1000.0)
        pyc_after = count_pyc(tmp / "pycache")
        import_us, import_lines = importtime(python, COMMANDS["errmesh"], shared)
        version = _output(
            python, ["-c", "import sys; print(sys.version.split()[0], sys.base_prefix)"], shared
        ).stdout.strip()
        return Measurement(
            samples=samples,
            pyc_before=pyc_before,
            pyc_after=pyc_after,
            added=new_modules(python, COMMANDS["errmesh"], shared),
            sentry_added=len(new_modules(python, _SENTRY, shared)),
            sentry_alone_added=len(new_modules(python, _SENTRY, envs["sentry-alone"])),
            import_us=import_us,
            import_lines=import_lines,
            version=version,
            pythonpath=shared["PYTHONPATH"],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    args = parser(__doc__).parse_args()
    rounds = 10 if args.quick else 60
    m = measure(rounds)
    rounds_of = m.samples
    samples = {name: [x for x in v if x is not None] for name, v in rounds_of.items()}
    pyc_before, pyc_after, added = m.pyc_before, m.pyc_after, m.added

    stats = {
        name: {
            "median": statistics.median(v),
            "p90": percentile(v, 90),
            "min": min(v),
        }
        for name, v in samples.items()
    }
    bare = stats["bare"]
    deltas = {
        name: {key: stats[name][key] - bare[key] for key in ("median", "p90", "min")}
        for name in COMMANDS
    }
    # Paired: each round's run minus the same round's bare run (robust to drift).
    paired = {
        name: statistics.median(
            x - b
            for x, b in zip(rounds_of[name], rounds_of["bare"], strict=True)
            if x is not None and b is not None
        )
        for name in COMMANDS
    }

    print("success path: wall time of a child interpreter, spawn to exit (ms)")
    print(f"child interpreter: throwaway venv (no .pth files) on Python {m.version}")
    print(f"  PYTHONPATH={m.pythonpath}  (sentry-alone: sentry_sdk, urllib3, certifi only)")
    print("  PYTHONDONTWRITEBYTECODE unset; PYTHONPYCACHEPREFIX=<tmp>/pycache; precompiled")
    stable = "stable, nothing compiled while timing" if pyc_after == pyc_before else "CHANGED"
    print(f"  .pyc files in that cache: {pyc_before} before timing, {pyc_after} after ({stable})")
    print(
        f"{rounds} rounds, order rotated each round; bare and errmesh run in every round, "
        f"the sentry runs in every {EVERY['sentry']}rd round\n"
    )
    rows = [
        [
            name,
            len(samples[name]),
            stats[name]["median"],
            stats[name]["p90"],
            stats[name]["min"],
            deltas[name]["median"],
            deltas[name]["p90"],
            paired[name],
        ]
        for name in COMMANDS
    ]
    print(
        table(
            ["run", "runs", "median", "p90", "min", "+median", "+p90", "+paired"],
            rows,
        )
    )
    print("(+x: minus bare; +paired: median over rounds of (run - same round's bare))")
    print(f"\nimport node; node.install() adds {len(added)} modules: {' '.join(added)}")
    print(f"  -X importtime of those: {m.import_us / 1000:.2f} ms in total")
    for line in m.import_lines:
        print(f"  {line}")
    print(f"sentry_sdk.init() adds {m.sentry_added} modules ({m.sentry_alone_added} when alone)")

    delta = deltas["errmesh"]["median"]
    met = delta <= GOAL_MS
    verdict = "met" if met else "NOT met"
    print(
        f"\ngoal: errmesh adds <= {GOAL_MS:.0f} ms over bare Python (median): "
        f"{delta:+.2f} ms (paired {paired['errmesh']:+.2f} ms) -> {verdict}"
    )
    emit(
        "success_path",
        goal=f"errmesh adds <= {GOAL_MS:.0f} ms (median) over bare python",
        met=met,
        quick=args.quick,
        results={
            "rounds": rounds,
            "runs": {name: len(v) for name, v in samples.items()},
            "ms": stats,
            "samples_ms": {name: [round(x, 3) for x in v] for name, v in samples.items()},
            "delta_ms": deltas,
            "paired_delta_median_ms": paired,
            "errmesh_added_modules": added,
            "errmesh_importtime_ms": m.import_us / 1000,
            "sentry_added_modules": m.sentry_added,
            "sentry_alone_added_modules": m.sentry_alone_added,
            "pyc_stable": pyc_after == pyc_before,
            "headline": f"errmesh {delta:+.2f} ms median over bare "
            f"(sentry {deltas['sentry']['median']:+.1f} ms, "
            f"sentry alone {deltas['sentry-alone']['median']:+.1f} ms)",
        },
    )


if __name__ == "__main__":
    main()
