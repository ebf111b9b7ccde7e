"""``python -m scripts.cluster up|fault|heal|status|down|run|report|soak``.

By hand::

    python -m scripts.cluster up --hosts 5
    python -m scripts.cluster cli host=1 kind=ValueError count=3
    python -m scripts.cluster fault partition groups=1,2/3,4,5
    python -m scripts.cluster fault net loss=0.1 latency=0.1
    python -m scripts.cluster fault kill who=leader
    python -m scripts.cluster heal            # everything: links, processes, disks, GitHub
    python -m scripts.cluster status
    python -m scripts.cluster down            # --stale: leftovers of dead runs

Scenarios (each brings its own cluster up and down)::

    python -m scripts.cluster run ci-partition --seed 3
    python -m scripts.cluster report          # every scenario once, RELIABILITY.md rewritten
    python -m scripts.cluster soak --minutes 60
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.cluster import control, report
from scripts.cluster.netns import destroy_namespaces, netns_unavailable
from scripts.cluster.scenarios import SCENARIOS, Result, run, soak_schedule


def _value(text: str) -> Any:
    if "/" in text or ("," in text and all(p.strip().isdigit() for p in text.split(","))):
        return [[int(h) for h in group.split(",") if h] for group in text.split("/")]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _args(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = _value(value)
    return out


def _print(answer: dict[str, Any]) -> int:
    print(json.dumps(answer, indent=1, default=str))
    return 0 if answer.get("ok", True) else 1


def _run_many(names: list[str], seeds: list[int], keep: Path | None) -> list[Result]:
    results = []
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    for name in names:
        for seed in seeds:
            root = Path(tempfile.mkdtemp(prefix=f"cluster-{name}-", dir=keep))
            result = run(name, seed, root)
            report.append_results([result.summary()])  # kept even if a later run fails
            print(result.explain(), flush=True)
            print(f"  history: {root / 'history.json'}", flush=True)
            results.append(result)
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster and leave it running")
    up.add_argument("--hosts", type=int, default=5)
    up.add_argument("--seed", type=int, default=0)
    up.add_argument("--root", type=Path)
    serve = sub.add_parser("serve", help=argparse.SUPPRESS)
    serve.add_argument("--hosts", type=int, default=5)
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--root", type=Path, required=True)
    fault = sub.add_parser("fault", help="one harness action: ACTION key=value ...")
    fault.add_argument("action", choices=sorted(
        ["partition", "heal", "net", "link_down", "link_up", "kill", "stop", "cont", "restart",
         "disk_full", "disk_free", "clock", "github"]))  # fmt: skip
    fault.add_argument("pairs", nargs="*")
    cli = sub.add_parser("cli", help="failing CLIs: host=N kind=ValueError count=N mode=local")
    cli.add_argument("pairs", nargs="*")
    sub.add_parser("heal", help="undo every fault")
    sub.add_parser("status")
    down = sub.add_parser("down")
    down.add_argument("--stale", action="store_true", help="remove leftovers of dead runs")
    one = sub.add_parser("run", help="one scenario")
    one.add_argument("scenario", choices=sorted(SCENARIOS))
    one.add_argument("--seed", type=int, default=1)
    one.add_argument("--keep", type=Path, help="folder for the run's files")
    rep = sub.add_parser("report", help="run the scenarios, rewrite docs/RELIABILITY.md")
    rep.add_argument("--render", action="store_true", help="only rewrite from recorded runs")
    rep.add_argument("--scenarios", nargs="*", default=[n for n in SCENARIOS if n != "soak"])
    rep.add_argument("--seeds", type=int, nargs="*", default=[1])
    rep.add_argument("--keep", type=Path)
    soak = sub.add_parser("soak", help="random faults for a long time")
    soak.add_argument("--minutes", type=float, default=60.0)
    soak.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    soak.add_argument("--keep", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    if args.command in ("up", "serve", "run", "report", "soak") and not getattr(args, "render", 0):
        reason = netns_unavailable()
        if reason:
            print(f"cannot run the cluster here: {reason}", file=sys.stderr)
            return 2
    if args.command == "up":
        root = args.root or Path(tempfile.mkdtemp(prefix="cluster-"))
        return _print(control.start(root.resolve(), args.hosts, args.seed))
    if args.command == "serve":
        control.serve(args.root, args.hosts, args.seed)
        return 0
    if args.command in ("fault", "cli"):
        action = args.action if args.command == "fault" else "cli"
        return _print(
            control.request(control.current_root(), {"action": action, "args": _args(args.pairs)})
        )
    if args.command == "heal":
        return _print(control.request(control.current_root(), {"action": "heal_all"}))
    if args.command == "status":
        return _print(control.request(control.current_root(), {"action": "status"}))
    if args.command == "down":
        if args.stale:
            for entry in control.stale_runs():
                print(f"removing run {entry['run']}: {destroy_namespaces(entry['namespaces'])}")
                for mount in entry.get("mounts", []):
                    subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
                shutil.rmtree(entry.get("hosts_dir", ""), ignore_errors=True)
                (control.REGISTRY / f"{entry['run']}.json").unlink(missing_ok=True)
            return 0
        return _print(control.request(control.current_root(), {"action": "down"}))
    if args.command == "run":
        results = _run_many([args.scenario], [args.seed], args.keep)
        return 0 if all(r.ok for r in results) else 1
    if args.command == "report":
        if not args.render:
            _run_many(args.scenarios, args.seeds, args.keep)
        report.write_section(report.load())
        print(f"wrote {report.RELIABILITY}")
        return 0
    if args.command == "soak":
        steps = soak_schedule(random.Random(args.seed), args.minutes * 60)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="cluster-soak-", dir=args.keep))
        result = run("soak", args.seed, root, steps=steps, converge=120.0)
        print(result.explain())
        report.append_results([result.summary()])
        report.write_section(report.load())
        return 0 if result.ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
