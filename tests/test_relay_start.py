"""Relays start alone or not at all, and say little about peers that are down.

Real relay processes over loopback: the second relay on a port or a state
directory exits 1 with one line naming the address or the first relay's
pid; the first keeps serving (a failing CLI still gets its reports acked).
A peer that stays down is logged once (then with backoff), and once when it
is back; a failing program with a dead relay address gets no libp2p lines.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mesh_cluster import Cluster, Relay, closed_port, wait_until

from mesh.links import Unreachable

pytestmark = pytest.mark.slow


def _only_line(relay: Relay) -> str:
    lines = [line for line in relay.stderr_path.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("errmesh: ")
    return lines[0]


def _still_serves(cluster: Cluster, relay: Relay) -> None:
    """A failing CLI that knows only ``relay`` gets its report acked (spool empties)."""
    machine = cluster.machine("M1")
    cluster.start_cli(machine, "ValueError", [relay.maddr]).wait().check_failed_as_itself()
    wait_until(lambda: relay.totals().get("ValueError") == 1, 20, "the relay merged the report")
    assert machine.spool_rows() == 0


def test_a_second_relay_on_a_taken_port_exits_naming_the_address(cluster: Cluster) -> None:
    first = cluster.start_relay(cluster.relay("R1"))
    second = Relay(name="R2", root=cluster.relay("R2").root, port=first.port)
    cluster.start_relay(second, refused=True)
    assert second.proc is not None and second.proc.returncode == 1
    line = _only_line(second)
    assert f"/ip4/127.0.0.1/tcp/{first.port}" in line and "in use" in line
    assert first.alive()
    _still_serves(cluster, first)


def test_a_second_relay_on_a_state_dir_in_use_exits_naming_the_first_pid(
    cluster: Cluster,
) -> None:
    first = cluster.start_relay(cluster.relay("R1"))
    assert first.proc is not None
    second = Relay(name="R2", root=cluster.relay("R2").root, state=first.state_dir)
    cluster.start_relay(second, refused=True)
    assert second.proc is not None and second.proc.returncode == 1
    line = _only_line(second)
    assert f"pid {first.proc.pid}" in line and str(first.state_dir) in line
    assert first.alive()
    _still_serves(cluster, first)
    # The kernel drops the lock with the process, even on SIGKILL: a new relay starts.
    first.kill()
    cluster.start_relay(Relay(name="R3", root=cluster.relay("R3").root, state=first.state_dir))


def test_a_dead_bootstrap_peer_is_logged_once_and_once_more_when_back(cluster: Cluster) -> None:
    first = cluster.start_relay(cluster.relay("R1"))
    first.kill()
    second = cluster.start_relay(cluster.relay("R2"), bootstrap=[first])

    def said(word: str) -> list[str]:
        lines = second.stderr_path.read_text().splitlines()
        return [line for line in lines if word in line]

    wait_until(lambda: said("cannot reach"), 20, "R2 says R1 is unreachable")
    # Several redials (0.2 s, 0.4, 0.8, 1.6 apart) fail meanwhile: no more lines.
    deadline = second.listening_at + 4.0
    wait_until(lambda: time.monotonic() > deadline, 10, "R2 redials R1 for 4 s")
    (line,) = said("cannot reach")
    assert first.peer_id in line
    assert said("Failed to open TCP stream") == []
    cluster.start_relay(first)  # same identity, same port
    wait_until(lambda: said("reachable again"), 30, "R2 says R1 is back")
    assert len(said("cannot reach")) == 1


def test_a_failing_program_with_a_dead_relay_gets_no_libp2p_lines(cluster: Cluster) -> None:
    relay = cluster.start_relay(cluster.relay("R1"))
    dead = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{relay.peer_id}"
    run = cluster.start_cli(cluster.machine("M1"), "ValueError", [dead]).wait()
    run.check_failed_as_itself()
    traceback = ("Traceback", "  ", "ValueError:")
    extra = [line for line in run.stderr.splitlines() if not line.startswith(traceback)]
    assert len(extra) <= 1 and all(line.startswith("errmesh") for line in extra), extra
    assert "Failed to open TCP stream" not in run.stderr


def test_unreachable_logging_backs_off_exponentially_up_to_a_cap() -> None:
    tracker = Unreachable(first=60.0, cap=3600.0)
    said = [t for t in range(0, 20_000) if tracker.failed(float(t))]
    assert said[:6] == [0, 60, 180, 420, 900, 1860]
    assert said[-1] - said[-2] == 3600  # capped at an hour
    assert tracker.reached(20_000.0) == 20_000.0
    assert tracker.reached(20_001.0) is None  # nothing was logged since
    assert Unreachable(first=None, cap=1.0).failed(0.0) is False


def test_a_relay_whose_state_directory_is_deep_still_takes_nudges(tmp_path: Path) -> None:
    """``sun_path`` holds 107 bytes: a deeper state directory made the relay
    exit at start with only "AF_UNIX path too long". The nudge socket is now
    reached through its directory's descriptor, by the relay and by the CLIs."""
    import trio

    from node.handover import nudge_relay
    from node.service import _listen_for_nudges

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "relay.sock"
    assert len(str(path)) > 108

    class Peer:
        nudged = trio.Event()

    async def main() -> bool:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_listen_for_nudges, path, Peer)
            with trio.fail_after(5):
                while not path.exists():  # noqa: ASYNC110 (a file, not an event)
                    await trio.sleep(0.01)
            assert await trio.to_thread.run_sync(nudge_relay, path)
            with trio.fail_after(5):
                await Peer.nudged.wait()
            nursery.cancel_scope.cancel()
        return not path.exists()

    assert trio.run(main)  # nudged, and the socket removed when the relay stops
    assert not nudge_relay(path)  # nobody listens: False, no exception
    assert not nudge_relay(tmp_path / "gone" / ("x" * 120) / "relay.sock")
