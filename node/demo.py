"""``errmesh demo``: a real local mesh, real failing processes, real issue files.

Starts a relay (a libp2p peer with the file sink, which elects itself
leader), then runs, concurrently and repeatedly, a few programs that fail in
distinct ways: a Python CLI that uses ``node.install`` (two different
exceptions, with variable ids in their messages and a token in its logs),
and plain commands wrapped by ``errmesh run`` (an exit code with an error
line, a signal). They run on three "machines" (three spool folders): on the
relay's own machine a failing process only nudges the relay; on the others
it starts libp2p, publishes its report and waits for the relay's ack. The
demo then prints what the leader produced: one issue per signature, with
every occurrence counted, and one issue in full.

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
from typing import Any

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


def _start_relay(
    directory: Path, env: dict[str, str], key: Path
) -> tuple[subprocess.Popen[str], str]:
    """Start the demo's relay; returns it and its full multiaddr."""
    relay = subprocess.Popen(
        [
            sys.executable, "-m", "node", "--cluster", "demo",
            "--state-dir", str(directory / "relay" / "state"),
            "--data-dir", str(directory / "relay" / "data"),
            "--issues-dir", str(directory / "issues"),
            "--window", "0",
            "relay", "--listen", "/ip4/127.0.0.1/tcp/0", "--key-file", str(key),
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert relay.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = relay.stdout.readline()
        if not line:
            break
        if line.startswith("listening on "):
            return relay, line.split()[-1]
    relay.kill()
    raise RuntimeError("the demo relay did not start")


def _relay_status(directory: Path) -> dict[str, object]:
    try:
        status: dict[str, object] = json.loads(
            (directory / "relay" / "state" / "demo" / "relay-status.json").read_text()
        )
        return status
    except (OSError, ValueError):
        return {}


def run_demo(directory: Path, *, rounds: int = 3, progress: bool = False) -> int:
    """A relay, and each scenario failing ``rounds`` times on 3 machines, 4 at a time.

    ``progress``: count the occurrences the issues show on stderr while waiting for them.
    """
    directory = directory.resolve()
    base, key = _prepare(directory)
    print(f"errmesh demo in {directory}")
    relay, address = _start_relay(directory, base, key)
    try:
        print(f"relay up: {address}")
        machines = _machines(directory, address)
        jobs = [
            (name, argv, machines[i % len(machines)])
            for i, (name, argv) in enumerate(
                (name, argv) for _ in range(rounds) for name, argv in SCENARIOS.items()
            )
        ]
        print(
            f"{len(jobs)} failing processes ({len(SCENARIOS)} kinds x {rounds}) on "
            f"{len(machines)} machines, 4 at a time"
        )
        started = time.monotonic()
        _run_jobs(jobs, base, key)
        elapsed = time.monotonic() - started
        entries = _wait_for_issues(directory, len(jobs), progress)
        status = _relay_status(directory)
    finally:
        relay.terminate()
        relay.wait(10)
    print(
        f"\n{len(jobs)} failures in {elapsed:.1f}s -> {len(entries)} distinct signatures "
        f"(leader {str(status.get('leader', '?'))[:16]}..., term {status.get('term', '?')}):"
    )
    _show_issues(directory, entries)
    ok = len(entries) == len(SCENARIOS) and all(e["total"] == rounds for _, e in entries)
    print(
        "demo OK: one issue per signature, every occurrence counted"
        if ok
        else "demo: unexpected result (see above)"
    )
    return 0 if ok else 1


def _prepare(directory: Path) -> tuple[dict[str, str], Path]:
    """A fresh demo folder and cluster key; the children's environment without ours.

    The host's own ``ERRMESH_*`` (and IPFS) settings are dropped so that the
    demo runs the same anywhere; the token in it is what the scrubber must hide.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    key = directory / "cluster.key"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ERRMESH_", "IPFS_"))}
    base.update(
        ERRMESH_SETTLE="0.5", DEMO_API_TOKEN="ghp_" + "Demo0Token1Never2Leaves3The4Box5abcd"
    )
    return base, key


def _machines(directory: Path, address: str) -> list[dict[str, str]]:
    """Three machines' settings (spool folders): the relay's own, and two that dial it."""
    return [
        # machine 0 is the relay's own: its CLIs only nudge the relay (no libp2p)
        {"ERRMESH_STATE_DIR": str(directory / "relay" / "state")},
        {"ERRMESH_STATE_DIR": str(directory / "machine-1" / "state"), "ERRMESH_PEERS": address},
        {"ERRMESH_STATE_DIR": str(directory / "machine-2" / "state"), "ERRMESH_PEERS": address},
    ]


def _run_jobs(
    jobs: list[tuple[str, list[str], dict[str, str]]], base: dict[str, str], key: Path
) -> None:
    """Run every failing process, 4 at a time, saying how each ended as it ends."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {}
        for name, argv, machine in jobs:
            env = {**base, **machine, "ERRMESH_CLUSTER": "demo", "ERRMESH_KEY_FILE": str(key)}
            where = "relay's machine" if "ERRMESH_PEERS" not in machine else "via libp2p"
            futures[pool.submit(_run_one, argv, env)] = f"{name} ({where})"
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            print(f"  [{i:>2}/{len(jobs)}] {futures[future]:<58} exited {future.result()}")


def _wait_for_issues(
    directory: Path, expected: int, progress: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The file sink's index entries by number, once they count ``expected`` occurrences.

    The leader files issues after the settle delay, so the demo polls the
    index for up to 20 s and then shows whatever is there.
    """
    from node.progress import Progress

    index_path = directory / "issues" / "index.json"
    deadline = time.monotonic() + 20
    entries: list[tuple[str, dict[str, Any]]] = []
    counter = Progress("occurrences in issues", expected, enabled=progress)
    while time.monotonic() < deadline:
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            entries = sorted(index["issues"].items(), key=lambda kv: kv[1]["number"])
        except (OSError, ValueError):
            entries = []
        counter.update(sum(int(str(e["total"])) for _, e in entries))
        if counter.done >= expected:
            break
        time.sleep(0.2)
    counter.finish()
    return entries


def _show_issues(directory: Path, entries: list[tuple[str, dict[str, Any]]]) -> None:
    """One line per issue, then the first issue's file in full."""
    for sig, entry in entries:
        print(f"  #{entry['number']} {sig[:12]} x{entry['total']!s:<3} {entry['title']}")
        print(f"       {directory / 'issues' / str(entry['file'])}")
    if entries:
        first = directory / "issues" / str(entries[0][1]["file"])
        print(f"\n----- {first} -----")
        print(first.read_text(encoding="utf-8"))
