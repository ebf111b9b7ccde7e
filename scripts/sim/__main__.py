"""``python -m scripts.sim``: run one seed, many seeds, or the fleet-scale series.

    python -m scripts.sim run --seed 17              # one run; prints its schedule on failure
    python -m scripts.sim seeds --count 50           # seeds 0..49, a line each
    python -m scripts.sim scale --peers 10,100,1000  # docs/sim_scaling.json (+ .png with --plot)
    python -m scripts.sim scale --peers 10000 --scenario crash --duration 40 --digest-every 500
    python -m scripts.sim plot                       # docs/sim_scaling.png from the JSON

Run from the repository root. Exit status 1 when a run breaks an invariant
(``--allow one-leader`` tolerates a named one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.sim.checker import check
from scripts.sim.config import FaultMix, LinkModel, SimConfig
from scripts.sim.scale import load, plot, save, scale_run, table
from scripts.sim.simulation import Simulation
from scripts.sim.summary import describe, summarise

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _config(args: argparse.Namespace, seed: int) -> SimConfig:
    return SimConfig(
        seed=seed,
        peers=args.peers,
        eligible=args.eligible,
        reporters=args.reporters,
        duration=args.duration,
        quiet=args.quiet,
        error_rate=args.error_rate,
        faults=FaultMix(count=args.faults),
        link=LinkModel(loss=args.loss, duplicate=args.duplicate, reorder=args.reorder),
        digest_every=args.digest_every,
        fast_digests=not args.exact,
    )


def _replay(args: argparse.Namespace, seed: int) -> str:
    flags = [f"--seed {seed}"]
    defaults = _parser().parse_args(["run"])
    for name in (
        "peers",
        "eligible",
        "reporters",
        "duration",
        "quiet",
        "error_rate",
        "faults",
        "loss",
        "duplicate",
        "reorder",
        "digest_every",
    ):
        if getattr(args, name) != getattr(defaults, name):
            flags.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    return "python -m scripts.sim run " + " ".join(flags)


def cmd_run(args: argparse.Namespace) -> int:
    sim = Simulation(_config(args, args.seed)).run()
    violations = [v for v in check(sim) if v.invariant not in args.allow]
    print(describe(sim, summarise(sim)))
    if args.history:
        print("\n".join(sim.history.lines))
    if violations or args.verbose:
        print("fault schedule:")
        for fault in sim.faults:
            print("  " + fault.describe())
    for v in violations:
        print(f"VIOLATED {v}")
    if violations:
        print(f"replay: {_replay(args, args.seed)}")
    print(f"history {sim.history.digest()}")
    return 1 if violations else 0


def cmd_seeds(args: argparse.Namespace) -> int:
    failed = []
    for seed in range(args.start, args.start + args.count):
        sim = Simulation(_config(args, seed)).run()
        s = summarise(sim)
        broken = sorted({v.invariant for v in check(sim) if v.invariant not in args.allow})
        conv = "never" if s.data_converged is None else f"{s.data_converged:5.1f}s"
        print(
            f"seed {seed:4d}: {s.injected:4d} occurrences, {s.faults} faults, "
            f"converged {conv}, {s.wall:5.2f}s wall {' '.join(broken) or 'ok'}"
        )
        if broken:
            failed.append(seed)
    if failed:
        print(
            f"{len(failed)} seeds broke invariants: {failed}; replay one with: "
            f"{_replay(args, failed[0])}"
        )
    return 1 if failed else 0


def cmd_scale(args: argparse.Namespace) -> int:
    out = Path(args.out)
    for peers in (int(p) for p in args.peers.split(",")):
        every = (
            args.digest_every if args.digest_every else max(5.0, peers / 20) if args.scaled else 5.0
        )
        summary = scale_run(
            peers,
            seed=args.seed,
            duration=args.duration,
            digest_every=every,
            scenario=args.scenario,
        )
        series = args.series or ("digest every N/20 s" if args.scaled else "digest every 5 s")
        save(summary, out, series=series, scenario=args.scenario)
        print(table([{**summary.as_dict(), "series": series}]).splitlines()[-1], flush=True)
        for v in summary.violations:
            print(f"  VIOLATED {v}")
    if args.plot:
        plot(load(out), Path(args.png))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    rows = load(Path(args.out))
    plot(rows, Path(args.png))
    print(table(rows))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "seeds"):
        p = sub.add_parser(name)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--start", type=int, default=0)
        p.add_argument("--count", type=int, default=20)
        p.add_argument("--peers", type=int, default=5)
        p.add_argument("--eligible", type=int, default=None)
        p.add_argument("--reporters", type=int, default=2)
        p.add_argument("--duration", type=float, default=120.0)
        p.add_argument("--quiet", type=float, default=120.0)
        p.add_argument("--error-rate", type=float, default=2.0)
        p.add_argument("--faults", type=int, default=6)
        p.add_argument("--loss", type=float, default=0.0)
        p.add_argument("--duplicate", type=float, default=0.0)
        p.add_argument("--reorder", type=float, default=0.0)
        p.add_argument("--digest-every", type=float, default=5.0)
        p.add_argument("--exact", action="store_true", help="no fast path for equal digests")
        p.add_argument("--allow", action="append", default=[], help="an invariant to tolerate")
        p.add_argument("--history", action="store_true", help="print the whole history")
        p.add_argument("--verbose", "-v", action="store_true")
    p = sub.add_parser("scale")
    p.add_argument("--peers", default="10,100,1000")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--digest-every", type=float, default=0.0)
    p.add_argument("--scaled", action="store_true", help="digest every max(5, N/20) s")
    p.add_argument("--scenario", choices=("partition", "crash"), default="partition")
    p.add_argument("--series", default="")
    p.add_argument("--out", default=str(DOCS / "sim_scaling.json"))
    p.add_argument("--png", default=str(DOCS / "sim_scaling.png"))
    p.add_argument("--plot", action="store_true")
    p = sub.add_parser("plot")
    p.add_argument("--out", default=str(DOCS / "sim_scaling.json"))
    p.add_argument("--png", default=str(DOCS / "sim_scaling.png"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"run": cmd_run, "seeds": cmd_seeds, "scale": cmd_scale, "plot": cmd_plot}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
