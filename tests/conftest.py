"""Shared fixtures: an isolated errmesh environment and real host processes.

Tests that exercise capture run the host program as a separate OS process
(``python -c CODE``) with ``ERRMESH_*`` pointing into ``tmp_path``: that is
how errmesh meets real programs, hooks and exit statuses included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mesh_cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sandbox:
    """One machine's worth of errmesh state, in a temporary folder."""

    root: Path
    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return self.root / "state" / "test"

    @property
    def issues_dir(self) -> Path:
        return self.root / "data" / "test" / "issues"

    def python(
        self, code: str, *args: str, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` as a host program in its own process."""
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )

    def errmesh(
        self, *args: str, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``errmesh`` command line in its own process."""
        return subprocess.run(
            [sys.executable, "-m", "node", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )

    def index(self) -> dict[str, Any]:
        """The file sink's index (empty when nothing was reported)."""
        try:
            data: dict[str, Any] = json.loads((self.issues_dir / "index.json").read_text())
        except FileNotFoundError:
            return {"issues": {}}
        return data

    def issues(self) -> list[dict[str, Any]]:
        return sorted(self.index()["issues"].values(), key=lambda e: e["number"])

    def all_bytes(self) -> bytes:
        """Everything errmesh wrote on this 'machine' (spool, WAL, issue files)."""
        out = b""
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                out += path.read_bytes()
        return out


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ERRMESH_", "IPFS_", "GITHUB_", "GH_"))
    }
    env.update(
        ERRMESH_CLUSTER="test",
        ERRMESH_STATE_DIR=str(tmp_path / "state"),
        ERRMESH_DATA_DIR=str(tmp_path / "data"),
        ERRMESH_CONFIG=str(tmp_path / "config.toml"),
        ERRMESH_SPOOL_SYNC="normal",
        HOME=str(tmp_path / "home"),
        PYTHONPATH=str(ROOT),
    )
    (tmp_path / "home").mkdir()
    (tmp_path / "config.toml").write_text("")
    return Sandbox(root=tmp_path, env=env)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A test mesh's processes (``tests/mesh_cluster.py``); all killed at the end."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.kill_all()
