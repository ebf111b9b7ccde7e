"""A failing CLI, from spawn to exit, with its report handed to the mesh (issue 3).

Goals (DESIGN section 7):

- **local relay present**: the process spools, nudges the relay over its
  Unix socket and exits: p50 <= 50 ms, spawn to exit;
- **no local relay**: it starts its embedded libp2p node, publishes, waits
  for a durable peer's ack and exits: p50 <= 0.8 s and p99 <= 1.5 s.

One real relay (``python -m node relay``, file sink) runs throughout. The
commands are interleaved round by round (order rotated each round):

- ``bare``: ``python -c "raise ValueError('x')"``, no errmesh at all;
- ``local``: ``import node; node.install(); raise ValueError(...)`` with
  ``ERRMESH_STATE_DIR`` = the relay's own state directory (its spool and
  nudge socket) and ``ERRMESH_PEERS`` = the relay;
- ``mesh``: the same with a state directory of its own (no relay socket
  there), ``ERRMESH_PEERS`` = the relay's multiaddr: the embedded path;
- ``mesh-imports`` (every third round): a process that only imports what
  the embedded path imports (``node.pipeline``, ``mesh.gossip``, the parts
  of libp2p ``mesh.libp2p_host.import_libp2p`` loads for a failing CLI), to show
  how much of ``mesh`` is import time.

Children run like ``success_path.py`` runs them: a throwaway venv (no
``.pth`` files), ``PYTHONPATH`` = repo + the development venv's
site-packages, ``.pyc`` files in a private cache, warmed by two untimed runs
of each command.

Every run is checked: exit status 1 (the host's own), no ``errmesh:``
warning on stderr, and the report really reached the relay: for ``local``
the relay's store must count one more occurrence of the signature from its
own origin (polled after the exit, within 5 s; the lag is reported), for
``mesh`` the CLI's spool must be empty (acked) and the relay's store must
count the CLI origin's occurrence. Anything else is a miss.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from _common import emit, parser, summary_ms, table
from _mesh import Relay, Sandbox, read_origin, read_states, spool_pending

LOCAL_P50_MS = 50.0
MESH_P50_MS = 800.0
MESH_P99_MS = 1500.0
MESSAGES = {"local": "local relay present", "mesh": "through the mesh"}
CODE = {
    "bare": "raise ValueError('x')",
    "local": f"import node; node.install(); raise ValueError('{MESSAGES['local']}')",
    "mesh": f"import node; node.install(); raise ValueError('{MESSAGES['mesh']}')",
    "mesh-imports": (
        "import node, node.pipeline, node.embedded, node.relay, mesh.gossip, trio, multiaddr; "
        "mesh.libp2p_host.import_libp2p(lean=True); "
        "from libp2p.pubsub.gossipsub import GossipSub; "
        "from libp2p.pubsub.pubsub import Pubsub; "
        "from libp2p.security.noise.transport import Transport; "
        "from libp2p.tools.anyio_service import background_trio_service"
    ),
}
EVERY = {"bare": 1, "local": 1, "mesh": 1, "mesh-imports": 3}


class Bench:
    """The relay, the children's environments, the checks."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.relay = Relay(sandbox, "relay")
        self.relay.start()
        addr = self.relay.wait_ready(60.0)
        common = {"cluster": "bench", "key_file": sandbox.key, "peers": addr}
        self.cli_state = sandbox.root / "cli" / "state"
        self.envs = {
            "bare": sandbox.env,
            "local": sandbox.child_env(**common, state_dir=self.relay.state_dir),
            "mesh": sandbox.child_env(**common, state_dir=self.cli_state),
            "mesh-imports": sandbox.env,
        }
        self.expected = {"local": 0, "mesh": 0}
        self.misses: dict[str, list[str]] = {"local": [], "mesh": []}
        self.lag_ms: list[float] = []
        self.warnings = 0

    def run(self, name: str) -> float:
        """One child, spawn to exit (seconds); checks what it did."""
        start = time.perf_counter()
        proc = subprocess.run(
            [str(self.sandbox.python), "-c", CODE[name]],
            env=self.envs[name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        elapsed = time.perf_counter() - start
        exited = time.perf_counter()
        stderr = proc.stderr.decode(errors="replace")
        want = 0 if name == "mesh-imports" else 1
        if proc.returncode != want:
            raise RuntimeError(f"{name}: exit {proc.returncode}, wanted {want}:\n{stderr}")
        if "errmesh:" in stderr:
            self.warnings += 1
            print(f"  {name}: errmesh warned: {stderr.strip().splitlines()[-1]}")
        if name in self.expected:
            self.expected[name] += 1
            self.check(name, exited)
        return elapsed

    def relay_count(self, name: str, origin: bytes | None) -> int:
        for state in read_states(self.relay.state_dir).values():
            detail = state.detail
            if detail is not None and detail.message == MESSAGES[name] and origin in state.counts:
                return int(state.counts[origin].count)
        return 0

    def check(self, name: str, exited: float) -> None:
        expected = self.expected[name]
        if name == "local":
            origin = read_origin(self.relay.state_dir)
            deadline = exited + 5.0
            while self.relay_count(name, origin) < expected:
                if time.perf_counter() > deadline:
                    self.misses[name].append(f"run {expected}: not in the relay's store after 5 s")
                    return
                time.sleep(0.005)
            self.lag_ms.append((time.perf_counter() - exited) * 1000.0)
            return
        origin = read_origin(self.cli_state)
        pending = spool_pending(self.cli_state)
        count = self.relay_count(name, origin)
        if pending:
            self.misses[name].append(f"run {expected}: {pending} report(s) left unacked")
        if count < expected:
            self.misses[name].append(f"run {expected}: relay counts {count} of {expected}")


def import_profile(sandbox: Sandbox, env: dict[str, str], code: str) -> dict[str, Any]:
    """``-X importtime`` of ``code`` beyond a bare interpreter: module count, ms, top entries."""

    def rows(snippet: str) -> list[tuple[int, int, str]]:
        proc = subprocess.run(
            [str(sandbox.python), "-X", "importtime", "-c", snippet],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        out = []
        for line in proc.stderr.splitlines():
            if line.startswith("import time:") and "cumulative" not in line:
                self_us, cumulative, name = line[len("import time:") :].split("|", 2)
                out.append((int(self_us), int(cumulative), name[1:]))
        return out

    bare = {name.strip() for _, _, name in rows("pass")}
    mine = [(s, c, n) for s, c, n in rows(code) if n.strip() not in bare]
    top_level = sum(c for _, c, n in mine if not n.startswith(" "))
    heaviest = sorted(mine, key=lambda r: -r[1])[:8]
    return {
        "modules": len(mine),
        "ms": top_level / 1000.0,
        "top": [(n.strip(), c / 1000.0, s / 1000.0) for s, c, n in heaviest],
    }


def measure(sandbox: Sandbox, rounds: int) -> tuple[dict[str, list[float]], Bench, Any]:
    bench = Bench(sandbox)
    for _ in range(2):  # warm-up: caches, the relay's first issue, the CLI's store
        for name in CODE:
            bench.run(name)
    samples: dict[str, list[float]] = {name: [] for name in CODE}
    names = list(CODE)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if r % EVERY[name] == 0:
                samples[name].append(bench.run(name))
    status = bench.relay.status() or {}
    status["imports"] = import_profile(sandbox, bench.envs["local"], CODE["local"])
    return samples, bench, status


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument(
        "--open-network",
        action="store_true",
        help="private_network = false everywhere (to measure what the private network costs)",
    )
    args = cli.parse_args()
    rounds = 6 if args.quick else 40
    sandbox = Sandbox()
    if args.open_network:  # the relay and every child inherit it
        sandbox.env["ERRMESH_PRIVATE_NETWORK"] = "false"
    try:
        samples, bench, status = measure(sandbox, rounds)
    finally:
        sandbox.close()
    stats = {name: summary_ms(v) for name, v in samples.items()}
    network = "open network (private_network = false)" if args.open_network else "private network"
    print(f"failing CLI -> report handed over -> exit: wall time spawn to exit (ms); {network}")
    print(
        f"{rounds} rounds, order rotated each round; mesh-imports every {EVERY['mesh-imports']}rd"
    )
    print(
        "checks: exit status 1, no errmesh warning, report counted by the relay's store "
        "(local: polled after exit; mesh: CLI spool empty = acked)\n"
    )
    rows = [
        [
            name,
            int(s["n"]),
            s["p50"],
            s["p90"],
            s["p99"],
            s["min"],
            s["max"],
            len(bench.misses.get(name, [])) if name in bench.misses else "-",
        ]
        for name, s in stats.items()
    ]
    print(table(["run", "n", "p50", "p90", "p99", "min", "max", "misses"], rows))
    lag = summary_ms([x / 1000.0 for x in bench.lag_ms])
    print(
        f"\nlocal: the relay had merged the report {lag['p50']:.1f} ms (p50) / "
        f"{lag['max']:.1f} ms (max) after the CLI exited"
    )
    print(
        f"local - bare: {stats['local']['p50'] - stats['bare']['p50']:+.1f} ms (p50); "
        f"mesh - mesh-imports: {stats['mesh']['p50'] - stats['mesh-imports']['p50']:+.1f} ms (p50)"
    )
    for name, misses in bench.misses.items():
        for miss in misses[:10]:
            print(f"  miss ({name}): {miss}")
    if status.get("imports"):
        print(f"relay stats at the end: {status.get('stats')}")
        imports = status["imports"]
        print(
            f"\nlocal path imports {imports['modules']} modules beyond a bare interpreter: "
            f"{imports['ms']:.1f} ms in -X importtime; heaviest (cumulative / self ms):"
        )
        for name, cumulative, self_ms in imports["top"]:
            print(f"  {cumulative:7.2f} {self_ms:7.2f}  {name}")
    local_ok = stats["local"]["p50"] <= LOCAL_P50_MS
    mesh_ok = stats["mesh"]["p50"] <= MESH_P50_MS and stats["mesh"]["p99"] <= MESH_P99_MS
    no_miss = not any(bench.misses.values()) and bench.warnings == 0
    print(
        f"\ngoal local: p50 <= {LOCAL_P50_MS:.0f} ms: {stats['local']['p50']:.1f} ms -> "
        f"{'met' if local_ok else 'NOT met'}"
    )
    print(
        f"goal mesh: p50 <= {MESH_P50_MS:.0f} ms, p99 <= {MESH_P99_MS:.0f} ms: "
        f"{stats['mesh']['p50']:.1f} / {stats['mesh']['p99']:.1f} ms -> "
        f"{'met' if mesh_ok else 'NOT met'}"
    )
    print(f"misses: local {len(bench.misses['local'])}, mesh {len(bench.misses['mesh'])}")
    emit(
        "cli_to_acked",
        goal=f"local p50 <= {LOCAL_P50_MS:.0f} ms; mesh p50 <= {MESH_P50_MS:.0f} ms, "
        f"p99 <= {MESH_P99_MS:.0f} ms; no misses",
        met=local_ok and mesh_ok and no_miss,
        quick=args.quick,
        results={
            "rounds": rounds,
            "ms": stats,
            "local_merged_after_exit_ms": lag,
            "misses": bench.misses,
            "warnings": bench.warnings,
            "local_met": local_ok,
            "mesh_met": mesh_ok,
            "relay_stats": status.get("stats"),
            "local_imports": status.get("imports"),
            "headline": f"local p50 {stats['local']['p50']:.0f} ms; mesh p50 "
            f"{stats['mesh']['p50']:.0f} ms, p99 {stats['mesh']['p99']:.0f} ms; bare p50 "
            f"{stats['bare']['p50']:.0f} ms; misses "
            f"{len(bench.misses['local'])}+{len(bench.misses['mesh'])}",
        },
    )


if __name__ == "__main__":
    main()
