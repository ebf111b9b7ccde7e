"""scripts/bench/plot.py draws docs/BENCHMARKS.md's figures from the benchmarks' records.

The records here are small but shaped like the real ones (the fields each
benchmark's final JSON line carries); plot.py runs as the docs say, in its
own interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

PLOT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "plot.py"
PNG = b"\x89PNG\r\n\x1a\n"
ENVIRONMENT = {"loadavg_1_5_15": "1.50 1.20 0.90", "cpus": "2"}


def record(benchmark: str, results: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": benchmark, "quick": True, "results": results, "environment": ENVIRONMENT}


RECORDS = {
    "success_path": record(
        "success_path",
        {
            "samples_ms": {
                "bare": [10.1, 10.4, 11.0],
                "errmesh": [11.2, 11.9, 12.5],
                "sentry-alone": [140.0, 151.0],
                "sentry": [280.0, 301.0],
            },
            "ms": {"bare": {"median": 10.4}},
        },
    ),
    "raise_to_commit": record(
        "raise_to_commit",
        {
            "full": {"commit_samples_ms": [9.5, 11.0, 14.2]},
            "handover": {"commit_samples_ms": [9.4, 9.6, 12.0]},
        },
    ),
    "capture_extremes": record(
        "capture_extremes",
        {
            "ms_by_message_bytes": {"1000": {"p50": 1.5}, "10000000": {"p50": 4.1}},
            "ms_by_trace_depth": {"10": {"p50": 0.6}, "100000": {"p50": 10.1}},
        },
    ),
    "propagation": record(
        "propagation",
        {
            "phases": [
                {"topology": "star", "phase": "rest", "all_peers_samples_ms": []},
                {"topology": "star", "phase": "light", "all_peers_samples_ms": [40.0, 55.0, 85.0]},
            ]
        },
    ),
    "failover": record(
        "failover",
        {"repeats": [{"leader_s": 1.74, "acted_s": 1.73}, {"leader_s": 1.75, "acted_s": None}]},
    ),
}


def plot(records: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PLOT), "--records", str(records), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(directory: Path, names: list[str]) -> Path:
    directory.mkdir()
    for name in names:
        (directory / f"{name}.json").write_text(json.dumps(RECORDS[name]))
    return directory


def test_every_record_becomes_its_figure_as_a_png(tmp_path: Path) -> None:
    done = plot(write(tmp_path / "bench", list(RECORDS)), tmp_path / "docs")
    assert done.returncode == 0, done.stderr
    drawn = sorted(p.name for p in (tmp_path / "docs").iterdir())
    assert drawn == [
        "bench-capture.png",
        "bench-failover.png",
        "bench-propagation.png",
        "bench-startup.png",
    ]
    for name in drawn:
        assert (tmp_path / "docs" / name).read_bytes().startswith(PNG), name


def test_a_missing_record_leaves_only_its_figure_out(tmp_path: Path) -> None:
    done = plot(write(tmp_path / "bench", ["failover"]), tmp_path / "docs")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "docs").iterdir()] == ["bench-failover.png"]


def test_no_records_at_all_is_an_error_that_says_where_it_looked(tmp_path: Path) -> None:
    done = plot(write(tmp_path / "bench", []), tmp_path / "docs")
    assert done.returncode == 1
    assert f"no benchmark records in {tmp_path / 'bench'}" in done.stderr
