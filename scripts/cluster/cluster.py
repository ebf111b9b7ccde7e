"""A cluster of hosts in network namespaces: up, drive, sample, down.

``Cluster`` owns everything a run makes (namespaces, mounts, the proxy and
the test GitHub in this process, the relays and CLIs as processes) and
undoes all of it in :meth:`down`, whatever happened before: use it as a
context manager. Runs are named by a random id (``em<run>-*`` namespaces);
a registry file per run under ``/run/errmesh-cluster`` lets
``python -m scripts.cluster down --stale`` remove the leftovers of a run
whose process died.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from scripts.cluster.github import REPO, ClusterGitHub, token_of
from scripts.cluster.hosts import PORT, ROOT, CliRun, Host
from scripts.cluster.netns import Topology, destroy_namespaces
from scripts.cluster.proxy import Proxy

__all__ = ["REGISTRY", "Cluster", "ClusterTimeout", "poll"]

REGISTRY = Path("/run/errmesh-cluster")
POLL = 0.1
T = TypeVar("T")


class ClusterTimeout(AssertionError):
    """A condition the cluster did not reach by its deadline."""


def poll(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """``predicate()`` every 100 ms until truthy (returned); ClusterTimeout at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ClusterTimeout(f"not within {timeout:g} s: {what} (last: {value!r})")
        time.sleep(POLL)


class Cluster:
    """``hosts`` hosts with a relay each, the proxy between them, the test GitHub."""

    def __init__(
        self,
        root: Path,
        *,
        hosts: int = 5,
        seed: int = 0,
        window: float = 3.0,
        settle: float = 1.0,
        tmpfs_mb: int | None = None,
        run: str | None = None,
    ) -> None:
        self.root = root
        self.run = run or secrets.token_hex(3)
        self.topology = Topology(self.run, hosts)
        self.seed = seed
        self.window = window
        self.settle = settle
        self.tmpfs_mb = tmpfs_mb
        self.github = ClusterGitHub(hosts)
        self.proxy = Proxy(self.topology, PORT, seed=seed)
        #: Hosts' folders: short, because a relay's socket path must fit AF_UNIX's
        #: 108 bytes (copied into ``root`` and removed at the end).
        self.hosts_dir = Path(tempfile.gettempdir()) / f"em{self.run}"
        self.key = root / "cluster.key"
        self.intents = root / "history" / "intents.jsonl"
        self.hosts: dict[int, Host] = {}
        self.clis: list[CliRun] = []
        self.events: list[dict[str, Any]] = []  # what the harness did, when
        self.samples: list[dict[str, Any]] = []  # what the relays said, every POLL
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()
        self._lock = threading.Lock()
        self._cli_seq = 0

    # -- up and down ------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, *, timeout: float = 90.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.intents.parent.mkdir(parents=True, exist_ok=True)
        self._register()
        self.topology.create()
        env = self._base_env()
        subprocess.run(
            [sys.executable, "-m", "node", "keygen", str(self.key)],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        url = self.github.start(self.topology.bridge_ns)
        env.update(ERRMESH_REPO=REPO, ERRMESH_GITHUB_API_URL=url, ERRMESH_SETTLE=f"{self.settle:g}")
        for i in self.topology.indices:
            host = Host(i, self.hosts_dir / f"h{i}", self.topology, dict(env), self.key)
            host.env["GITHUB_TOKEN"] = token_of(i)
            host.priority = 0
            if self.tmpfs_mb:
                host.mount_tmpfs(self.tmpfs_mb)
            host.make_identity()
            self.hosts[i] = host
        self.proxy.start()
        for host in self.hosts.values():
            host.start_relay(self.bootstrap_for(host), window=self.window)
        self.event("up", hosts=len(self.hosts), github=url)
        self._start_sampler()
        self.wait_ready(timeout)

    def down(self) -> list[str]:
        """Undo everything; returns what could not be undone (never raises)."""
        problems: list[str] = []
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)
        for run in self.clis:
            if run.proc.poll() is None:
                run.proc.kill()
        for host in self.hosts.values():
            if host.proc is not None and host.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    host.proc.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.proc.wait(10)
        for run in self.clis:
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
                run.proc.communicate(timeout=5)
        for step in (self.proxy.stop, self.github.stop):
            try:
                step()
            except Exception as exc:  # keep undoing the rest
                problems.append(f"{step.__qualname__}: {exc!r}")
        problems += destroy_namespaces(self.topology.namespaces)
        for host in self.hosts.values():
            host.unmount()
            self._keep_logs(host)
        shutil.rmtree(self.hosts_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (REGISTRY / f"{self.run}.json").unlink()
        return problems

    def _keep_logs(self, host: Host) -> None:
        kept = self.root / host.name
        kept.mkdir(parents=True, exist_ok=True)
        for name in ("relay.out", "relay.err"):
            with contextlib.suppress(OSError):
                shutil.copy(host.root / name, kept / name)

    def _register(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        entry = {
            "run": self.run,
            "pid": os.getpid(),
            "root": str(self.root),
            "hosts_dir": str(self.hosts_dir),
            "namespaces": self.topology.namespaces,
            "mounts": [str(self.hosts_dir / f"h{i}" / "state") for i in self.topology.indices]
            if self.tmpfs_mb
            else [],
        }
        (REGISTRY / f"{self.run}.json").write_text(json.dumps(entry))

    def _base_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ERRMESH_", "IPFS_", "GITHUB_", "GH_", "XDG_"))
        }
        (self.root / "home").mkdir(exist_ok=True)
        env.update(HOME=str(self.root / "home"), PYTHONPATH=str(ROOT), ERRMESH_GITHUB_TIMEOUT="5")
        return env

    def bootstrap_for(self, host: Host) -> list[str]:
        return [h.maddr for h in self.hosts.values() if h is not host]

    def wait_ready(self, timeout: float = 90.0) -> str:
        """Every live relay up, connected to another and agreeing on one leader."""
        poll(
            lambda: all(h.ready() for h in self.hosts.values() if not h.stopped and h.proc),
            timeout,
            "every relay writes its status",
        )
        try:
            return poll(self.agreed_leader, timeout, "the relays agree on one leader")
        except ClusterTimeout as exc:
            raise ClusterTimeout(f"{exc}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """Who thinks what, and the proxy's health: for a cluster that will not settle."""
        roles = {
            i: (s.get("role"), s.get("term"), len(s.get("peers", [])))
            for i, s in self.statuses().items()
        }
        proxy = "alive" if self.proxy.alive() else f"dead: {self.proxy._error!r}"
        return (
            f"(role, term, peers) by host: {roles}; proxy {proxy}, "
            f"stats {dict(self.proxy.stats)}\n{self.proxy.last_error}"
        )

    # -- what the relays say ---------------------------------------------------------

    def statuses(self) -> dict[int, dict[str, Any]]:
        return {i: h.status() for i, h in self.hosts.items() if h.alive() and not h.stopped}

    def agreed_leader(self, among: Sequence[int] | None = None) -> str | None:
        """The leader's peer id if exactly one of the (live) hosts leads and all agree."""
        statuses = self.statuses()
        if among is not None:
            statuses = {i: s for i, s in statuses.items() if i in among}
        if not statuses:
            return None
        leaders = [s for s in statuses.values() if s.get("role") == "leader"]
        agreed = {s.get("leader") for s in statuses.values()}
        if len(leaders) == 1 and agreed == {leaders[0].get("peer_id")}:
            return str(leaders[0]["peer_id"])
        return None

    def host_of(self, peer_id: str | None) -> Host | None:
        return next((h for h in self.hosts.values() if h.peer_id == peer_id), None)

    def leader_host(self) -> Host | None:
        return self.host_of(self.agreed_leader())

    def totals(self) -> dict[int, dict[str, int]]:
        """Each relay's aggregate: exception type -> total ('type+dup' for a second signature)."""
        out: dict[int, dict[str, int]] = {}
        for i, host in self.hosts.items():
            totals: dict[str, int] = {}
            for state in host.states().values():
                name = state["kind"]
                while name in totals:
                    name += "+dup"
                totals[name] = state["total"]
            out[i] = totals
        return out

    def _start_sampler(self) -> None:
        def sample() -> None:
            while not self._sampling.wait(0.25):
                now = time.time()
                for i, host in self.hosts.items():
                    status = host.status() if host.alive() else {}
                    totals = {s["kind"]: s["total"] for s in host.states().values()}
                    with self._lock:
                        self.samples.append(
                            {
                                "time": now,
                                "host": i,
                                "alive": host.alive(),
                                "stopped": host.stopped,
                                "role": status.get("role"),
                                "term": status.get("term"),
                                "leader": status.get("leader"),
                                "peers": len(status.get("peers", [])),
                                "totals": totals,
                            }
                        )

        self._sampler = threading.Thread(target=sample, name="cluster-sampler", daemon=True)
        self._sampler.start()

    # -- doing things -------------------------------------------------------------

    def event(self, action: str, **details: Any) -> dict[str, Any]:
        entry = {"time": time.time(), "action": action, **details}
        with self._lock:
            self.events.append(entry)
        return entry

    def cli(self, host: int, kind: str, *, mode: str = "local") -> CliRun:
        """Start one failing CLI on ``host``; :meth:`finish_clis` waits for them."""
        target = self.hosts[host]
        peers = [target.maddr, *(h.maddr for h in self.hosts.values() if h is not target)][:3]
        with self._lock:
            self._cli_seq += 1
            ident = f"c{self._cli_seq}"
        run = target.start_cli(ident, kind, peers, self.intents, mode=mode)
        self.clis.append(run)
        return run

    def finish_clis(self, timeout: float = 60.0) -> list[CliRun]:
        for run in self.clis:
            if run.returncode is None:
                run.finish(timeout)
        return self.clis

    def intents_written(self) -> list[dict[str, Any]]:
        try:
            lines = self.intents.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def restart(self, host: int) -> None:
        target = self.hosts[host]
        if target.alive():
            target.signal(signal.SIGKILL)
        target.start_relay(self.bootstrap_for(target), window=self.window)
        self.event("restart", host=host)
