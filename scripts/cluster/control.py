"""A cluster kept up by hand: ``up`` starts this controller, ``fault``/``heal``/``down`` talk to it.

The proxy and the test GitHub live inside one process, so a cluster driven
from a shell needs one that stays: ``serve`` (started detached by ``up``)
holds the ``Cluster`` and answers one JSON request per connection on
``<root>/control.sock``: a harness action (``{"action": "partition",
"args": {"groups": [[1, 2], [3, 4, 5]]}}``), ``heal_all``, ``status`` or
``down``. SIGTERM also takes everything down.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from scripts.cluster.cluster import REGISTRY, Cluster
from scripts.cluster.faults import Harness
from scripts.cluster.hosts import ROOT

__all__ = ["REGISTRY", "current_root", "request", "serve", "stale_runs", "start"]

CURRENT = REGISTRY / "current"


def current_root() -> Path:
    try:
        return Path(CURRENT.read_text().strip())
    except FileNotFoundError:
        raise SystemExit("no cluster is up (python -m scripts.cluster up)") from None


def start(root: Path, hosts: int, seed: int, timeout: float = 120.0) -> dict[str, Any]:
    """Start the controller detached; return its first status once the relays agree."""
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "controller.log").open("a")
    subprocess.Popen(
        [sys.executable, "-m", "scripts.cluster", "serve", "--root", str(root),
         "--hosts", str(hosts), "--seed", str(seed)],
        cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (root / "control.sock").exists():
            try:
                return request(root, {"action": "status"})
            except OSError:
                pass
        time.sleep(0.2)
    raise SystemExit(f"the cluster did not come up; see {root / 'controller.log'}")


def request(root: Path, payload: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(root / "control.sock"))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data or b"{}")
    return answer


def _status(cluster: Cluster) -> dict[str, Any]:
    return {
        "run": cluster.run,
        "github": cluster.github.url,
        "leader": getattr(cluster.leader_host(), "name", None),
        "relays": {
            f"h{i}": {
                "alive": h.alive(),
                "stopped": h.stopped,
                "maddr": h.maddr,
                "role": cluster.statuses().get(i, {}).get("role"),
            }
            for i, h in cluster.hosts.items()
        },
        "totals": {f"h{i}": t for i, t in cluster.totals().items()},
        "issues": cluster.github.issues(),
        "proxy": dict(cluster.proxy.stats),
    }


def serve(root: Path, hosts: int, seed: int) -> None:
    stopping = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    with Cluster(root, hosts=hosts, seed=seed) as cluster:
        harness = Harness(cluster, seed)
        CURRENT.write_text(str(root))
        path = root / "control.sock"
        path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            server.listen(8)
            server.settimeout(0.5)
            while not stopping:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    stopping = _answer(conn, cluster, harness)
        path.unlink(missing_ok=True)
        if CURRENT.exists() and CURRENT.read_text().strip() == str(root):
            CURRENT.unlink()


def _answer(conn: socket.socket, cluster: Cluster, harness: Harness) -> bool:
    """One request; True when it asked to go down."""
    conn.settimeout(30)
    line = conn.makefile("rb").readline()
    req = json.loads(line or b"{}")
    action, args = req.get("action"), dict(req.get("args") or {})
    answer: dict[str, Any] = {"ok": True}
    try:
        if action == "down":
            answer["down"] = cluster.run
        elif action == "heal_all":
            harness.heal_all()
        elif action == "cli":
            runs = [cluster.cli(int(args.get("host", 1)), str(args.get("kind", "ValueError")),
                                mode=str(args.get("mode", "local")))
                    for _ in range(int(args.get("count", 1)))]  # fmt: skip
            answer["clis"] = [r.finish().record() for r in runs]
        elif action != "status":
            harness.actions[str(action)](args)
        answer["status"] = _status(cluster)
    except Exception as exc:  # said to the caller; the cluster stays up
        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    conn.sendall(json.dumps(answer, default=str).encode() + b"\n")
    return bool(action == "down")


def stale_runs() -> list[dict[str, Any]]:
    """Registered runs whose process is gone."""
    out = []
    for entry in REGISTRY.glob("*.json"):
        data = json.loads(entry.read_text())
        try:
            os.kill(int(data["pid"]), 0)
        except ProcessLookupError:
            out.append(data)
    return out
