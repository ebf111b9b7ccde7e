"""A relay keeps serving through faults that are not its fault.

Its disk fills up: a real relay process whose state directory is a tiny
tmpfs (mounted by the test; skipped where mounting is not permitted), a real
failing CLI that reports to it over libp2p. The relay must stay up, ack
nothing it did not store (so the CLI keeps its report), say what is wrong in
/status, and recover by itself when space returns.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_cluster import Cluster, Relay, wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s filesystem."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def live_status(relay: Relay, url: str) -> dict[str, Any]:
    """/status over HTTP: relay-status.json sits on the full disk."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        data: dict[str, Any] = json.loads(answer.read())
    return data


def store_is(relay: Relay, url: str, *, ok: bool) -> dict[str, Any] | None:
    status = live_status(relay, url)
    return status if status["store"]["ok"] is ok else None


def test_a_relay_with_a_full_disk_keeps_serving_acks_nothing_and_recovers(
    cluster: Cluster, small_disk: Path
) -> None:
    relay = cluster.relay("r1")
    relay.state = small_disk
    cluster.start_relay(relay)
    url = str(relay.status()["status_url"])
    filler = fill(small_disk)

    first = cluster.start_cli(cluster.machine("m1"), "ValueError", [relay.maddr]).wait()
    first.check_failed_as_itself()
    assert relay.alive(), relay.story()
    assert cluster.machine("m1").spool_rows() == 1, "not stored, so not acked: the CLI keeps it"
    status = wait_until(
        lambda: store_is(relay, url, ok=False), 10, "the relay says its store is failing"
    )
    assert "full" in status["store"]["error"].lower(), status["store"]
    assert sum(status["faults"].values()) >= 1

    filler.unlink()
    second = cluster.start_cli(cluster.machine("m2"), "LookupError", [relay.maddr]).wait()
    second.check_failed_as_itself()
    assert cluster.machine("m2").spool_rows() == 0, "acked once stored"
    status = wait_until(lambda: store_is(relay, url, ok=True), 10, "the relay's store recovers")
    assert status["signatures"] >= 1
    assert relay.alive()
    log = relay.stderr_path.read_text()
    assert log.count("store unavailable") == 1, log[-3000:]
    assert "store recovered" in log
