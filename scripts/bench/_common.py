"""Helpers shared by the benchmark scripts: percentiles, tables, the JSON line.

Every benchmark prints a human-readable table and, as its very last line, one
JSON object (``{"benchmark": ..., "goal": ..., "met": ..., "results": ...}``)
that ``run_all.py`` collects. Nothing here measures anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The repository root (scripts/bench/ is two levels down).
REPO = Path(__file__).resolve().parents[2]


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100) by linear interpolation between ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max of samples in seconds, as milliseconds."""
    ms = [s * 1000.0 for s in samples_s]
    return {
        "n": float(len(ms)),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms) if ms else math.nan,
        "min": min(ms) if ms else math.nan,
        "max": max(ms) if ms else math.nan,
    }


def samples_ms(samples_s: Sequence[float]) -> list[float]:
    """Every sample in ms (to the µs), in the order taken: what plot.py draws a distribution of."""
    return [round(s * 1000.0, 3) for s in samples_s]


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None
) -> str:
    """A plain text table; ``align`` has one ``l``/``r`` per column (default: ``lrr...``)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(widths[i]) if align[i] == "l" else v.rjust(widths[i])
            for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` (fast smoke mode)."""
    first = (doc or "").strip().splitlines()[0] if doc else None
    p = argparse.ArgumentParser(description=first)
    p.add_argument("--quick", action="store_true", help="few iterations: a smoke test")
    return p


def environment() -> dict[str, str]:
    """Where the figures were taken (the parent interpreter), and how busy the machine was."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "loadavg_1_5_15": " ".join(f"{x:.2f}" for x in load),
    }


def emit(benchmark: str, *, goal: str, met: bool, quick: bool, results: dict[str, Any]) -> None:
    """Print the final JSON line that ``run_all.py`` reads (always the last line)."""
    record = {
        "benchmark": benchmark,
        "goal": goal,
        "met": met,
        "quick": quick,
        "results": results,
        "environment": environment(),
    }
    print(json.dumps(record, sort_keys=True, default=_json_default), flush=True)


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
