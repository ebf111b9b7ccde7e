"""A relay that cannot be the only one on its port or state directory exits at once.

Real relay processes over loopback: the second relay on a port or a state
directory exits 1 with one line naming the address or the first relay's
pid; the first keeps serving (a failing CLI still gets its reports acked).
"""

from __future__ import annotations

import pytest
from mesh_cluster import Cluster, Relay, wait_until

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
