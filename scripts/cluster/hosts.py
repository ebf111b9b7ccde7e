"""One host of the cluster: its namespace, folders, relay process and failing CLIs.

Every process runs inside the host's namespace (``ip netns exec``, which
``exec``s, so the Popen pid is the program's own and signals reach it). A
host's relay and its CLIs share the host's state directory, as on a real
machine: a failing CLI hands its report over to the local relay
(``node/handover.py``); ``embedded`` CLIs use a state directory of their own
and deliver over libp2p to the relays in ``ERRMESH_PEERS`` (the local one
first), through the proxy for the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh import wire
from scripts.cluster.netns import Topology, service_addr

__all__ = ["CLUSTER", "ERRORS", "CliRun", "Host", "read_states"]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "fleet"
PORT = 4747  # the relay default (DECISIONS 61)

#: What a CLI can fail with: one signature each (the type is the title).
ERRORS = {
    "ValueError": 'ValueError("boom 42")',
    "LookupError": 'LookupError("no row 7 in table users")',
    "ZeroDivisionError": 'ZeroDivisionError("final step 3")',
    "PermissionError": 'PermissionError("cannot write spool 9")',
}

#: The failing program: its intent is on disk before it raises.
CLI_CODE = """\
import json, os, time
import node
node.install(app="fleet")
line = json.dumps({{"id": {ident!r}, "host": {host}, "kind": {kind!r}, "mode": {mode!r},
                   "time": time.time(), "pid": os.getpid()}})
fd = os.open({intents!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, (line + "\\n").encode())
os.close(fd)
raise {error}
"""


def read_states(db: Path) -> dict[str, dict[str, Any]]:
    """A store's aggregate by signature hex: exception type, total, per-origin counts, link."""
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as c:
            rows = c.execute("SELECT state FROM states").fetchall()
    except sqlite3.Error:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for (blob,) in rows:
        state = wire.decode_state(bytes(blob))
        link = state.link
        out[state.signature.hex()] = {
            "kind": state.detail.exc_type if state.detail is not None else "?",
            "total": state.total,
            "origins": {o.hex(): c.count for o, c in state.counts.items()},
            "link": None
            if link is None
            else {"number": link.number, "term": link.term, "state": link.state},
        }
    return out


@dataclass
class CliRun:
    """One failing CLI: where, what, and how it ended."""

    ident: str
    host: int
    kind: str
    mode: str
    proc: subprocess.Popen[str]
    started: float
    returncode: int | None = None
    stderr: str = ""
    seconds: float = 0.0

    def finish(self, timeout: float = 60.0) -> CliRun:
        try:
            _, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate(timeout=10)
        self.returncode = self.proc.returncode
        self.seconds = time.time() - self.started
        return self

    @property
    def failed_as_itself(self) -> bool:
        """Exit 1 with its own traceback, and errmesh said nothing (it committed)."""
        return (
            self.returncode == 1
            and f"{self.kind}:" in self.stderr
            and "errmesh:" not in self.stderr
        )

    def record(self) -> dict[str, Any]:
        return {
            "id": self.ident,
            "host": self.host,
            "kind": self.kind,
            "mode": self.mode,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "returncode": self.returncode,
            "committed": self.failed_as_itself,
            "stderr": self.stderr[-600:] if not self.failed_as_itself else "",
        }


@dataclass
class Host:
    """Host ``index`` (1-based) of a cluster rooted at ``root``."""

    index: int
    root: Path
    topology: Topology
    env: dict[str, str]
    key: Path
    priority: int = 0
    peer_id: str = ""
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    clock_offset: float = 0.0
    tmpfs: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def db(self) -> Path:
        return self.state_dir / CLUSTER / "errmesh.sqlite3"

    @property
    def status_path(self) -> Path:
        return self.state_dir / CLUSTER / "relay-status.json"

    @property
    def identity_path(self) -> Path:
        return self.state_dir / CLUSTER / "identity.key"

    @property
    def log_path(self) -> Path:
        return self.root / "relay.err"

    @property
    def maddr(self) -> str:
        return f"/ip4/{service_addr(self.index)}/tcp/{PORT}/p2p/{self.peer_id}"

    def make_identity(self) -> None:
        """The relay's libp2p key, made before its first start so every peer id is known."""
        from libp2p.peer.id import ID

        from mesh.gossip import load_or_create_identity

        self.state_dir.mkdir(parents=True, exist_ok=True)
        key_pair = load_or_create_identity(self.identity_path)
        self.peer_id = ID.from_pubkey(key_pair.public_key).to_base58()

    # -- the relay -------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start_relay(self, bootstrap: Sequence[str], *, window: float) -> None:
        args = [
            "-m",
            "node",
            "--cluster",
            CLUSTER,
            "--state-dir",
            str(self.state_dir),
            "--data-dir",
            str(self.root / "data"),
            "--window",
            f"{window:g}",
            "--log-level",
            "info",
            "relay",
            "--listen",
            f"/ip4/{service_addr(self.index)}/tcp/{PORT}",
            "--key-file",
            str(self.key),
            "--priority",
            str(self.priority),
            *[a for addr in bootstrap for a in ("--bootstrap", addr)],
        ]
        python = [sys.executable]
        if self.clock_offset:
            python += ["-m", "scripts.cluster.clockshim", f"{self.clock_offset:+g}"]
        with (self.root / "relay.out").open("a") as out, self.log_path.open("a") as err:
            err.write(f"### start {time.time():.3f} offset {self.clock_offset:+g}\n")
            err.flush()
            self.proc = subprocess.Popen(
                [*self.topology.exec_prefix(self.index), *python, *args],
                stdout=out,
                stderr=err,
                cwd=self.root,
                env={**self.env, **self.extra_env},
            )
        self.stopped = False

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def ready(self) -> bool:
        """Running, and its status file is this process's."""
        return self.alive() and self.proc is not None and self.status().get("pid") == self.proc.pid

    def signal(self, signum: int) -> float:
        assert self.proc is not None
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signum)
        if signum == signal.SIGKILL:
            self.proc.wait(10)
        if signum in (signal.SIGSTOP, signal.SIGCONT):
            self.stopped = signum == signal.SIGSTOP
        elif signum == signal.SIGKILL:
            self.stopped = False
        return at

    def states(self) -> dict[str, dict[str, Any]]:
        return read_states(self.db)

    # -- failing CLIs ---------------------------------------------------------

    def start_cli(
        self,
        ident: str,
        kind: str,
        peers: Sequence[str],
        intents: Path,
        *,
        mode: str = "local",
        env: Mapping[str, str] | None = None,
    ) -> CliRun:
        """A CLI that fails with ``ERRORS[kind]``; ``mode`` local (hand-over) or embedded."""
        state = self.state_dir if mode == "local" else self.root / "cli-state"
        code = CLI_CODE.format(
            ident=ident,
            host=self.index,
            kind=kind,
            mode=mode,
            intents=str(intents),
            error=ERRORS[kind],
        )
        cli_env = {
            **self.env,
            "ERRMESH_CLUSTER": CLUSTER,
            "ERRMESH_STATE_DIR": str(state),
            "ERRMESH_DATA_DIR": str(self.root / "cli-data"),
            "ERRMESH_PEERS": ",".join(peers),
            "ERRMESH_KEY_FILE": str(self.key),
            **(env or {}),
        }
        started = time.time()
        proc = subprocess.Popen(
            [*self.topology.exec_prefix(self.index), sys.executable, "-c", code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            env=cli_env,
        )
        return CliRun(ident, self.index, kind, mode, proc, started)

    def stranded(self) -> int:
        """Reports embedded CLIs left in their own spool (no ack came in time)."""
        db = self.root / "cli-state" / CLUSTER / "errmesh.sqlite3"
        if not db.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as c:
            try:
                return sum(int(c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                           for t in ("spool", "handover"))  # fmt: skip
            except sqlite3.OperationalError:
                return 0

    # -- the disk ---------------------------------------------------------------

    def mount_tmpfs(self, megabytes: int) -> None:
        """The state directory on a small disk of its own, so that it can fill up."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs",
             str(self.state_dir)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise OSError(f"mount tmpfs on {self.state_dir}: {done.stderr.strip()}")
        self.tmpfs = True

    def fill_disk(self) -> int:
        """Fill the state disk (a filler file until ENOSPC); returns the bytes written."""
        written = 0
        fd = os.open(self.state_dir / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 4096, 1):  # whole blocks, then what is left
                with contextlib.suppress(OSError):
                    while True:
                        written += os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
        return written

    def free_disk(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "filler").unlink()

    def unmount(self) -> None:
        if self.tmpfs:
            subprocess.run(
                ["umount", "-l", str(self.state_dir)], capture_output=True, timeout=30, check=False
            )
            self.tmpfs = False
