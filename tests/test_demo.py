"""The README's first command: ``errmesh demo`` builds a local mesh and ends OK."""

from __future__ import annotations

import json

import pytest

from conftest import Sandbox


@pytest.mark.slow
def test_demo_produces_one_issue_per_signature_with_every_occurrence(sandbox: Sandbox) -> None:
    done = sandbox.errmesh(
        "demo", "--dir", str(sandbox.root / "demo"), "--rounds", "2", "--progress", timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo OK: one issue per signature, every occurrence counted" in done.stdout
    assert "occurrences in issues: 8/8" in done.stderr.splitlines()  # --progress, on stderr
    index = json.loads((sandbox.root / "demo" / "issues" / "index.json").read_text())
    totals = sorted(entry["total"] for entry in index["issues"].values())
    assert totals == [2, 2, 2, 2]
    assert (
        "ghp_Demo0Token"
        not in (sandbox.root / "demo" / "issues")
        .joinpath(next(e["file"] for e in index["issues"].values() if "ValueError" in e["title"]))
        .read_text()
    )
