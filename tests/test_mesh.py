"""The mesh end to end: relays, failing CLIs and misbehaving peers as real processes.

Every participant is its own OS process on loopback with the real libp2p
stack (Noise, yamux, gossipsub, strict signing), exactly as deployed:

- a *relay* is ``python -m node ... relay`` (``errmesh relay``) with its own
  state directory ("machine"); every relay of a test writes to one shared
  issues folder, so "one issue per signature" is checked on one place, like
  one GitHub repository;
- a failing *CLI* is ``python -c 'import node; node.install(...); raise ...'``
  with ``ERRMESH_*`` naming its machine's state directory, the relays
  (``ERRMESH_PEERS``) and the cluster key;
- a *raw peer* (``tests/peers/mesh_raw_peer.py``) holds the key but
  publishes whatever frames the test built: garbage, oversized, replayed,
  forged.

What a test reads: a relay's ``relay-status.json`` (rewritten every
heartbeat), its store's ``states`` table (the replicated aggregate), the
spool of each machine, the file sink's ``index.json``, and at the end
``errmesh status --json`` of every relay. Every wait is a condition polled
with a deadline (:func:`wait_until`); the only timed pause is the relay
downtime that one scenario is about.

A report's ``count`` is its origin's cumulative count (merging takes the
maximum per origin), so a later report of the same signature from the same
machine would hide a lost earlier one. Whenever a test proves that stranded
reports arrive, the process that delivers them therefore fails with an
error of a *different* signature.

Measured figures (failover, CLI time to exit, reconnection) are printed;
run with ``-s`` to see them.
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mesh import wire
from mesh.election import Heartbeat
from mesh.report import Report
from node.peer import BAN_AFTER

pytestmark = pytest.mark.slow

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
    """Pending (unacked) reports in a machine's spool."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])
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

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

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
        self, relay: Relay, *, bootstrap: Sequence[Relay] = (), extra: Sequence[str] = ()
    ) -> Relay:
        """Launch (or relaunch, on its last port) ``relay``; wait for its address."""
        args = [
            sys.executable,
            "-m",
            "node",
            "--cluster",
            CLUSTER,
            "--state-dir",
            str(relay.state_dir),
            "--data-dir",
            str(relay.root / "data"),
            "--issues-dir",
            str(self.issues_dir),
            "--window",
            "0",
            "relay",
            "--listen",
            f"/ip4/127.0.0.1/tcp/{relay.port}",
            "--key-file",
            str(self.key),
            *[a for b in bootstrap for a in ("--bootstrap", b.maddr)],
            *extra,
        ]
        with relay.stdout_path.open("w") as out, relay.stderr_path.open("a") as err:
            relay.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=err,
                cwd=relay.root,
                env={**self.env, "ERRMESH_SETTLE": "0.5"},
            )
        self.procs.append(relay.proc)

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
        wait_until(
            lambda: relay.status().get("pid") == relay.proc.pid if relay.proc else False,
            STARTUP,
            f"{relay.name} writes its status",
        )
        return relay

    def status_json(self, relay: Relay) -> dict[str, int]:
        """``errmesh status --json`` of a relay's store: exception type -> occurrences."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "node",
                "--cluster",
                CLUSTER,
                "--state-dir",
                str(relay.state_dir),
                "status",
                "--json",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)["signatures"]
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

    def issues(self) -> dict[str, dict[str, Any]]:
        """Issue entries of the file sink's index, by exception type (one each)."""
        try:
            index = json.loads((self.issues_dir / "index.json").read_text())
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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.kill_all()


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


def start_pair(cluster: Cluster) -> tuple[Relay, Relay]:
    """R1, and R2 bootstrapped to R1; returns once they agree on one leader."""
    r1 = cluster.start_relay(cluster.relay("R1"))
    r2 = cluster.start_relay(cluster.relay("R2"), bootstrap=[r1])
    wait_until(lambda: connected(r1, r2), STARTUP, "R1 and R2 are connected")
    wait_until(lambda: one_leader(r1, r2), STARTUP, "R1 and R2 agree on one leader")
    return r1, r2


def print_figure(text: str) -> None:
    print(f"\n[test_mesh] {text}", flush=True)


# ---------------------------------------------------------------------------
# 1. Five peers


def test_five_peers_agree_on_one_aggregate_one_leader_and_one_issue_per_signature(
    cluster: Cluster,
) -> None:
    r1, r2 = start_pair(cluster)
    m1, m2, m3 = (cluster.machine(f"M{i}") for i in (1, 2, 3))
    # Each machine talks to a different relay (or both): replication must do the rest.
    peers = {m1.name: [r1.maddr], m2.name: [r2.maddr], m3.name: [r1.maddr, r2.maddr]}
    value, lookup = "ValueError", "LookupError"
    rounds = [
        [(m1, value), (m1, lookup), (m2, value), (m2, value), (m3, value), (m3, lookup)],
        [(m1, value), (m1, lookup), (m2, lookup), (m2, value), (m3, value), (m3, lookup)],
    ]
    runs: list[CliRun] = []
    for jobs in rounds:  # six CLIs at once, two per machine sharing its spool
        runs += cluster.run_clis([(m, kind, peers[m.name]) for m, kind in jobs])
    expected = {value: 7, lookup: 5}
    assert dict(cluster.produced) == expected

    for relay in (r1, r2):
        wait_until(
            lambda relay=relay: relay.totals() == expected,
            CONVERGE,
            f"{relay.name}'s aggregate counts every failure",
        )
    wait_until(lambda: cluster.issue_totals() == expected, CONVERGE, "issues carry exact totals")

    assert cluster.status_json(r1) == cluster.status_json(r2) == expected
    leader = one_leader(r1, r2)
    assert leader in (r1.peer_id, r2.peer_id)
    assert [r.status()["role"] for r in (r1, r2)].count("leader") == 1
    cluster.check_one_issue_each(expected)
    assert [m.spool_rows() for m in (m1, m2, m3)] == [0, 0, 0]
    assert r1.status()["rejected"] == r2.status()["rejected"] == {}
    seconds = sorted(run.seconds for run in runs)
    print_figure(
        f"CLI failure -> acked and exited, 6 concurrent on 2 cores: "
        f"p50 {median(seconds):.2f} s, max {seconds[-1]:.2f} s ({len(seconds)} runs)"
    )


# ---------------------------------------------------------------------------
# 2. The leader dies


def test_leader_sigkill_while_errors_keep_coming_loses_nothing(cluster: Cluster) -> None:
    r1, r2 = start_pair(cluster)
    leader_id = one_leader(r1, r2)
    leader, survivor = (r1, r2) if leader_id == r1.peer_id else (r2, r1)
    old_term = leader.status()["term"]
    machines = [cluster.machine(f"M{i}") for i in (1, 2, 3)]
    both = [r1.maddr, r2.maddr]
    kinds = ["ValueError", "LookupError"]

    stop = threading.Event()
    finished: dict[str, list[float]] = {m.name: [] for m in machines}  # start times
    runs: list[CliRun] = []
    errors: list[BaseException] = []

    def feed(machine: Machine, offset: int) -> None:
        try:
            i = offset
            while not stop.is_set():
                run = cluster.start_cli(machine, kinds[i % 2], both).wait()
                run.check_failed_as_itself()
                runs.append(run)
                finished[machine.name].append(run.started)
                i += 1
        except BaseException as exc:
            errors.append(exc)

    feeders = [
        threading.Thread(target=feed, args=(m, i), name=f"feed-{m.name}", daemon=True)
        for i, m in enumerate(machines)
    ]
    for thread in feeders:
        thread.start()
    try:
        wait_until(
            lambda: all(finished[m.name] for m in machines) or errors,
            60,
            "every machine delivered a failure before the kill",
        )
        killed_mono = time.monotonic()
        killed_at = leader.kill()
        took_over = wait_until(
            lambda: (
                (s := survivor.status()).get("role") == "leader"
                and s.get("leader") == survivor.peer_id
                and s
            ),
            10,
            f"{survivor.name} becomes leader",
        )
        failover = took_over["updated_at"] - killed_at
        assert took_over["term"] > old_term
        wait_until(
            lambda: (
                all(sum(t > killed_mono for t in finished[m.name]) >= 2 for m in machines) or errors
            ),
            90,
            "two more failures per machine after the kill",
        )
    finally:
        stop.set()
        for thread in feeders:
            thread.join(CLI_TIMEOUT + 5)
    assert not errors, errors
    print_figure(
        f"leader SIGKILL -> {survivor.name} leads: {failover:.2f} s "
        f"(term {took_over['term']}); {sum(cluster.produced.values())} failures meanwhile"
    )
    assert failover <= 3.0

    # The next errmesh process on each machine re-sends whatever the kill stranded.
    # It fails in a new way, so the totals above prove the earlier reports arrived.
    cluster.run_clis([(m, "ZeroDivisionError", both) for m in machines])
    expected = dict(cluster.produced)
    wait_until(lambda: survivor.totals() == expected, CONVERGE, "the survivor counts every failure")
    wait_until(lambda: cluster.issue_totals() == expected, CONVERGE, "issues carry exact totals")
    assert cluster.status_json(survivor) == expected
    assert [m.spool_rows() for m in machines] == [0, 0, 0]
    assert survivor.status()["role"] == "leader"
    cluster.check_one_issue_each(expected)
    stranded = [r for r in runs if r.seconds > 2.5]
    print_figure(
        f"CLIs during the failover: {len(runs)} runs, p50 {median([r.seconds for r in runs]):.2f} s, "
        f"max {max(r.seconds for r in runs):.2f} s, {len(stranded)} over 2.5 s"
    )


# ---------------------------------------------------------------------------
# 3. A relay restarts after a long time down

#: How long R1 stays down. The issue asks for 30 s; the file still fits CI's budget.
DOWN = 30.0


def test_relay_restarted_after_30s_down_gets_the_stranded_reports(cluster: Cluster) -> None:
    r1, r2 = start_pair(cluster)
    machines = [cluster.machine(f"M{i}") for i in (1, 2, 3)]
    only_r1 = [r1.maddr]  # the CLIs know R1 only: while it is down nobody acks
    cluster.run_clis([(m, "ValueError", only_r1) for m in machines])
    wait_until(lambda: r2.totals() == {"ValueError": 3}, CONVERGE, "R2 has the first failures")

    killed_mono = time.monotonic()
    r1.kill()
    down_runs: list[CliRun] = []
    for kind in ("ValueError", "LookupError"):
        down_runs += cluster.run_clis(
            [(m, kind, only_r1) for m in machines], ERRMESH_ACK_TIMEOUT="1"
        )
    assert [m.spool_rows() for m in machines] == [2, 2, 2], "unacked reports stay spooled"
    wait_until(lambda: r2.status().get("role") == "leader", 10, "R2 leads while R1 is down")
    assert r2.totals() == {"ValueError": 3}

    time.sleep(max(0.0, DOWN - (time.monotonic() - killed_mono)))  # the downtime itself
    cluster.start_relay(r1)  # same state dir (identity), same port
    restarted = r1.listening_at
    wait_until(lambda: connected(r1, r2), 20, "R2 reconnects to the restarted R1")
    reconnect = time.monotonic() - restarted

    # The next CLI on each machine delivers its own report and the stranded ones.
    final_runs = cluster.run_clis([(m, "ZeroDivisionError", only_r1) for m in machines])
    expected = dict(cluster.produced)
    assert expected == {"ValueError": 6, "LookupError": 3, "ZeroDivisionError": 3}
    for relay in (r1, r2):
        wait_until(
            lambda relay=relay: relay.totals() == expected,
            CONVERGE,
            f"{relay.name}'s aggregate converges",
        )
    assert [m.spool_rows() for m in machines] == [0, 0, 0]
    wait_until(lambda: one_leader(r1, r2), 10, "one leader again")
    wait_until(lambda: cluster.issue_totals() == expected, CONVERGE, "issues carry exact totals")
    assert cluster.status_json(r1) == cluster.status_json(r2) == expected
    cluster.check_one_issue_each(expected)
    print_figure(
        f"relay down {DOWN:.0f} s: CLI exit with no relay (ack timeout 1 s) "
        f"p50 {median([r.seconds for r in down_runs]):.2f} s; "
        f"R2 back with R1 {reconnect:.2f} s after R1 listened again; "
        f"next CLI delivered in p50 {median([r.seconds for r in final_runs]):.2f} s"
    )
    assert reconnect <= 8.0


# ---------------------------------------------------------------------------
# 4. A CLI killed before its ack


def kill_while_waiting_for_ack(cluster: Cluster, machine: Machine, kind: str, relay: Relay) -> None:
    """Start a CLI that cannot reach any relay yet and SIGKILL it mid-delivery.

    It is killed once its report is spooled and its libp2p host listens, i.e.
    while it dials and waits for an ack that cannot come.
    """
    unreachable = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{relay.peer_id}"
    run = cluster.start_cli(machine, kind, [unreachable], ERRMESH_ACK_TIMEOUT="60")
    wait_until(
        lambda: machine.spool_rows() == 1 and listening_tcp(run.proc.pid),
        STARTUP,
        f"the CLI on {machine.name} spooled its report and joined the mesh",
    )
    run.proc.send_signal(signal.SIGKILL)
    run.wait()
    assert run.proc.returncode == -signal.SIGKILL
    assert machine.spool_rows() == 1


def test_cli_killed_before_its_ack_is_delivered_by_the_next_process(cluster: Cluster) -> None:
    r1 = cluster.start_relay(cluster.relay("R1"))
    m1, m2 = cluster.machine("M1"), cluster.machine("M2")
    kill_while_waiting_for_ack(cluster, m1, "ValueError", r1)
    kill_while_waiting_for_ack(cluster, m2, "LookupError", r1)
    assert r1.totals() == {}

    # M1: the next failing CLI (another error) brings the stranded report along.
    cluster.run_clis([(m1, "ZeroDivisionError", [r1.maddr])])
    wait_until(
        lambda: r1.totals() == {"ValueError": 1, "ZeroDivisionError": 1},
        CONVERGE,
        "M1's stranded report arrives with its next CLI",
    )
    assert m1.spool_rows() == 0

    # M2: a relay started on that machine drains its spool into the mesh.
    local = cluster.relay("M2")  # same state dir as M2's CLIs
    cluster.start_relay(local, bootstrap=[r1], extra=["--no-leader"])
    wait_until(
        lambda: r1.totals() == {"ValueError": 1, "ZeroDivisionError": 1, "LookupError": 1},
        CONVERGE,
        "M2's stranded report arrives through M2's relay",
    )
    assert m2.spool_rows() == 0
    assert local.status()["role"] == "observer"

    # With that relay running, M2's next CLI only spools and nudges it over its
    # Unix socket (no libp2p): the relay publishes the report for it.
    nudged = cluster.run_clis([(m2, "PermissionError", [r1.maddr])])[0]
    expected = {"ValueError": 1, "ZeroDivisionError": 1, "LookupError": 1, "PermissionError": 1}
    wait_until(lambda: r1.totals() == expected, CONVERGE, "the nudged relay delivers")
    assert m2.spool_rows() == 0
    wait_until(lambda: cluster.issue_totals() == expected, CONVERGE, "one issue each")
    cluster.check_one_issue_each(expected)
    print_figure(f"CLI failure -> exited, with a local relay: {nudged.seconds:.2f} s")


# ---------------------------------------------------------------------------
# 5. A peer without the cluster key


def test_peers_without_the_cluster_key_reach_no_aggregate(cluster: Cluster) -> None:
    r1, r2 = start_pair(cluster)
    m1, m2, m3 = (cluster.machine(f"M{i}") for i in (1, 2, 3))
    other_key = cluster.root / "other.key"
    other_key.write_text(os.urandom(32).hex() + "\n")
    both = [r1.maddr, r2.maddr]
    wrong = cluster.start_cli(m1, "ValueError", both, key=other_key, ERRMESH_ACK_TIMEOUT="1")
    keyless = cluster.start_cli(m2, "LookupError", both, key=None, ERRMESH_ACK_TIMEOUT="1")
    for run in (wrong, keyless):
        run.wait().check_failed_as_itself()

    def counted() -> dict[str, int]:
        total: Counter[str] = Counter()
        for relay in (r1, r2):
            total.update(relay.rejected())
        return dict(total) if total["bad-mac"] and total["missing-mac"] else {}

    rejected = wait_until(counted, CONVERGE, "both rejections are counted")
    assert set(rejected) == {"bad-mac", "missing-mac"}, rejected
    assert m1.spool_rows() == m2.spool_rows() == 1, "nobody acked them"

    # The mesh still works, and nothing of theirs was merged anywhere meanwhile.
    cluster.run_clis([(m3, "ZeroDivisionError", both)])
    for relay in (r1, r2):
        wait_until(
            lambda relay=relay: relay.totals() == {"ZeroDivisionError": 1},
            CONVERGE,
            f"{relay.name} has only the keyed CLI's report",
        )
    assert m3.spool_rows() == 0
    assert cluster.status_json(r1) == cluster.status_json(r2) == {"ZeroDivisionError": 1}
    assert sum(r.status()["stats"].get("reports", 0) for r in (r1, r2)) >= 1
    print_figure(f"keyless peers: rejected {rejected}")


# ---------------------------------------------------------------------------
# 6. Malformed, oversized, replayed and forged messages from a key holder


class RawPeer:
    """``tests/peers/mesh_raw_peer.py``: publishes the frames it is given."""

    def __init__(self, cluster: Cluster, relay: Relay | None) -> None:
        """Start it, bootstrapped to ``relay``; with one, wait until it joined."""
        self.stderr_path = cluster.root / "raw-peer.err"
        bootstrap = ["--bootstrap", relay.maddr] if relay is not None else []
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(RAW_PEER), "--cluster", CLUSTER, *bootstrap],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=cluster.root,
                env=cluster.env,
            )
        cluster.procs.append(self.proc)
        ready = self.expect("ready")
        self.peer_id: str = ready["peer_id"]
        self.addr: str = ready["addrs"][0]
        if relay is not None:
            self.joined()

    def joined(self) -> None:
        """Wait until some peer subscribes to both topics (the peer says so once)."""
        joined = self.expect("joined")
        assert joined["ok"], joined

    def expect(self, event: str) -> dict[str, Any]:
        """The next event; ``event`` it must be (the peer answers commands in order)."""
        stdout = self.proc.stdout
        assert stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(STARTUP)
        line = box[0] if box else ""
        if not line:
            pytest.fail(f"raw peer: no {event!r}\n{self.stderr_path.read_text()[-3000:]}")
        data: dict[str, Any] = json.loads(line)
        assert data["event"] == event, data
        return data

    def publish(self, topic: str, *frames: bytes, flushed: bool = True) -> None:
        """Publish ``frames`` paced; unless told otherwise, they must all leave."""
        assert self.proc.stdin is not None
        command = {"cmd": "publish", "topic": topic, "frames": [f.hex() for f in frames]}
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        done = self.expect("published")
        assert done["count"] == len(frames), done
        assert done["flushed"] or not flushed, done


def a_report(exc_type: str) -> Report:
    return Report(
        origin=os.urandom(16),
        seq=1,
        count=1,
        signature=os.urandom(16),
        kind="exception",
        exc_type=exc_type,
        message=f"{exc_type} from a raw peer",
        host="raw-peer",
        timestamp=time.time(),
    )


def test_malformed_oversized_replayed_and_forged_messages_are_rejected_and_counted(
    cluster: Cluster,
) -> None:
    import msgpack

    r1 = cluster.start_relay(cluster.relay("R1"))
    wait_until(lambda: r1.status().get("role") == "leader", STARTUP, "R1 leads")
    term = r1.status()["term"]
    key = bytes.fromhex(cluster.key.read_text())
    raw = RawPeer(cluster, r1)

    # Replay: the same valid report twice is merged twice and counted once.
    replayed = wire.encode(wire.ReportMsg(report=a_report("PermissionError")), key)
    raw.publish("reports", replayed, replayed)
    wait_until(
        lambda: r1.status().get("stats", {}).get("reports", 0) >= 2,
        CONVERGE,
        "R1 handled both copies",
    )
    assert r1.totals() == {"PermissionError": 1}

    def mac(payload: bytes) -> bytes:
        return payload + wire._mac(key, payload)

    forged_report = wire.ReportMsg(report=a_report("ForgedError"), sender=r1.peer_id)
    forged_heartbeat = wire.HeartbeatMsg(
        heartbeat=Heartbeat(
            peer="12D3KooWForgedForgedForgedForged", priority=99, term=99, leading=True
        )
    )
    bad = {
        "bad-mac": os.urandom(300),
        "undecodable": mac(b"\xc1 not msgpack"),
        "oversized": mac(b"\x00" * (wire.MAX_MESSAGE + 4096)),
        "unknown-version": mac(msgpack.packb({"v": 2, "k": "report"})),
    }
    for reason, frame in bad.items():  # the frames are what they claim to be
        decoded = wire.decode(frame, key)
        assert isinstance(decoded, wire.Rejected) and decoded.reason == reason
    raw.publish("reports", *bad.values(), wire.encode(forged_report, key))
    raw.publish("control", wire.encode(forged_heartbeat, key))

    expected = {reason: 1 for reason in bad} | {"forged-sender": 2}
    wait_until(lambda: r1.rejected() == expected, CONVERGE, "every rejection is counted by reason")

    # The mesh keeps working: a normal CLI's report is merged and acked.
    m1 = cluster.machine("M1")
    cluster.run_clis([(m1, "ValueError", [r1.maddr])])
    assert m1.spool_rows() == 0
    wait_until(
        lambda: r1.totals() == {"PermissionError": 1, "ValueError": 1},
        CONVERGE,
        "the CLI's report is merged; nothing forged is",
    )
    status = r1.status()
    assert status["role"] == "leader" and status["leader"] == r1.peer_id
    assert status["term"] == term, "a forged heartbeat moved the election"
    assert r1.rejected() == expected, "counted once each"
    assert raw.peer_id not in status["banned"]

    # A key holder that keeps sending garbage is banned and disconnected.
    before = sum(expected.values())
    raw.publish("reports", *(os.urandom(100) for _ in range(BAN_AFTER)), flushed=False)
    wait_until(
        lambda: raw.peer_id in r1.status().get("banned", []), CONVERGE, "the raw peer is banned"
    )
    wait_until(
        lambda: raw.peer_id not in r1.status().get("peers", [raw.peer_id]),
        CONVERGE,
        "the banned peer is disconnected",
    )
    # The earlier rejections count toward the ban: it came after BAN_AFTER in all.
    assert r1.rejected()["bad-mac"] >= expected["bad-mac"] + BAN_AFTER - before


def test_a_forged_ack_does_not_make_a_cli_drop_its_report(cluster: Cluster) -> None:
    """An ack naming a durable peer other than its signer is forged (PROTOCOL: ``ack``
    comes from the durable peer that stored the report); it must not cost the report."""
    key = bytes.fromhex(cluster.key.read_text())
    m1 = cluster.machine("M1")
    claimed = "12D3KooWHUcL9gpias9hAGGk1xkyWU6Mp8g5ssmgSoBMMcLwAPJR"  # some relay's id
    raw = RawPeer(cluster, None)
    run = cluster.start_cli(m1, "ValueError", [raw.addr], ERRMESH_ACK_TIMEOUT="3")
    raw.joined()
    with contextlib.closing(sqlite3.connect(m1.db, timeout=5)) as conn:
        origin = bytes(conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0])
        (seq,) = conn.execute("SELECT seq FROM spool").fetchone()
    forged = wire.encode(wire.AckMsg(ids=((origin, seq),), acker=claimed), key)
    deadline = time.monotonic() + CLI_TIMEOUT
    while run.proc.poll() is None and time.monotonic() < deadline:
        raw.publish("control", forged, flushed=False)  # until it surely got there
    run.wait().check_failed_as_itself()
    assert m1.spool_rows() == 1, "the CLI dropped a report no durable peer stored"
