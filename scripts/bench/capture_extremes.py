"""Capture at the extremes: huge exception messages and very deep traces.

A report must cost the failing host about the same whatever it throws: a
10 MB message or a trace 100,000 frames deep must not add seconds to its
exit. Goal: every size and depth costs at most ``GOAL_EXTRA_MS`` more (p50)
than the smallest one.

One capture here is the error path's in-process work with the pipeline and
the store already open (as in ``capture_spool.py``):

    from_exception (walk the trace, read source lines, cut free text)
    -> Pipeline.prepare (scrub, signature, bound_report)
    -> Store.spool (encode_report + one SQLite commit, spool_sync=normal)

timed for an exception whose message is 1 KB to 10 MB of realistic text
(words, numbers, paths, a URL with a password: what the scrubber and the
normaliser look for), raised 10 frames deep, and for a short message raised
10 to 100,000 frames deep. The exceptions are raised outside the timed region
(deep ones in a thread with a 512 MiB stack and a raised recursion limit);
an untimed ack after each capture keeps the spool drained.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import emit, parser, samples_ms, summary_ms, table

from node.compose import open_store
from node.config import load_config
from node.context import EventContext, host_facts, process_facts
from node.event import from_exception
from node.pipeline import Pipeline

GOAL_EXTRA_MS = 50.0
SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
DEPTHS = (10, 100, 1_000, 10_000, 100_000)
_CHUNK = "retry 17 of job 0x7f3a2b at /srv/app/data/batch-0042.csv via postgres://svc:pw@db:5432 "


def message_of(size: int) -> str:
    """``size`` characters of text that every rule of the scrubber looks at."""
    return (_CHUNK * (size // len(_CHUNK) + 1))[:size]


def deep_exception(depth: int, message: str = "deep failure") -> BaseException:
    """An exception raised ``depth`` frames deep, in a thread with a big stack."""
    out: list[BaseException] = []

    def recurse(n: int) -> None:
        if n <= 0:
            raise RuntimeError(message)
        recurse(n - 1)

    def run() -> None:
        try:
            recurse(depth)
        except RuntimeError as exc:
            out.append(exc)

    old_limit = sys.getrecursionlimit()
    old_stack = threading.stack_size(512 * 1024 * 1024)
    sys.setrecursionlimit(max(old_limit, depth + 1_000))
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old_stack)
        sys.setrecursionlimit(old_limit)
    return out[0]


class Capture:
    """The error path with the pipeline and store opened once."""

    def __init__(self, root: Path) -> None:
        self.config = load_config(
            {"app": "bench", "state_dir": str(root), "sink": "none", "spool_sync": "normal"},
            environ={},
            read_file=False,
        )
        self.pipeline = Pipeline(self.config)
        self.store = open_store(self.config)
        facts = host_facts()
        self.ctx = EventContext(
            app="bench",
            argv=tuple(sys.argv),
            host=facts["host"],
            os=facts["os"],
            python=facts["python"],
            facts=process_facts(),
            cwd=facts["cwd"],
        )

    def __call__(self, exc: BaseException) -> float:
        """Seconds for one capture of ``exc``; the ack after it is untimed."""
        start = time.perf_counter()
        report = self.pipeline.prepare(from_exception(exc, self.ctx, now=time.time()))
        assert report is not None
        stored = self.store.spool(report)
        elapsed = time.perf_counter() - start
        self.store.ack([(stored.origin, stored.seq)])
        return elapsed


def runs_for(cost_hint: int, quick: bool) -> int:
    """Fewer runs for the cases that are slow before the fix (seconds each)."""
    if cost_hint >= 1_000_000:
        return 3 if quick else 10
    return 20 if quick else 100


def measure(capture: Capture, make: Callable[[], BaseException], n: int) -> dict[str, Any]:
    exc = make()
    capture(exc)  # warm: caches, source lines
    samples = []
    for _ in range(n):
        exc = make()
        samples.append(capture(exc))
    return {**summary_ms(samples), "samples_ms": samples_ms(samples)}


def main() -> None:
    args = parser(__doc__).parse_args()
    root = Path(tempfile.mkdtemp(prefix="errmesh-bench-extremes-"))
    capture = Capture(root)
    try:
        by_size = {}
        for size in SIZES:
            message = message_of(size)
            by_size[size] = measure(
                capture, lambda m=message: deep_exception(10, m), runs_for(size, args.quick)
            )
        by_depth = {}
        for depth in DEPTHS:
            exc = deep_exception(depth)
            by_depth[depth] = measure(capture, lambda e=exc: e, runs_for(depth * 10, args.quick))
    finally:
        capture.store.close()
        shutil.rmtree(root, ignore_errors=True)

    print("capture_extremes: from_exception + prepare + spool (spool_sync=normal), ms\n")
    print(
        table(
            ["message size", "n", "p50", "p99", "max"],
            [[f"{k:,} B", int(s["n"]), s["p50"], s["p99"], s["max"]] for k, s in by_size.items()],
        )
    )
    print()
    print(
        table(
            ["trace depth", "n", "p50", "p99", "max"],
            [[f"{k:,}", int(s["n"]), s["p50"], s["p99"], s["max"]] for k, s in by_depth.items()],
        )
    )
    extra_size = by_size[SIZES[-1]]["p50"] - by_size[SIZES[0]]["p50"]
    extra_depth = by_depth[DEPTHS[-1]]["p50"] - by_depth[DEPTHS[0]]["p50"]
    met = max(extra_size, extra_depth) <= GOAL_EXTRA_MS
    print(
        f"\ngoal: 10 MB message and 100,000 frames each add <= {GOAL_EXTRA_MS:.0f} ms (p50): "
        f"+{extra_size:.1f} ms, +{extra_depth:.1f} ms -> {'met' if met else 'NOT met'}"
    )
    emit(
        "capture_extremes",
        goal=f"10 MB message / 100k frames add <= {GOAL_EXTRA_MS:.0f} ms p50",
        met=met,
        quick=args.quick,
        results={
            "ms_by_message_bytes": by_size,
            "ms_by_trace_depth": by_depth,
            "headline": f"10 MB +{extra_size:.1f} ms, 100k frames +{extra_depth:.1f} ms",
        },
    )


if __name__ == "__main__":
    main()
