"""An outsider that got a connection floods a relay: it is cut off, and nothing else suffers.

The attacker (``tests/peers/flood_peer.py``) has no cluster key and signs
every frame with a fresh identity; when dropped it comes back under a fresh
connection identity too, from its own loopback address (127.0.0.2). The
relay bans the connection that delivers refused frames (``mesh/gate.py``,
by connection peer id after 20, then the address after 3 banned ids), stays
responsive, keeps its memory, and an honest program's report sent during
the flood is acked and counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from mesh_cluster import CLUSTER, CONVERGE, ROOT, Cluster, Relay, print_figure, wait_until

FLOOD_PEER = ROOT / "tests" / "peers" / "flood_peer.py"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


OFF = {"ERRMESH_PRIVATE_NETWORK": "false"}


def start_target(cluster: Cluster, env: dict[str, str] | None = None) -> tuple[Relay, str]:
    """A relay that also listens on 127.0.0.2, the attacker's side of loopback."""
    r1 = cluster.start_relay(
        cluster.relay("r1"), extra=["--listen", "/ip4/127.0.0.2/tcp/0"], env=env
    )
    lines = r1.stdout_path.read_text().splitlines()
    (second,) = [x for x in lines if x.startswith("listening on /ip4/127.0.0.2/")]
    return r1, second.removeprefix("listening on ").strip()


def flood(cluster: Cluster, target: str, within: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FLOOD_PEER),
            "--cluster",
            CLUSTER,
            "--target",
            target,
            "--source",
            "127.0.0.2",
            "--frames",
            "100000",
            "--within",
            f"{within:g}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cluster.root,
        env=cluster.env,
    )
    cluster.procs.append(proc)
    return proc


def outcome(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip(), err[-3000:]
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


def test_a_keyless_peers_dials_fail_and_an_honest_report_still_arrives(cluster: Cluster) -> None:
    """The private network (the default): the attacker, dialling again and
    again under fresh identities, never completes a connection, never sees a
    topic, and sends not one frame; an honest program meanwhile is acked."""
    r1, target = start_target(cluster)
    attacker = flood(cluster, target, within=8)
    honest = cluster.machine("honest")
    cluster.run_clis([(honest, "ValueError", [r1.maddr])])
    assert honest.spool_rows() == 0, "the honest report was acked during the dial flood"
    result = outcome(attacker)
    assert result["joined"] == 0 and result["sent"] == 0, result
    assert result["refused"] == result["identities"] >= 2, result
    assert r1.totals() == {"ValueError": 1}
    assert r1.rejected() == {}, "nothing of the attacker's reached a validator"
    print_figure(f"keyless dial flood: {result}")


def test_a_flood_from_fresh_identities_is_cut_off_and_costs_nothing_lasting(
    cluster: Cluster,
) -> None:
    """With the private network off (a mixed fleet), an outsider connects."""
    r1, target = start_target(cluster, env=OFF)
    status_url = wait_until(lambda: r1.status().get("status_url"), CONVERGE, "status url")
    assert r1.proc is not None
    baseline = rss_kb(r1.proc.pid)

    slowest = [0.0]
    failures: list[str] = []
    stop = threading.Event()

    def poll_status() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(status_url, timeout=5) as answer:
                    json.loads(answer.read())
            except (OSError, ValueError) as exc:  # reported by the assertion below
                failures.append(f"{time.monotonic() - started:.2f} s: {exc!r}")
            slowest[0] = max(slowest[0], time.monotonic() - started)
            time.sleep(0.1)

    poller = threading.Thread(target=poll_status, daemon=True)
    poller.start()
    attacker = flood(cluster, target, within=20)
    # An honest program fails while the flood runs: its report is acked and counted.
    wait_until(lambda: r1.rejected().get("bad-mac", 0) > 0, CONVERGE, "the flood reaches r1")
    honest = cluster.machine("honest")
    (run,) = cluster.run_clis([(honest, "ValueError", [r1.maddr])], **OFF)
    assert honest.spool_rows() == 0, (
        f"the honest report was not acked during the flood; /status failures {failures}\n"
        f"--- the CLI's stderr:\n{run.stderr[-2000:]}\n{r1.story()}"
    )

    result = outcome(attacker)
    stop.set()
    poller.join(10)
    time.sleep(1.5)  # the relay rewrites its status file once a second
    status = r1.status()
    refused = status["rejected"]["bad-mac"]
    dropped = status["gossip"]["dropped_banned"]
    # What got through a connection was refused, every frame of it; the
    # attacker was dropped again and again, then turned away at the door.
    # Every frame that reached the relay is counted: refused by reason until
    # the ban, dropped unread (and counted) after it, until the disconnect.
    assert result["sent"] >= refused + dropped, (result, status["rejected"], dropped)
    assert refused >= 20, status["rejected"]
    assert result["joined"] >= 1 and result["identities"] > result["joined"], result
    assert r1.totals() == {"ValueError": 1}, "nothing of the flood was merged"
    assert not failures and slowest[0] < 1.0, (
        f"/status took {slowest[0]:.2f} s during the flood; failures {failures}"
    )
    assert r1.proc is not None
    wait_until(
        lambda: rss_kb(r1.proc.pid) <= baseline + 5 * 1024 if r1.proc else False,
        CONVERGE,
        f"r1's memory back within 5 MB of its baseline ({baseline} kB)",
    )
    print_figure(
        f"flood: {result}; refused at r1 {refused}, dropped unread after bans {dropped}; banned {len(status['banned'])}; "
        f"slowest /status {slowest[0] * 1000:.0f} ms; RSS {baseline} -> "
        f"{rss_kb(r1.proc.pid)} kB"
    )
