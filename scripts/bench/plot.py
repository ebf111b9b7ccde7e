"""Draw docs/BENCHMARKS.md's figures from the benchmarks' JSON records.

``run_all.py --record docs/bench`` writes one record per benchmark (the JSON
line each prints last); this script reads them and writes one PNG per
figure. A record that is missing only leaves its figure out, so one
benchmark can be rerun and redrawn alone. Every figure says in its title
how busy the machine was (the load average the record carries): the
figures in docs/ were taken on a shared machine.

Usage: ``.venv/bin/python scripts/bench/plot.py [--records DIR] [--out DIR]``
(by default the records in docs/bench, the PNGs into docs/).
matplotlib comes with the ``bench`` extra (``pip install -e '.[bench]'``); it is
imported here only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, same pixels anywhere
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

REPO = Path(__file__).resolve().parents[2]
Record = dict[str, Any]

#: The goals as the benchmarks state them (their ``goal`` strings say the same).
STARTUP_GOAL_MS = 5.0
COMMIT_GOAL_MS = 10.0
PROPAGATION_GOAL_MS = 100.0
FAILOVER_GOAL_S = 3.0


def load(directory: Path) -> dict[str, Record]:
    """The records in ``directory`` by benchmark name (``NAME.json``)."""
    records: dict[str, Record] = {}
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        records[str(record["benchmark"])] = record
    return records


def _load_note(record: Record) -> str:
    env = record.get("environment", {})
    quick = ", --quick" if record.get("quick") else ""
    return f"load average {env.get('loadavg_1_5_15', '?')} on {env.get('cpus', '?')} CPUs{quick}"


def _ecdf(ax: Axes, samples: Sequence[float], label: str) -> None:
    """Each sample as a step: the share of runs at or under that time."""
    ordered = sorted(samples)
    n = len(ordered)
    ax.step(ordered, [(i + 1) / n for i in range(n)], where="post", label=f"{label} (n={n})")


def _short(value: float) -> str:
    """``30``, ``1k``, ``10M``: tick labels people read at a glance."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _log_x(ax: Axes, *, minor: bool = True) -> None:
    """A log axis labelled in plain numbers (``30``, not ``3x10^1``).

    ``minor``: also label 2, 3 and 5 (x 10^n) between the decades, for an
    axis that spans only a few of them.
    """
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _short(value)))
    labelled = FuncFormatter(lambda v, _: _short(v) if minor and f"{v:g}"[0] in "235" else "")
    ax.xaxis.set_minor_formatter(labelled)
    ax.tick_params(axis="x", which="minor", labelsize=7)


def _finish(fig: Figure, record: Record, title: str) -> Figure:
    fig.suptitle(f"{title}\n{_load_note(record)}", fontsize=10)
    fig.tight_layout()
    return fig


def startup(record: Record) -> Figure:
    """success_path: wall time of a child interpreter, spawn to exit, per command."""
    samples: dict[str, list[float]] = record["results"]["samples_ms"]
    names = [n for n in ("bare", "errmesh", "sentry-alone", "sentry") if samples.get(n)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.boxplot([samples[n] for n in names], orientation="horizontal", whis=(0, 100))
    ax.set_yticks(range(1, len(names) + 1), labels=_startup_labels(names))
    for i, name in enumerate(names, 1):
        ax.plot(samples[name], [i] * len(samples[name]), "o", alpha=0.4, markersize=3)
    _log_x(ax)
    ax.set_xlabel("spawn to exit, ms (log scale)")
    bare = record["results"]["ms"]["bare"]["median"]
    ax.axvline(bare + STARTUP_GOAL_MS, linestyle="--", color="grey", linewidth=1)
    ax.text(bare + STARTUP_GOAL_MS, 0.55, " goal: bare + 5 ms", color="grey", fontsize=8)
    return _finish(fig, record, "Start-up cost: import and install, errmesh against sentry-sdk")


def _startup_labels(names: Sequence[str]) -> list[str]:
    said = {
        "bare": "bare python",
        "errmesh": "import node; install()",
        "sentry-alone": "sentry_sdk.init() alone",
        "sentry": "sentry_sdk.init()",
    }
    return [said[n] for n in names]


def capture(commit: Record | None, extremes: Record | None) -> Figure:
    """raise_to_commit's distribution, and capture_extremes' time by size and depth."""
    panels = [p for p in (commit, extremes) if p is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    row = list(axes[0])
    if commit is not None:
        ax = row.pop(0)
        for path, label in (("full", "full error path"), ("handover", "hand-over to a relay")):
            _ecdf(ax, commit["results"][path]["commit_samples_ms"], label)
        ax.axvline(COMMIT_GOAL_MS, linestyle="--", color="grey", linewidth=1, label="goal (p50)")
        ax.set_xlabel("raise -> report durable, ms")
        ax.set_ylabel("share of dying processes")
        ax.set_title(f"raise_to_commit ({_load_note(commit)})", fontsize=8)
        ax.legend(fontsize=7)
    if extremes is not None:
        ax = row.pop(0)
        for key, label in (
            ("ms_by_message_bytes", "message bytes"),
            ("ms_by_trace_depth", "frames"),
        ):
            sizes = sorted(extremes["results"][key], key=int)
            p50 = [extremes["results"][key][s]["p50"] for s in sizes]
            ax.plot([int(s) for s in sizes], p50, "o-", label=f"p50 by {label}")
        _log_x(ax, minor=False)
        ax.set_xlabel("message size (bytes) or trace depth (frames), log scale")
        ax.set_ylabel("capture, ms")
        ax.set_title(f"capture_extremes ({_load_note(extremes)})", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Capture latency", fontsize=10)
    fig.tight_layout()
    return fig


def propagation(record: Record) -> Figure:
    """propagation: publish -> the last of the other peers has it, per topology and load."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for phase in record["results"]["phases"]:
        samples = phase.get("all_peers_samples_ms") or []
        if samples:
            _ecdf(ax, samples, f"{phase['topology']}, {phase['phase']}")
    ax.axvline(PROPAGATION_GOAL_MS, linestyle="--", color="grey", linewidth=1, label="goal (p99)")
    _log_x(ax)
    ax.set_xlabel("report -> every other relay, ms (log scale)")
    ax.set_ylabel("share of reports")
    ax.legend(fontsize=7)
    return _finish(fig, record, "Propagation over 10 relays")


def failover(record: Record) -> Figure:
    """failover: leader SIGKILLed -> a new leader in its status, and acting on a new error."""
    repeats = record["results"]["repeats"]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for row, (key, label) in enumerate(
        (("leader_s", "new leader in its status"), ("acted_s", "new leader acted")), 1
    ):
        values = [r[key] for r in repeats if r[key] is not None]
        ax.plot(values, [row] * len(values), "o", alpha=0.6, label=f"{label} (n={len(values)})")
    ax.set_yticks([1, 2], labels=["leads", "acts"])
    ax.set_ylim(0.5, 2.5)
    ax.axvline(FAILOVER_GOAL_S, linestyle="--", color="grey", linewidth=1, label="goal")
    ax.set_xlim(0, FAILOVER_GOAL_S * 1.2)
    ax.set_xlabel("seconds after the leader's SIGKILL")
    ax.legend(fontsize=7, loc="lower right")
    return _finish(fig, record, "Failover: 3 relays, the leader killed")


def figures(records: dict[str, Record]) -> dict[str, Callable[[], Figure]]:
    """The figures these records can draw, by file name."""
    out: dict[str, Callable[[], Figure]] = {}
    if "success_path" in records:
        out["bench-startup.png"] = lambda: startup(records["success_path"])
    if "raise_to_commit" in records or "capture_extremes" in records:
        out["bench-capture.png"] = lambda: capture(
            records.get("raise_to_commit"), records.get("capture_extremes")
        )
    if "propagation" in records:
        out["bench-propagation.png"] = lambda: propagation(records["propagation"])
    if "failover" in records:
        out["bench-failover.png"] = lambda: failover(records["failover"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--records", type=Path, default=REPO / "docs" / "bench")
    p.add_argument("--out", type=Path, default=REPO / "docs")
    args = p.parse_args(argv)
    drawn = figures(load(args.records))
    if not drawn:
        print(f"no benchmark records in {args.records}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in drawn.items():
        fig = draw()
        fig.savefig(args.out / name, dpi=110)
        plt.close(fig)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
