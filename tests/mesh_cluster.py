"""Processes of a test mesh: relays, machines with failing CLIs, and the waits between them.

Shared by the mesh tests (``test_mesh.py``, file sink) and the GitHub mesh
tests (``test_github_mesh.py``). Every participant is its own OS process on
loopback with the real libp2p stack; every wait is a condition polled with a
deadline (:func:`wait_until`), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mesh import wire

ROOT = Path(__file__).resolve().parent.parent
RAW_PEER = Path(__file__).resolve().parent / "peers" / "mesh_raw_peer.py"
CLUSTER = "meshtest"
REPORTS_TOPIC = f"/errmesh/{CLUSTER}/reports/1"  # mesh.gossip.topics_for, without libp2p

POLL = 0.05
STARTUP = 25.0  # a relay imports libp2p and listens, on a busy 2-core machine
CONVERGE = 20.0  # gossip and digests bring every relay to the same aggregate
CLI_TIMEOUT = 30.0  # a failing CLI exits within ack timeout + start-up + flush

#: Distinct errors a CLI can fail with, by exception type (its signature's title).
ERRORS = {
    "ValueError": 'ValueError("boom 42")',
    "LookupError": 'LookupError("no row 7 in table users")',
    "ZeroDivisionError": 'ZeroDivisionError("final step 3")',
    "PermissionError": 'PermissionError("cannot write spool 9")',
}

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``predicate`` every 50 ms until it returns something truthy; return it.

    Fails the test with ``what`` (and the last value seen) at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {timeout} s: {what} (last: {value!r})")
        time.sleep(POLL)


def read_totals(db: Path) -> dict[str, int]:
    """A store's aggregate: exception type -> total occurrences.

    Read straight from the ``states`` table (cheap enough to poll); a
    second signature with the same type would show up as ``<type>+dup``.
    """
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        rows = conn.execute("SELECT state FROM states").fetchall()
    out: dict[str, int] = {}
    for (blob,) in rows:
        state = wire.decode_state(bytes(blob))
        name = state.detail.exc_type if state.detail is not None else state.signature.hex()
        while name in out:
            name += "+dup"
        out[name] = state.total
    return out


def spool_rows(db: Path) -> int:
    """Pending (unacked) reports in a machine's spool, hand-over rows included."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            return sum(  # spooled, and handed over to a local relay but not yet taken
                int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("spool", "handover")
            )
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0  # the file exists, its schema is being created right now
            raise


def title_kind(title: str) -> str:
    """Which of :data:`ERRORS` an issue or status title is about."""
    kinds = [k for k in ERRORS if f" {k}:" in title]
    assert len(kinds) == 1, f"unexpected title {title!r}"
    return kinds[0]


def listening_tcp(pid: int) -> bool:
    """Whether process ``pid`` has a listening TCP socket (its libp2p host is up)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[len("socket:[") : -1])
    except OSError:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    return True
    return False


def closed_port() -> int:
    """A loopback port nothing listens on (dials to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------
# Processes


@dataclasses.dataclass
class Relay:
    """One ``errmesh relay`` process and its machine's folders."""

    name: str
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    peer_id: str = ""
    maddr: str = ""
    listening_at: float = 0.0  # time.monotonic() when it printed its address
    state: Path | None = None  # another relay's state directory (default: its own)
    own_issues: bool = False  # its own issues folder (the default), not the cluster's shared one

    @property
    def state_dir(self) -> Path:
        return self.state or self.root / "state"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def own_issues_dir(self) -> Path:
        """The file sink's folder when none is configured: ``<data_dir>/<cluster>/issues``."""
        return self.data_dir / CLUSTER / "issues"

    @property
    def status_path(self) -> Path:
        return self.state_dir / CLUSTER / "relay-status.json"

    @property
    def db(self) -> Path:
        return self.state_dir / CLUSTER / "errmesh.sqlite3"

    @property
    def stdout_path(self) -> Path:
        return self.root / "relay.out"

    @property
    def stderr_path(self) -> Path:
        return self.root / "relay.err"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        """The last status the relay wrote ({} before the first one)."""
        try:
            data: dict[str, Any] = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def totals(self) -> dict[str, int]:
        return read_totals(self.db)

    def rejected(self) -> dict[str, int]:
        return dict(self.status().get("rejected", {}))

    def kill(self) -> float:
        """SIGKILL the relay; returns the wall-clock time of the kill."""
        assert self.proc is not None
        killed_at = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return killed_at

    def story(self) -> str:
        def tail(path: Path) -> str:
            return path.read_text(errors="replace")[-2500:] if path.exists() else ""

        return (
            f"--- {self.name} stdout:\n{tail(self.stdout_path)}\n"
            f"--- {self.name} stderr:\n{tail(self.stderr_path)}\n"
            f"--- {self.name} status:\n{json.dumps(self.status(), indent=1)}"
        )


@dataclasses.dataclass
class Machine:
    """A machine that runs failing CLIs (its own state directory and spool)."""

    name: str
    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def db(self) -> Path:
        return self.state_dir / CLUSTER / "errmesh.sqlite3"

    def spool_rows(self) -> int:
        return spool_rows(self.db)


@dataclasses.dataclass
class CliRun:
    """One failing CLI process."""

    machine: Machine
    kind: str
    proc: subprocess.Popen[str]
    started: float
    seconds: float = 0.0
    stderr: str = ""

    def wait(self, timeout: float = CLI_TIMEOUT) -> CliRun:
        _, self.stderr = self.proc.communicate(timeout=timeout)
        self.seconds = time.monotonic() - self.started
        return self

    def check_failed_as_itself(self) -> None:
        """The host program exits with its own status and its own traceback."""
        assert self.proc.returncode == 1, (self.proc.returncode, self.stderr[-2000:])
        assert f"{self.kind}:" in self.stderr, self.stderr[-2000:]


class Cluster:
    """A cluster's processes in a temporary folder; everything is killed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.issues_dir = root / "issues"
        self.key = root / "cluster.key"
        self.procs: list[subprocess.Popen[Any]] = []
        self.produced: Counter[str] = Counter()
        self._lock = threading.Lock()
        (root / "home").mkdir()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ERRMESH_", "IPFS_", "GITHUB_", "GH_", "XDG_"))
        }
        self.env.update(HOME=str(root / "home"), PYTHONPATH=str(ROOT))
        done = subprocess.run(
            [sys.executable, "-m", "node", "keygen", str(self.key)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert self.key.stat().st_mode & 0o777 == 0o600

    # -- relays -------------------------------------------------------------

    def relay(self, name: str) -> Relay:
        root = self.root / name
        root.mkdir(exist_ok=True)
        return Relay(name=name, root=root)

    def start_relay(
        self,
        relay: Relay,
        *,
        bootstrap: Sequence[Relay] = (),
        extra: Sequence[str] = (),
        window: float = 0.0,
        env: Mapping[str, str] | None = None,
        refused: bool = False,
        key: Path | None = None,
        clock_offset: float = 0.0,
        prefix: Sequence[str] = (),
    ) -> Relay:
        """Launch (or relaunch, on its last port) ``relay``; wait for its address.

        ``env`` adds ``ERRMESH_*`` settings (a GitHub sink, its budget) to the
        relay's environment; ``window`` is the bundle window in seconds.
        ``refused``: the relay must exit at start-up instead (within STARTUP).
        ``key``: this relay's own key file (its host's copy), else the cluster's.
        ``clock_offset``: seconds the relay's wall clock is off (through
        ``scripts/cluster/clockshim.py``; its monotonic clocks stay true).
        ``prefix``: a command the relay runs under (``unshare`` with a mount of
        its own); its status file may then be out of sight, so this waits for
        its address only and callers ask its status server.
        """
        shim = ["-m", "scripts.cluster.clockshim", f"{clock_offset:g}"] if clock_offset else []
        args = [
            *prefix,
            sys.executable,
            *shim,
            "-m",
            "node",
            "--cluster",
            CLUSTER,
            "--state-dir",
            str(relay.state_dir),
            "--data-dir",
            str(relay.data_dir),
            *([] if relay.own_issues else ["--issues-dir", str(self.issues_dir)]),
            "--window",
            f"{window:g}",
            "relay",
            "--listen",
            f"/ip4/127.0.0.1/tcp/{relay.port}",
            "--key-file",
            str(key or self.key),
            *[a for b in bootstrap for a in ("--bootstrap", b.maddr)],
            *extra,
        ]
        with relay.stdout_path.open("w") as out, relay.stderr_path.open("a") as err:
            relay.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=err,
                cwd=relay.root,
                env={**self.env, "ERRMESH_SETTLE": "0.5", **(env or {})},
            )
        self.procs.append(relay.proc)
        if refused:
            try:
                relay.proc.wait(STARTUP)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{relay.name} started instead of exiting\n{relay.story()}")
            return relay

        def listening() -> list[str]:
            if relay.proc is not None and relay.proc.poll() is not None:
                pytest.fail(f"{relay.name} exited with {relay.proc.returncode}\n{relay.story()}")
            lines = relay.stdout_path.read_text().splitlines()
            return [line for line in lines if line.startswith("listening on ")]

        lines = wait_until(listening, STARTUP, f"{relay.name} prints its address")
        relay.listening_at = time.monotonic()
        first = relay.stdout_path.read_text().splitlines()[0]
        assert first.startswith("errmesh relay "), first
        peer_id = first.removeprefix("errmesh relay ").strip()
        assert not relay.peer_id or relay.peer_id == peer_id, "a restarted relay keeps its id"
        relay.peer_id = peer_id
        relay.maddr = lines[0].removeprefix("listening on ").strip()
        assert relay.maddr.endswith(f"/p2p/{peer_id}"), relay.maddr
        port = int(relay.maddr.split("/tcp/")[1].split("/")[0])
        assert not relay.port or relay.port == port
        relay.port = port
        if prefix:
            return relay
        wait_until(
            lambda: relay.status().get("pid") == relay.proc.pid if relay.proc else False,
            STARTUP,
            f"{relay.name} writes its status",
        )
        return relay

    def errmesh(self, relay: Relay, *args: str) -> subprocess.CompletedProcess[str]:
        """The real ``errmesh`` CLI on ``relay``'s machine (its state and data folders)."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "node",
                "--cluster",
                CLUSTER,
                "--state-dir",
                str(relay.state_dir),
                "--data-dir",
                str(relay.data_dir),
                *([] if relay.own_issues else ["--issues-dir", str(self.issues_dir)]),
                *args,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def status_rows(self, relay: Relay) -> list[dict[str, Any]]:
        """``errmesh status --json`` of a relay's machine: its store's signature rows."""
        done = self.errmesh(relay, "status", "--json")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)["signatures"]
        return rows

    def status_json(self, relay: Relay) -> dict[str, int]:
        """``errmesh status --json`` of a relay's store: exception type -> occurrences."""
        rows = self.status_rows(relay)
        out = {title_kind(row["title"]): row["occurrences"] for row in rows}
        assert len(out) == len(rows), rows
        return out

    # -- machines and their failing CLIs ------------------------------------

    def machine(self, name: str) -> Machine:
        root = self.root / name
        root.mkdir(exist_ok=True)
        return Machine(name=name, root=root)

    def start_cli(
        self,
        machine: Machine,
        kind: str,
        peers: Sequence[str],
        *,
        key: Path | bool | None = True,
        **env: str,
    ) -> CliRun:
        """Launch a CLI on ``machine`` that fails with ``ERRORS[kind]``.

        ``key``: True for the cluster key, a path for another one, None for none.
        The failure counts as produced once the process is started: it spools
        its report before anything else (a killed CLI's report included).
        """
        cli_env = {
            **self.env,
            "ERRMESH_CLUSTER": CLUSTER,
            "ERRMESH_STATE_DIR": str(machine.state_dir),
            "ERRMESH_DATA_DIR": str(machine.root / "data"),
            "ERRMESH_PEERS": ",".join(peers),
            **env,
        }
        if key is True:
            cli_env["ERRMESH_KEY_FILE"] = str(self.key)
        elif key:
            cli_env["ERRMESH_KEY_FILE"] = str(key)
        code = f'import node; node.install(app="meshtest"); raise {ERRORS[kind]}'
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=machine.root,
            env=cli_env,
        )
        with self._lock:
            self.procs.append(proc)
            self.produced[kind] += 1
        return CliRun(machine=machine, kind=kind, proc=proc, started=started)

    def run_clis(
        self, jobs: Sequence[tuple[Machine, str, Sequence[str]]], **env: str
    ) -> list[CliRun]:
        """Run CLIs concurrently; wait for all; each must fail as itself."""
        runs = [self.start_cli(m, kind, peers, **env) for m, kind, peers in jobs]
        for run in runs:
            run.wait().check_failed_as_itself()
        return runs

    # -- the shared issues folder ------------------------------------------

    def issues(self, folder: Path | None = None) -> dict[str, dict[str, Any]]:
        """Issue entries of a file sink's index (the shared one by default), by exception type."""
        try:
            index = json.loads(((folder or self.issues_dir) / "index.json").read_text())
        except (OSError, ValueError):
            return {}
        entries = list(index["issues"].values())
        out = {title_kind(e["title"]): e for e in entries}
        assert len(out) == len(entries), f"two issues for one signature: {entries}"
        return out

    def issue_totals(self) -> dict[str, int]:
        return {kind: entry["total"] for kind, entry in self.issues().items()}

    def check_one_issue_each(self, expected: dict[str, int]) -> None:
        """One open issue per signature, numbered 1..n: no issue was opened twice."""
        issues = self.issues()
        assert sorted(issues) == sorted(expected)
        assert sorted(e["number"] for e in issues.values()) == list(range(1, len(expected) + 1))
        assert all(e["state"] == "open" for e in issues.values())

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError, ValueError):
                        pipe.close()


def one_leader(*relays: Relay) -> str | None:
    """The leader id if exactly one of ``relays`` leads and all agree on it."""
    statuses = [r.status() for r in relays]
    leaders = [s for s in statuses if s.get("role") == "leader"]
    agreed = {s.get("leader") for s in statuses}
    if len(leaders) == 1 and agreed == {leaders[0]["peer_id"]}:
        return str(leaders[0]["peer_id"])
    return None


def connected(a: Relay, b: Relay) -> bool:
    return b.peer_id in a.status().get("peers", []) and a.peer_id in b.status().get("peers", [])


def start_pair(cluster: Cluster, env: Mapping[str, str] | None = None) -> tuple[Relay, Relay]:
    """R1, and R2 bootstrapped to R1; returns once they agree on one leader."""
    r1 = cluster.start_relay(cluster.relay("R1"), env=env)
    r2 = cluster.start_relay(cluster.relay("R2"), bootstrap=[r1], env=env)
    wait_until(lambda: connected(r1, r2), STARTUP, "R1 and R2 are connected")
    wait_until(lambda: one_leader(r1, r2), STARTUP, "R1 and R2 agree on one leader")
    return r1, r2


def print_figure(text: str) -> None:
    print(f"\n[test_mesh] {text}", flush=True)
