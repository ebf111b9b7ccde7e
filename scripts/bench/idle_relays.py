"""What relays cost when nothing fails (issue 16).

Goal: 10 idle relays (no reports) together under 5% of one core, measured
over 60 s; one idle relay under 0.5%.

Phases, each with real relays (``python -m node relay``, the file sink,
default settings) on loopback:

1. *alone*: one relay (the default 15-minute window, as every relay
   below), no peers, sampled for ``--seconds`` after it settles;
2. *mesh*: ``--relays`` relays (R1 the bootstrap of the others), sampled
   for ``--seconds`` once every one of them sees a leader, holds a direct
   connection and has run its first anti-entropy round, plus 5 s.

CPU seconds come from ``/proc/<pid>/stat`` (user + system), so other jobs
on the machine do not count, though they slow what is counted a little
(caches, frequency). The loopback's bytes (``/proc/net/dev``) are the whole
machine's: quiet only if nothing else talks on it. With ``--profile S``, a
follower of the mesh is sampled by ``py-spy`` (if installed) for S seconds
after the measurement, and the functions holding most samples are printed
(inclusive: where a millisecond goes, not only the leaf that spends it).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from _common import emit, parser, table
from _mesh import Relay, Sandbox, cpu_seconds, loopback_bytes, machine_cpu_seconds, wait_for

GOAL_MESH = 5.0  # % of one core, all relays together
GOAL_ONE = 0.5  # % of one core
#: The default bundle window (15 min): an idle leader has nothing due within it.
WINDOW = 900.0


def settled(relay: Relay) -> bool:
    status = relay.status() or {}
    stats = status.get("stats", {})
    return (
        bool(status.get("leader"))
        and bool(status.get("peers"))
        and (stats.get("sync_rounds", 0) >= 1 or stats.get("digests_sent", 0) >= 1)
    )


def sample(relays: list[Relay], seconds: float) -> dict[str, Any]:
    """CPU of each relay, the machine's, and loopback bytes over ``seconds``."""
    before = [cpu_seconds(r.pid) for r in relays]
    machine, lo, started = machine_cpu_seconds(), loopback_bytes(), time.monotonic()
    time.sleep(seconds)
    span = time.monotonic() - started
    after = [cpu_seconds(r.pid) for r in relays]
    per = [(b - a) / span * 100 for a, b in zip(before, after, strict=True)]
    return {
        "seconds": round(span, 1),
        "per_relay_pct": [round(p, 3) for p in per],
        "total_pct": round(sum(per), 3),
        "machine_pct": round((machine_cpu_seconds() - machine) / span * 100, 1),
        "loopback_bytes_per_s": round((loopback_bytes() - lo) / span),
        "stats": [(r.status() or {}).get("stats", {}) for r in relays],
    }


def profile(pid: int, seconds: float, out: Path) -> list[tuple[str, float]]:
    """``py-spy record`` of ``pid``: the share of samples in each function (inclusive)."""
    spy = shutil.which("py-spy") or str(Path(__file__).resolve().parents[2] / ".venv/bin/py-spy")
    if not Path(spy).exists():
        return [("py-spy not installed: pip install py-spy", 0.0)]
    subprocess.run(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
         "--format", "raw", "--output", str(out), "--nonblocking"],
        check=True, capture_output=True,
    )  # fmt: skip
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = {
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0] + ")"
            for f in stack.split(";")
        }
        for frame in frames:
            inclusive[frame] += n
    top = inclusive.most_common(60)
    return (
        [(name, n / total * 100) for name, n in top] + [("samples", float(total))] if total else []
    )


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--relays", type=int, default=10)
    args.add_argument("--seconds", type=float, default=60.0)
    args.add_argument("--profile", type=float, default=0.0, help="py-spy a follower for S s")
    opts = args.parse_args()
    relays_n, seconds = (3, 15.0) if opts.quick else (opts.relays, opts.seconds)
    results: dict[str, Any] = {"relays": relays_n}
    with Sandbox("errmesh-bench-idle-") as box:
        alone = Relay(box, "A1", window=WINDOW).start()
        alone.wait_ready()
        wait_for(lambda: (alone.status() or {}).get("role") == "leader", 30, 0.1, "A1 leads")
        time.sleep(5)
        results["alone"] = sample([alone], seconds)
        if opts.profile:
            results["profile_alone"] = profile(alone.pid, opts.profile, box.root / "alone.spy")
        alone.kill()

        first = Relay(box, "R1", priority=10, window=WINDOW).start()
        boot = first.wait_ready()
        mesh = [first]
        for i in range(2, relays_n + 1):
            relay = Relay(box, f"R{i}", window=WINDOW).start([boot])
            relay.wait_ready()
            mesh.append(relay)
        wait_for(lambda: all(settled(r) for r in mesh), 90, 0.2, "every relay settled")
        time.sleep(5)
        results["mesh"] = sample(mesh, seconds)
        if opts.profile:
            results["profile"] = profile(mesh[-1].pid, opts.profile, box.root / "idle.spy")

    one, many = results["alone"]["total_pct"], results["mesh"]["total_pct"]
    each = results["mesh"]["per_relay_pct"]
    rows = [
        ["one relay alone", f"{one:.2f} %", f"{GOAL_ONE} %",
         f"{results['alone']['loopback_bytes_per_s']:,}"],
        [f"{relays_n} relays, together", f"{many:.2f} %", f"{GOAL_MESH} %",
         f"{results['mesh']['loopback_bytes_per_s']:,}"],
        [f"{relays_n} relays, each (min-max)",
         f"{min(each):.2f}-{max(each):.2f} %",
         "", ""],
    ]  # fmt: skip
    print(table(["idle", "CPU of one core", "goal", "loopback B/s"], rows))
    for key in ("profile_alone", "profile"):
        if key in results:
            print(f"{key}: share of the samples in which each function was on the stack")
        for name, pct in results.get(key, [])[13:]:  # the first 13: main, click, trio.run
            print(f"  {pct:5.1f} %  {name}")
    emit(
        "idle_relays",
        goal=f"{relays_n} idle relays < {GOAL_MESH} % of a core; one < {GOAL_ONE} %",
        met=one < GOAL_ONE and many < GOAL_MESH,
        quick=opts.quick,
        results=results,
    )


if __name__ == "__main__":
    main()
