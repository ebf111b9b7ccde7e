"""Helpers for the mesh benchmarks (issue 3): a sandbox, relays, /proc readings.

Nothing here measures anything. A :class:`Sandbox` is a temp directory with
a cluster key and a child interpreter set up like ``success_path.py`` does
(a throwaway venv without ``.pth`` files, the repo and the development
venv's site-packages on ``PYTHONPATH``, ``.pyc`` files written to a private
``PYTHONPYCACHEPREFIX`` and warmed before anything is timed). Every process
it spawns is tracked and killed by :meth:`Sandbox.close`, which the scripts
call in ``finally`` blocks.

Two kinds of peer run in it:

- :class:`Relay`: the real ``python -m node ... relay`` command;
- :class:`TimedRelay`: ``_timed_relay.py``, the same relay (``serve_relay``
  and ``MeshPeer``) with a thin subclass that logs when reports arrive and
  counts messages, driven by JSON commands on stdin.

Relay stores are read directly (SQLite, read only) to check what arrived.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from _common import REPO

HERE = Path(__file__).resolve().parent
CLUSTER = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Everything a process joining the mesh imports (compiled once, untimed).
_WARM_IMPORTS = (
    "import libp2p, multiaddr, trio, click; "
    "from libp2p.pubsub.gossipsub import GossipSub; "
    "from libp2p.pubsub.pubsub import Pubsub; "
    "from libp2p.security.noise.transport import Transport; "
    "from libp2p.tools.anyio_service import background_trio_service; "
    "from libp2p.network.config import ConnectionConfig; "
    "from libp2p.crypto.x25519 import create_new_key_pair; "
    "from libp2p.identity_utils import load_identity; "
    "import node.relay, node.embedded, node.pipeline, node.cli, mesh.gossip, "
    "github_sink.file_sink"
)


def wait_for(
    condition: Callable[[], Any], within: float, every: float = 0.01, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {within} s")
        time.sleep(every)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (``/proc/<pid>/stat``), NaN if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a live process, in KiB."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def loopback_bytes() -> int:
    """Bytes received on ``lo`` so far (``/proc/net/dev``; every process counts)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])
    return 0


def store_path(state_dir: Path, cluster: str = CLUSTER) -> Path:
    return state_dir / cluster / "errmesh.sqlite3"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0)
    conn.execute("PRAGMA query_only = ON")
    return conn


def read_states(state_dir: Path, cluster: str = CLUSTER) -> dict[bytes, Any]:
    """A store's aggregate, signature -> ``SigState`` (empty if there is no store yet)."""
    from mesh import wire

    path = store_path(state_dir, cluster)
    if not path.exists():
        return {}
    with contextlib.closing(_connect(path)) as conn:
        rows = conn.execute("SELECT sig, state FROM states").fetchall()
    return {bytes(sig): wire.decode_state(bytes(state)) for sig, state in rows}


def read_totals(state_dir: Path, cluster: str = CLUSTER) -> dict[bytes, int]:
    """Signature -> total occurrences, as a store holds them."""
    return {sig: s.total for sig, s in read_states(state_dir, cluster).items()}


def read_origin(state_dir: Path, cluster: str = CLUSTER) -> bytes | None:
    path = store_path(state_dir, cluster)
    if not path.exists():
        return None
    with contextlib.closing(_connect(path)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()
    return None if row is None else bytes(row[0])


def spool_pending(state_dir: Path, cluster: str = CLUSTER) -> int:
    path = store_path(state_dir, cluster)
    if not path.exists():
        return 0
    with contextlib.closing(_connect(path)) as conn:  # spooled + handed over, not yet taken
        return sum(
            int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("spool", "handover")
        )


class Child:
    """One spawned process; stdout lines are collected by a thread."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
            )
        self.lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"{name}-out", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                self.lines.put((time.time(), line.rstrip("\n")))
        except (OSError, ValueError):
            pass
        finally:
            self.lines.put(None)

    def next_line(self, within: float) -> tuple[float, str]:
        """The next stdout line (with the wall time it was read); raises at the deadline."""
        try:
            item = self.lines.get(timeout=max(0.0, within))
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no output within {within:.1f} s") from None
        if item is None:
            self.lines.put(None)
            raise RuntimeError(f"{self.name} exited ({self.process.poll()}): {self.stderr_tail()}")
        return item

    def stderr_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 2 s; reaps the process."""
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.process.wait(2.0)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5.0)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Sandbox:
    """A temp directory, a cluster key, a warmed child interpreter; tracks children."""

    def __init__(self, prefix: str = "errmesh-bench-mesh-") -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.children: list[Child] = []
        self.key = self.root / "cluster.key"
        self.issues_dir = self.root / "issues"
        self.counter = 0
        try:
            self.python = self._make_python()
            self.env = self._make_env()
            self._run([str(self.python), "-m", "node", "keygen", str(self.key)])
            self._run(
                [str(self.python), "-m", "compileall", "-q"]
                + [str(REPO / p) for p in ("mesh", "node", "github_sink")]
                + [str(HERE)]
            )
            self._run([str(self.python), "-c", _WARM_IMPORTS])
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _run(self, argv: list[str]) -> None:
        subprocess.run(argv, env=self.env, check=True, stdout=subprocess.DEVNULL)

    def _make_python(self) -> Path:
        venv = self.root / "venv"
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return venv / "bin" / "python"

    def _make_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ERRMESH_"))}
        env.pop("IPFS_REPO", None)
        site_packages = sysconfig.get_paths()["purelib"]
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), site_packages])
        env["PYTHONPYCACHEPREFIX"] = str(self.root / "pycache")
        env["XDG_CONFIG_HOME"] = str(self.root / "config")  # no user config file
        return env

    def child_env(self, **settings: object) -> dict[str, str]:
        """The children's environment plus ``ERRMESH_<NAME>`` for each setting."""
        env = dict(self.env)
        for name, value in settings.items():
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            env[f"ERRMESH_{name.upper()}"] = str(value)
        return env

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        self.counter += 1
        child = Child(name, argv, env or self.env, self.root / f"{name}.{self.counter}.stderr")
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            child.kill(signal.SIGKILL)
        for child in self.children:
            child.stop()
        if os.environ.get("ERRMESH_BENCH_KEEP"):  # the children's stderr logs, stores
            print(f"kept {self.root}", file=sys.stderr)
            return
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Relay:
    """``python -m node relay`` in its own state and data directories."""

    def __init__(
        self,
        sandbox: Sandbox,
        name: str,
        *,
        priority: int | None = None,
        window: float = 0.0,
        settings: dict[str, object] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.name = name
        self.dir = sandbox.root / name
        self.state_dir = self.dir / "state"
        self.data_dir = self.dir / "data"
        self.priority = priority
        self.window = window
        self.settings = {"settle": 0.5, **(settings or {})}
        self.child: Child | None = None
        self.addr = ""
        self.peer_id = ""

    @property
    def status_path(self) -> Path:
        return self.state_dir / CLUSTER / "relay-status.json"

    def argv(self, bootstrap: Iterable[str]) -> list[str]:
        argv = [
            str(self.sandbox.python),
            "-m",
            "node",
            "--cluster",
            CLUSTER,
            "--state-dir",
            str(self.state_dir),
            "--data-dir",
            str(self.data_dir),
            "--issues-dir",
            str(self.sandbox.issues_dir),
            "--window",
            str(self.window),
            "relay",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--key-file",
            str(self.sandbox.key),
        ]
        for addr in bootstrap:
            argv += ["--bootstrap", addr]
        if self.priority is not None:
            argv += ["--priority", str(self.priority)]
        return argv

    def start(self, bootstrap: Iterable[str] = ()) -> Relay:
        """Spawn it; :meth:`wait_ready` returns its address."""
        with contextlib.suppress(FileNotFoundError):
            self.status_path.unlink()
        self.child = self.sandbox.spawn(
            self.name, self.argv(bootstrap), self.sandbox.child_env(**self.settings)
        )
        return self

    def wait_ready(self, within: float = 30.0) -> str:
        assert self.child is not None
        deadline = time.monotonic() + within
        while True:
            _, line = self.child.next_line(deadline - time.monotonic())
            if line.startswith("errmesh relay "):
                self.peer_id = line.split()[-1]
            if line.startswith("listening on "):
                self.addr = line.split()[-1]
                return self.addr

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def status(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None
        return data

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.child.process.wait(5.0)


class TimedRelay:
    """``_timed_relay.py``: a real relay that reports arrivals as JSON lines."""

    def __init__(self, sandbox: Sandbox, name: str, *, settings: dict[str, object] | None = None):
        self.sandbox = sandbox
        self.name = name
        self.dir = sandbox.root / name
        self.state_dir = self.dir / "state"
        self.settings = {"settle": 0.5, **(settings or {})}
        self.child: Child | None = None
        self.addr = ""
        self.peer_id = ""
        self.events: list[dict[str, Any]] = []

    def start(self, bootstrap: Iterable[str] = (), profile: Path | None = None) -> TimedRelay:
        argv = [
            str(self.sandbox.python),
            str(HERE / "_timed_relay.py"),
            "--cluster",
            CLUSTER,
            "--state-dir",
            str(self.state_dir),
            "--data-dir",
            str(self.dir / "data"),
            "--issues-dir",
            str(self.sandbox.issues_dir),
            "--key-file",
            str(self.sandbox.key),
        ]
        for addr in bootstrap:
            argv += ["--bootstrap", addr]
        if profile is not None:
            argv += ["--profile", str(profile)]
        self.child = self.sandbox.spawn(self.name, argv, self.sandbox.child_env(**self.settings))
        return self

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def send(self, cmd: str, **fields: Any) -> None:
        assert self.child is not None and self.child.process.stdin is not None
        self.child.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.child.process.stdin.flush()

    def expect(self, event: str, within: float = 30.0) -> dict[str, Any]:
        """Collect events until one named ``event`` arrives; returns it."""
        assert self.child is not None
        deadline = time.monotonic() + within
        while True:
            _, line = self.child.next_line(deadline - time.monotonic())
            try:
                data = json.loads(line)
            except ValueError:
                continue
            self.events.append(data)
            if data.get("event") == event:
                return data

    def drain_events(self) -> list[dict[str, Any]]:
        """Every event printed so far (without waiting)."""
        assert self.child is not None
        while True:
            try:
                item = self.child.lines.get_nowait()
            except queue.Empty:
                return self.events
            if item is None:
                self.child.lines.put(None)
                return self.events
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(item[1]))

    def wait_ready(self, within: float = 30.0) -> str:
        ready = self.expect("ready", within)
        self.peer_id = ready["peer_id"]
        self.addr = ready["addrs"][0]
        return self.addr

    def stats(self, within: float = 10.0) -> dict[str, Any]:
        self.send("stats")
        return self.expect("stats", within)
