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
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest
from mesh_cluster import (
    CLI_TIMEOUT,
    CLUSTER,
    CONVERGE,
    RAW_PEER,
    STARTUP,
    CliRun,
    Cluster,
    Machine,
    Relay,
    closed_port,
    connected,
    listening_tcp,
    median,
    one_leader,
    print_figure,
    start_pair,
    wait_until,
)

from mesh import wire
from mesh.election import Heartbeat
from mesh.report import Report
from node.admission import BAN_AFTER

pytestmark = pytest.mark.slow


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


def test_peers_without_the_cluster_key_cannot_even_connect(cluster: Cluster) -> None:
    """The default private network: a wrong key's or no key's dial fails before
    Noise (mesh/pnet.py), so not one of their frames reaches a relay."""
    r1, r2 = start_pair(cluster)
    m1, m2, m3 = (cluster.machine(f"M{i}") for i in (1, 2, 3))
    other_key = cluster.root / "other.key"
    other_key.write_text(os.urandom(32).hex() + "\n")
    both = [r1.maddr, r2.maddr]
    wrong = cluster.start_cli(m1, "ValueError", both, key=other_key, ERRMESH_ACK_TIMEOUT="1")
    keyless = cluster.start_cli(m2, "LookupError", both, key=None, ERRMESH_ACK_TIMEOUT="1")
    for run in (wrong, keyless):
        run.wait().check_failed_as_itself()
    assert m1.spool_rows() == m2.spool_rows() == 1, "nobody acked them"
    cluster.run_clis([(m3, "ZeroDivisionError", both)])
    for relay in (r1, r2):
        wait_until(
            lambda relay=relay: relay.totals() == {"ZeroDivisionError": 1},
            CONVERGE,
            f"{relay.name} has only the keyed CLI's report",
        )
        since = time.time()
        wait_until(
            lambda relay=relay, since=since: relay.status().get("updated_at", 0) > since,
            CONVERGE,
            f"{relay.name} rewrites its status",
        )
        assert relay.rejected() == {}, "no frame of theirs ever reached a validator"
        assert len(relay.status()["peers"]) <= 2, relay.status()["peers"]


def test_with_the_private_network_off_keyless_frames_are_refused_and_counted(
    cluster: Cluster,
) -> None:
    """``private_network = false`` (a mixed fleet): outsiders connect, but their
    frames fail the MAC and nothing of theirs is merged."""
    off = {"ERRMESH_PRIVATE_NETWORK": "false"}
    r1, r2 = start_pair(cluster, env=off)
    m1, m2, m3 = (cluster.machine(f"M{i}") for i in (1, 2, 3))
    other_key = cluster.root / "other.key"
    other_key.write_text(os.urandom(32).hex() + "\n")
    both = [r1.maddr, r2.maddr]
    wrong = cluster.start_cli(m1, "ValueError", both, key=other_key, ERRMESH_ACK_TIMEOUT="1", **off)
    keyless = cluster.start_cli(m2, "LookupError", both, key=None, ERRMESH_ACK_TIMEOUT="1", **off)
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
    cluster.run_clis([(m3, "ZeroDivisionError", both)], **off)
    for relay in (r1, r2):
        wait_until(
            lambda relay=relay: relay.totals() == {"ZeroDivisionError": 1},
            CONVERGE,
            f"{relay.name} has only the keyed CLI's report",
        )
    assert m3.spool_rows() == 0
    assert cluster.status_json(r1) == cluster.status_json(r2) == {"ZeroDivisionError": 1}
    # relay-status.json is rewritten at most once a second between elections.
    wait_until(
        lambda: sum(r.status()["stats"].get("reports", 0) for r in (r1, r2)) >= 1,
        CONVERGE,
        "a relay's status counts the keyed CLI's report",
    )
    print_figure(f"keyless peers: rejected {rejected}")


# ---------------------------------------------------------------------------
# 6. Malformed, oversized, replayed and forged messages from a key holder


class RawPeer:
    """``tests/peers/mesh_raw_peer.py``: publishes the frames it is given."""

    def __init__(self, cluster: Cluster, relay: Relay | None) -> None:
        """Start it, bootstrapped to ``relay``; with one, wait until it joined.

        It holds the cluster key's private-network key (it got in), but signs
        nothing with the cluster key: each test builds its frames.
        """
        self.stderr_path = cluster.root / "raw-peer.err"
        bootstrap = ["--bootstrap", relay.maddr] if relay is not None else []
        bootstrap += ["--key-file", str(cluster.key)]
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

    def sync(self, peer: str, *frames: bytes, raw: bytes | None = None) -> dict[str, Any]:
        """A hand-made pull from ``peer`` (``node.sync_stream``): what came back."""
        assert self.proc.stdin is not None
        command: dict[str, Any] = {"cmd": "sync", "peer": peer, "cluster": CLUSTER}
        if raw is not None:
            command["raw"] = raw.hex()
        else:
            command["frames"] = [f.hex() for f in frames]
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self.expect("synced")


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
