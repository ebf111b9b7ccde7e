"""``errmesh demo``: real failing processes, real spool, real issue files.

Runs, concurrently and repeatedly, a few programs that fail in distinct ways:
a Python CLI that uses ``node.install`` (two different exceptions, with
variable ids in their messages and a token in its logs), and plain commands
wrapped by ``errmesh run`` (an exit code with an error line, a signal). Each
is its own OS process sharing one spool, exactly as on a real machine. The
demo then prints what the file sink produced: one issue per signature, with
the occurrences counted, and one issue in full.

The settings go to the child processes through the environment
(``ERRMESH_*``), which is how a deployment configures errmesh too.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["SCENARIOS", "run_demo"]

#: name -> argv (run under ``errmesh run`` unless it starts with "python-app").
SCENARIOS: dict[str, list[str]] = {
    "parse error (Python, node.install)": ["python-app", "parse"],
    "network error (Python, chained causes)": ["python-app", "network"],
    "missing config (exit 2)": [
        sys.executable,
        "-c",
        "import sys, random; n = random.randint(1, 999); "
        "print(f'loading /etc/myapp/conf-{n}.toml', file=sys.stderr); "
        "print(f'error: config file /etc/myapp/conf-{n}.toml not found', file=sys.stderr); "
        "sys.exit(2)",
    ],
    "crash by signal (SIGTERM)": [
        sys.executable,
        "-c",
        "import os, signal, sys; print('fatal: worker wedged, terminating', file=sys.stderr); "
        "sys.stderr.flush(); os.kill(os.getpid(), signal.SIGTERM)",
    ],
}


def _command(argv: list[str]) -> list[str]:
    if argv[0] == "python-app":
        return [sys.executable, "-m", "node.demo_app", *argv[1:]]
    return [sys.executable, "-m", "node", "run", "--", *argv]


def _run_one(argv: list[str], env: dict[str, str]) -> int:
    done = subprocess.run(_command(argv), env=env, capture_output=True, timeout=60, check=False)
    return done.returncode


def run_demo(directory: Path, *, rounds: int = 3, out: object = None) -> int:
    """Run the scenarios ``rounds`` times each, 4 at a time; print a summary."""
    write = print
    directory = directory.resolve()
    shutil.rmtree(directory, ignore_errors=True)
    env = dict(os.environ)
    env.update(
        ERRMESH_CLUSTER="demo",
        ERRMESH_STATE_DIR=str(directory / "state"),
        ERRMESH_DATA_DIR=str(directory / "data"),
        ERRMESH_WINDOW="0",
        ERRMESH_SINK="file",
        DEMO_API_TOKEN="ghp_" + "Demo0Token1Never2Leaves3The4Box5" + "abcd",
    )
    env.pop("ERRMESH_REPO", None)
    env.pop("IPFS_REPO", None)
    jobs = [(name, argv) for _ in range(rounds) for name, argv in SCENARIOS.items()]
    write(
        f"errmesh demo: {len(jobs)} failing processes ({len(SCENARIOS)} kinds x {rounds}), "
        f"4 at a time, sharing one spool in {directory}"
    )
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {pool.submit(_run_one, argv, env): name for name, argv in jobs}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            code = future.result()
            write(f"  [{i:>2}/{len(jobs)}] {futures[future]:<42} exited {code}")
    elapsed = time.monotonic() - started
    issues_dir = directory / "data" / "demo" / "issues"
    try:
        index = json.loads((issues_dir / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        write(f"no issues were produced ({exc})")
        return 1
    entries = sorted(index["issues"].items(), key=lambda kv: kv[1]["number"])
    write(f"\n{len(jobs)} failures in {elapsed:.1f}s -> {len(entries)} distinct signatures:")
    for sig, entry in entries:
        write(f"  #{entry['number']} {sig[:12]} x{entry['total']:<3} {entry['title']}")
        write(f"       {issues_dir / entry['file']}")
    if entries:
        first = issues_dir / entries[0][1]["file"]
        write(f"\n----- {first} -----")
        write(first.read_text(encoding="utf-8"))
    ok = len(entries) == len(SCENARIOS) and all(e["total"] == rounds for _, e in entries)
    write(
        "demo OK: one issue per signature, every occurrence counted"
        if ok
        else "demo: unexpected result (see above)"
    )
    return 0 if ok else 1
