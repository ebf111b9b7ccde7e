"""Memory of a relay tracking 10,000 signatures (issue 3).

Goal: a relay that tracks 10k signatures stays under 150 MB resident.

One real relay (``python -m node relay``) runs with ``--sink none`` (an
observer: it stores, acks, gossips and answers digests but never opens
issues), because the file sink's cost grows with the number of issues and
would dominate (see docs/BENCHMARKS.md). Every signature carries a realistic
first report as its detail (``report_bytes.synthetic_report``: 30 frames,
50 log lines), each with a distinct signature. Phases:

1. *baseline*: the relay idle with an empty store (3 s);
2. *draining*: 2,000 reports (500 in ``--quick``) are committed to the
   relay's own spool with :class:`mesh.store.Store` in chunks of 500, the
   relay nudged on its Unix socket after each, as failing CLIs with a local
   relay do; sampled until they are all in its aggregate;
3. *tracking*: the relay is stopped, the rest of the 10,000 signatures
   (2,000 in ``--quick``) are merged into its store directly (a relay that
   restarts on a full store), and it is started again on the same
   directories; sampled for 12 s (two anti-entropy digests, each of which
   reads every state);
4. *syncing* (not in ``--quick``): a second, empty relay joins; both are
   sampled until it holds every signature, or for 30 s.

``VmRSS`` (and the peak, ``VmHWM``) come from ``/proc/<pid>/status``, CPU
seconds from ``/proc/<pid>/stat``. Afterwards, to say where the memory
goes, the bench process itself measures with ``tracemalloc`` what the
relay's periodic calls allocate on that store: ``Store.states()`` (every
digest and every digest answer) and ``Store.pending(limit=5000)`` (a drain).
"""

from __future__ import annotations

import hashlib
import random
import signal
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _common import emit, parser, table
from _mesh import CLUSTER, Relay, Sandbox, cpu_seconds, memory_kb, wait_for
from report_bytes import synthetic_report

from mesh.report import Report
from mesh.store import Store

GOAL_MB = 150.0
SIGNATURES = 10_000
CHUNK = 500
_TEMPLATE = synthetic_report(random.Random(5))


def report(i: int) -> Report:
    """A first report with signature number ``i``."""
    return _TEMPLATE.replace(
        signature=hashlib.sha256(f"rss-{i}".encode()).digest()[:16],
        exc_type=f"acme_sync.errors.Error{i}",
        timestamp=time.time(),
    )


def sample(pids: list[int], seconds: float, until: Any = None) -> list[list[int]]:
    """VmRSS (KiB) of each pid every 0.25 s for ``seconds`` or until ``until()``."""
    out: list[list[int]] = [[] for _ in pids]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i, pid in enumerate(pids):
            rss = memory_kb(pid).get("VmRSS")
            if rss:
                out[i].append(rss)
        if until is not None and until():
            break
        time.sleep(0.25)
    return out


def spool_and_nudge(relay: Relay, start: int, stop: int) -> float:
    """Spool reports ``start..stop`` into the relay's spool, nudging per chunk; seconds."""
    started = time.monotonic()
    sock_path = str(relay.state_dir / CLUSTER / "relay.sock")
    with (
        Store.open(relay.state_dir / CLUSTER, sync="normal", max_reports=stop * 2) as store,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nudge,
    ):
        for i in range(start, stop):
            store.spool(report(i))
            if (i + 1 - start) % CHUNK == 0 or i + 1 == stop:
                nudge.sendto(b"spooled", sock_path)
    return time.monotonic() - started


def preload(state_dir: Path, start: int, stop: int) -> float:
    """Merge reports ``start..stop`` straight into a (stopped) relay's store; seconds."""
    started = time.monotonic()
    with Store.open(state_dir / CLUSTER, sync="normal") as store:
        for first in range(start, stop, CHUNK):
            store.merge_reports(report(i) for i in range(first, min(stop, first + CHUNK)))
    return time.monotonic() - started


def allocations(state_dir: Path) -> dict[str, float]:
    """tracemalloc peak (MiB) of the relay's periodic store reads on its final store."""
    out = {}
    with Store.open(state_dir / CLUSTER, sync="normal") as store:
        for name, call in (
            ("states", lambda: store.states()),
            ("pending_5000", lambda: store.pending(limit=5000)),
        ):
            started = time.perf_counter()
            result = call()
            seconds = time.perf_counter() - started
            del result
            tracemalloc.start()
            result = call()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out[f"{name}_mb"] = peak / 2**20
            out[f"{name}_s"] = seconds
            out[f"{name}_items"] = len(result)
            del result
    return out


def mb(kib: float) -> float:
    return kib / 1024.0


def phase_row(name: str, rss: list[int], cpu: float, seconds: float) -> list[object]:
    return [
        name,
        len(rss),
        mb(rss[-1]) if rss else float("nan"),
        mb(max(rss)) if rss else float("nan"),
        cpu,
        seconds,
        cpu / seconds if seconds else float("nan"),
    ]


def main() -> None:
    args = parser(__doc__).parse_args()
    drained = 500 if args.quick else 2_000
    total = 2_000 if args.quick else SIGNATURES
    sandbox = Sandbox()
    phases: dict[str, dict[str, Any]] = {}
    peaks: dict[str, int] = {}
    try:
        relay = Relay(sandbox, "relay", window=900.0, settings={"sink": "none"})
        relay.start()
        relay.wait_ready(60.0)
        wait_for(lambda: relay.status(), 30.0, 0.05, "status written")

        cpu, started = cpu_seconds(relay.pid), time.monotonic()
        rss = sample([relay.pid], 3.0)[0]
        phases["baseline"] = {"rss": rss, "cpu": cpu_seconds(relay.pid) - cpu, "seconds": 3.0}

        def holds(n: int, who: Relay) -> bool:
            status = who.status() or {}
            return status.get("signatures") == n and status.get("spool_pending") == 0

        cpu, started = cpu_seconds(relay.pid), time.monotonic()
        spool_s = spool_and_nudge(relay, 0, drained)
        rss = sample([relay.pid], 120.0, lambda: holds(drained, relay))[0]
        phases["draining"] = {
            "rss": rss,
            "cpu": cpu_seconds(relay.pid) - cpu,
            "seconds": time.monotonic() - started,
            "spool_s": spool_s,
            "complete": holds(drained, relay),
        }
        peaks["draining"] = memory_kb(relay.pid).get("VmHWM", 0)

        assert relay.child is not None
        relay.child.kill(signal.SIGTERM)
        relay.child.process.wait(10.0)
        preload_s = preload(relay.state_dir, drained, total)
        relay.start()
        relay.wait_ready(60.0)
        wait_for(lambda: holds(total, relay), 60.0, 0.05, f"{total} signatures")
        cpu, started = cpu_seconds(relay.pid), time.monotonic()
        rss = sample([relay.pid], 12.0)[0]
        phases["tracking"] = {
            "rss": rss,
            "cpu": cpu_seconds(relay.pid) - cpu,
            "seconds": time.monotonic() - started,
            "preload_s": preload_s,
        }
        peaks["tracking"] = memory_kb(relay.pid).get("VmHWM", 0)
        status = relay.status() or {}

        if not args.quick:
            second = Relay(sandbox, "second", window=900.0, settings={"sink": "none"})
            second.start([relay.addr])
            second.wait_ready(60.0)
            cpu, cpu2 = cpu_seconds(relay.pid), cpu_seconds(second.pid)
            started = time.monotonic()
            both = sample([relay.pid, second.pid], 30.0, lambda: holds(total, second))
            seconds = time.monotonic() - started
            phases["syncing"] = {
                "rss": both[0],
                "cpu": cpu_seconds(relay.pid) - cpu,
                "seconds": seconds,
                "caught_up": holds(total, second),
                "second_signatures": (second.status() or {}).get("signatures"),
            }
            phases["syncing, 2nd relay"] = {
                "rss": both[1],
                "cpu": cpu_seconds(second.pid) - cpu2,
                "seconds": seconds,
            }
            peaks["syncing"] = memory_kb(relay.pid).get("VmHWM", 0)
            peaks["syncing, 2nd relay"] = memory_kb(second.pid).get("VmHWM", 0)
            second.kill()
        relay.kill()
        store_files = {
            p.name: p.stat().st_size for p in (relay.state_dir / CLUSTER).glob("errmesh.sqlite3*")
        }
        diagnosis = allocations(relay.state_dir)
    finally:
        sandbox.close()

    print(f"relay RSS tracking {total:,} signatures (MB = MiB; --sink none)\n")
    print(
        table(
            ["phase", "samples", "last MB", "max MB", "CPU s", "wall s", "CPU/wall"],
            [phase_row(name, p["rss"], p["cpu"], p["seconds"]) for name, p in phases.items()],
        )
    )
    print(
        "peak RSS (VmHWM) at the end of each phase: "
        + ", ".join(f"{name} {mb(kib):.1f} MB" for name, kib in peaks.items())
    )
    d = phases["draining"]
    print(
        f"\ndraining: {drained:,} reports spooled in {d['spool_s']:.1f} s, all in the relay's "
        f"aggregate after {d['seconds']:.1f} s ({'complete' if d['complete'] else 'INCOMPLETE'})"
    )
    print(
        f"tracking: {phases['tracking']['preload_s']:.1f} s to merge the other "
        f"{total - drained:,} into the stopped relay's store; status then: "
        f"{status.get('signatures')} signatures"
    )
    print(
        "store files: "
        + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sorted(store_files.items()))
    )
    if "syncing" in phases:
        s = phases["syncing"]
        print(
            f"syncing: the second relay {'caught up' if s['caught_up'] else 'did NOT catch up'} "
            f"({s['second_signatures']} of {total:,} signatures) in {s['seconds']:.1f} s"
        )
    print(
        f"where it goes (tracemalloc peak in this process, same store): Store.states() "
        f"{diagnosis['states_mb']:.1f} MB in {diagnosis['states_s']:.2f} s for "
        f"{diagnosis['states_items']:,} states; Store.pending(limit=5000) "
        f"{diagnosis['pending_5000_mb']:.1f} MB"
    )
    tracking = phases["tracking"]["rss"]
    tracking_max = mb(max(tracking))
    worst = mb(max(peaks.values()))
    met = max(tracking_max, worst) <= GOAL_MB
    print(
        f"\ngoal: RSS <= {GOAL_MB:.0f} MB tracking {total:,} signatures: "
        f"{mb(tracking[-1]):.1f} MB last, {tracking_max:.1f} MB max while tracking, "
        f"{worst:.1f} MB peak over all phases -> {'met' if met else 'NOT met'}"
    )
    emit(
        "relay_rss",
        goal=f"relay RSS <= {GOAL_MB:.0f} MB tracking {SIGNATURES:,} signatures",
        met=met,
        quick=args.quick,
        results={
            "signatures": total,
            "phases": {
                name: {
                    "last_mb": mb(p["rss"][-1]) if p["rss"] else None,
                    "max_mb": mb(max(p["rss"])) if p["rss"] else None,
                    **{k: v for k, v in p.items() if k != "rss"},
                }
                for name, p in phases.items()
            },
            "peak_mb": {name: mb(kib) for name, kib in peaks.items()},
            "store_files": store_files,
            "diagnosis": diagnosis,
            "headline": f"{mb(tracking[-1]):.0f}-{tracking_max:.0f} MB tracking {total:,} "
            f"signatures, peak {worst:.0f} MB",
        },
    )


if __name__ == "__main__":
    main()
