"""Hosts whose wall clocks disagree still make one mesh.

No timestamp decides who leads (the election runs on each relay's monotonic
clock), but py-libp2p stamps the signed peer record that rides on every
pubsub RPC with the wall clock, and dropped a whole RPC whose record was
older than one it held: a relay restarted with its clock behind was deaf
and mute to every peer that had seen it before, and led on its own
(``mesh.libp2p_host.keep_rpcs_with_stale_peer_records``). The cluster's
clock-offset scenario (``scripts/cluster``, RELIABILITY.md) found it.
"""

from __future__ import annotations

from mesh_cluster import CONVERGE, Cluster, connected, one_leader, start_pair, wait_until


def test_a_relay_restarted_with_its_clock_90_s_behind_is_heard_at_once(cluster: Cluster) -> None:
    r1, r2 = start_pair(cluster)
    leader_before = r1.status()["leader"]
    r2.kill()
    cluster.start_relay(r2, bootstrap=[r1], clock_offset=-90)
    wait_until(lambda: connected(r1, r2), CONVERGE, "R1 and the restarted R2 are connected")
    wait_until(lambda: one_leader(r1, r2), CONVERGE, f"one leader\n{r2.story()}")
    assert r1.status()["leader"] == r2.status()["leader"] == leader_before

    # Both ways: a failure reported at the skewed relay is counted at the
    # other one, and one reported at the other reaches the skewed relay.
    at_r2, at_r1 = cluster.machine("M2"), cluster.machine("M1")
    cluster.run_clis([(at_r2, "ValueError", [r2.maddr]), (at_r1, "LookupError", [r1.maddr])])
    both = {"ValueError": 1, "LookupError": 1}
    wait_until(lambda: r1.totals() == both, CONVERGE, "R1 counts what R2 acked")
    wait_until(lambda: r2.totals() == both, CONVERGE, f"R2 counts what R1 acked\n{r2.story()}")
