"""Run the errmesh benchmarks and print a summary against the goals.

Each benchmark runs in its own interpreter (so that one's imports and caches
do not colour another's figures), prints its own table, and ends with a JSON
line that this script collects. Two groups; the default runs the first.

The error path (issue 2), about a minute:

==================  ==============================================  =========
benchmark           measures                                        goal
==================  ==============================================  =========
success_path        start-up cost of ``import node; node.install``  <= 5 ms
capture_spool       exception -> report committed to the spool      p50 <= 0.5 ms
report_bytes        first report / repeat occurrence, with MAC      <= 4 KB / 128 B
aggregate_merge     ``Aggregate.add_occurrence`` on one core        >= 100k/s
raise_to_commit     dying CLI: ``raise`` -> first durable row       p50 <= 10 ms
capture_extremes    capture of a 10 MB message, a 100k-frame trace  <= +50 ms
==================  ==============================================  =========

The mesh (issue 3, ``--mesh``), real relays and libp2p peers on loopback,
about five minutes:

=====================  ===========================================  ===============
benchmark              measures                                     goal
=====================  ===========================================  ===============
cli_to_acked           failing CLI, spawn -> report handed -> exit  local p50 <= 50 ms;
                                                                    mesh p50 <= 0.8 s,
                                                                    p99 <= 1.5 s
propagation            report -> all other peers, 10 relays         p99 <= 100 ms
occurrence_throughput  100k occurrences, 20 signatures, 5 relays    all counted everywhere
failover               leader SIGKILL -> new leader acting          <= 3 s
relay_rss              relay RSS tracking 10k signatures            <= 150 MB
=====================  ===========================================  ===============

Usage: ``.venv/bin/python scripts/bench/run_all.py [--quick] [--mesh | --all]
[--only NAME ...] [--json FILE] [--record DIR]``. Exits 1 if a benchmark failed to run; a
goal that is not met is reported, not treated as a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import parser, table

BENCHMARKS = (
    "success_path",
    "report_bytes",
    "aggregate_merge",
    "capture_spool",
    "raise_to_commit",
    "capture_extremes",
)
MESH_BENCHMARKS = (
    "cli_to_acked",
    "propagation",
    "occurrence_throughput",
    "failover",
    "relay_rss",
)
HERE = Path(__file__).resolve().parent


def run(name: str, quick: bool) -> tuple[dict[str, Any] | None, float]:
    """Run one benchmark, echoing its output; returns its JSON record and wall time."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
    print(f"\n=== {name} " + "=" * max(0, 66 - len(name)), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    lines = proc.stdout.rstrip("\n").splitlines()
    record: dict[str, Any] | None = None
    if lines:
        try:
            record = json.loads(lines[-1])
            lines = lines[:-1]
        except json.JSONDecodeError:
            record = None
    print("\n".join(lines))
    if proc.returncode != 0 or record is None:
        print(proc.stderr, file=sys.stderr)
        print(f"{name}: FAILED (exit {proc.returncode})", file=sys.stderr)
        return None, elapsed
    return record, elapsed


def record_each(directory: Path, records: dict[str, dict[str, Any] | None]) -> None:
    """One file per benchmark, so that a rerun of one replaces only its own record."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, record in records.items():
        if record is not None:
            text = json.dumps(record, indent=1, sort_keys=True) + "\n"
            (directory / f"{name}.json").write_text(text)


def main() -> None:
    p = parser(__doc__)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--mesh", action="store_true", help="the mesh benchmarks (issue 3)")
    group.add_argument("--all", action="store_true", help="both groups")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS + MESH_BENCHMARKS, help="run only these")
    p.add_argument("--json", type=Path, help="also write every record to this file")
    p.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="also write each record to DIR/NAME.json (docs/bench: what plot.py draws)",
    )
    args = p.parse_args()
    if args.only:
        names = tuple(args.only)
    elif args.mesh:
        names = MESH_BENCHMARKS
    elif args.all:
        names = BENCHMARKS + MESH_BENCHMARKS
    else:
        names = BENCHMARKS
    records: dict[str, dict[str, Any] | None] = {}
    rows = []
    for name in names:
        record, elapsed = run(name, args.quick)
        records[name] = record
        if record is None:
            rows.append([name, "-", "FAILED TO RUN", f"{elapsed:.1f}"])
        else:
            verdict = "met" if record["met"] else "NOT met"
            rows.append(
                [
                    name,
                    record["goal"],
                    f"{verdict}: {record['results']['headline']}",
                    f"{elapsed:.1f}",
                ]
            )
    print("\n=== summary " + "=" * 59)
    print(table(["benchmark", "goal", "result", "s"], rows, align="lllr"))
    loads = [
        f"{n}: {(r or {}).get('environment', {}).get('loadavg_1_5_15', '-')}"
        for n, r in records.items()
    ]
    print(
        f"load average (1/5/15 min) at the end of each, on {os.cpu_count()} CPUs: "
        + "; ".join(loads)
    )
    if args.json:
        args.json.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    if args.record:
        record_each(args.record, records)
    print(json.dumps({name: (r or {}).get("met") for name, r in records.items()}, sort_keys=True))
    if any(r is None for r in records.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
