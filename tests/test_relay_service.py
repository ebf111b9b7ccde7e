"""A relay run as a service: metrics, health, logs, systemd, its status address.

Real relay processes over loopback, scraped and probed over real HTTP: the
Prometheus text is read back with prometheus-client's own parser, the
health check meets a really full disk and a really read-only one (a tmpfs
in a private mount namespace), the JSON logs are parsed line by line, and systemd's notify
socket is a real Unix datagram socket.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from typing import Any

import httpx
import pytest
from mesh_cluster import CLUSTER, ROOT, STARTUP, Cluster, Relay, wait_until
from prometheus_client.parser import text_string_to_metric_families

from node.metrics import FAMILIES
from tests.github_fake import GitHubApp, serve
from tests.github_fake.fixtures import assert_no_violations

pytestmark = pytest.mark.slow

#: Every family a relay exports, with its type (the parser drops ``_total``).
EXPORTED = {
    "errmesh_build_info": "gauge",
    "errmesh_reports_received": "counter",
    "errmesh_reports_acked": "counter",
    "errmesh_reports_spooled": "counter",
    "errmesh_dropped": "counter",
    "errmesh_rejected": "counter",
    "errmesh_banned_peers": "gauge",
    "errmesh_gossip_lag_seconds": "histogram",
    "errmesh_gossip_messages": "counter",
    "errmesh_queue_depth": "gauge",
    "errmesh_github_requests": "counter",
    "errmesh_github_budget_remaining": "gauge",
    "errmesh_github_writes_last_hour": "gauge",
    "errmesh_github_writes_per_hour": "gauge",
    "errmesh_github_mesh_writes_last_hour": "gauge",
    "errmesh_leader_changes": "counter",
    "errmesh_elections_won": "counter",
    "errmesh_step_downs": "counter",
    "errmesh_is_leader": "gauge",
    "errmesh_term": "gauge",
    "errmesh_peers": "gauge",
    "errmesh_spool_pending": "gauge",
    "errmesh_signatures": "gauge",
    "errmesh_faults": "counter",
    "errmesh_store_ok": "gauge",
    "errmesh_quarantined": "gauge",
    "errmesh_events": "counter",
    # The process's own, from prometheus-client's collectors.
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "python_info": "gauge",
}


def status_url(relay: Relay) -> str:
    """The status URL the relay printed (``status on URL``)."""
    lines = relay.stdout_path.read_text().splitlines()
    found = [line.removeprefix("status on ").strip() for line in lines if "status on " in line]
    assert found, relay.story()
    return found[0]


def started(relay: Relay) -> str:
    """The relay's base URL, once it printed it."""
    url = wait_until(
        lambda: "status on " in relay.stdout_path.read_text() and status_url(relay),
        STARTUP,
        f"{relay.name} prints its status URL",
    )
    return url.removesuffix("/status")


def scrape(base: str) -> dict[str, Any]:
    answer = httpx.get(f"{base}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(answer.text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    """The one sample ``name{labels}`` (a sample's name: ``_total``, ``_count``...)."""
    values = [
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == name and s.labels == labels
    ]
    assert len(values) == 1, (name, labels, values)
    return float(values[0])


def test_metrics_name_every_family_with_help_and_type(cluster: Cluster) -> None:
    relay = cluster.start_relay(cluster.relay("R1"))
    base = started(relay)
    families = scrape(base)
    for name, kind in EXPORTED.items():
        assert name in families, f"{name} is not exported"
        assert families[name].type == kind, (name, families[name].type)
        assert families[name].documentation, f"{name} has no HELP"
    ours = {name for name in EXPORTED if name.startswith("errmesh_")}
    assert ours == set(FAMILIES), "node.metrics.FAMILIES lists what this test checks"
    # Counters whose labels are known start at zero, before anything happened.
    assert sample(families, "errmesh_rejected_total", reason="bad-mac") == 0
    assert sample(families, "errmesh_faults_total", loop="apply") == 0
    assert sample(families, "errmesh_github_requests_total", kind="write", status="2xx") == 0
    assert sample(families, "errmesh_gossip_lag_seconds_count", kind="ReportMsg") == 0
    assert families["errmesh_build_info"].samples[0].labels["version"]

    # A failing CLI's report: received, acked, the relay's counters move.
    machine = cluster.machine("M1")
    cluster.start_cli(machine, "ValueError", [relay.maddr]).wait().check_failed_as_itself()
    wait_until(
        lambda: sample(scrape(base), "errmesh_reports_acked_total") >= 1, 20, "the ack counted"
    )
    families = scrape(base)
    assert sample(families, "errmesh_reports_received_total") >= 1
    assert sample(families, "errmesh_gossip_lag_seconds_count", kind="ReportMsg") >= 1
    assert sample(families, "errmesh_signatures") == 1
    wait_until(lambda: sample(scrape(base), "errmesh_is_leader") == 1, 20, "it leads alone")
    assert sample(scrape(base), "errmesh_leader_changes_total") >= 1


def test_status_listen_binds_every_interface(cluster: Cluster) -> None:
    """``0.0.0.0:0``: a free port on all interfaces, so Prometheus elsewhere can scrape."""
    relay = cluster.start_relay(cluster.relay("R1"), extra=["--status-listen", "0.0.0.0:0"])
    base = started(relay)
    assert base.startswith("http://127.0.0.1:"), base  # what a local client dials
    port = int(base.rsplit(":", 1)[1])
    assert f"00000000:{port:04X}" in _listening_tcp4(), "bound to 0.0.0.0, not loopback only"
    assert relay.proc is not None
    assert httpx.get(f"{base}/status", timeout=10).json()["pid"] == relay.proc.pid
    other = _non_loopback_ipv4()
    if other is not None:  # this machine's own address reaches it too
        assert httpx.get(f"http://{other}:{port}/healthz", timeout=10).status_code == 200


def _listening_tcp4() -> set[str]:
    with open("/proc/net/tcp") as table:
        return {line.split()[1] for line in list(table)[1:] if line.split()[3] == "0A"}


def _non_loopback_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_logs_as_json_lines(cluster: Cluster) -> None:
    relay = cluster.start_relay(
        cluster.relay("R1"), extra=["--log-format", "json"], env={"ERRMESH_LOG_LEVEL": "info"}
    )
    wait_until(lambda: "leading in term" in relay.stderr_path.read_text(), 20, "it leads")
    assert relay.proc is not None
    relay.proc.terminate()
    relay.proc.wait(20)
    lines = [line for line in relay.stderr_path.read_text().splitlines() if line.strip()]
    assert lines
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= entry.keys(), entry
        assert isinstance(entry["ts"], float)
    leading = [e for e in entries if e["message"].startswith("leading in term")]
    assert leading and leading[0]["level"] == "info" and leading[0]["logger"] == "errmesh.peer"


def test_sd_notify_ready_once_the_relay_listens(cluster: Cluster) -> None:
    """systemd's socket, abstract as systemd makes it: READY=1 with a STATUS line."""
    name = f"errmesh-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(b"\0" + name.encode())
        manager.settimeout(STARTUP)
        relay = cluster.start_relay(cluster.relay("R1"), env={"NOTIFY_SOCKET": f"@{name}"})
        fields = dict(
            line.split("=", 1) for line in manager.recv(4096).decode().splitlines() if line
        )
        assert fields["READY"] == "1"
        assert relay.peer_id in fields["STATUS"]
        # Ready means serving: the status server answers at once.
        assert httpx.get(f"{started(relay)}/healthz", timeout=10).status_code == 200
        # Then the line systemctl status shows follows the election.
        while b"STATUS=leader in term 1, leader me" not in (said := manager.recv(4096)):
            assert b"READY" not in said, "ready once"
        assert relay.proc is not None
        relay.proc.terminate()
        while b"STOPPING=1" not in manager.recv(4096):
            pass
        assert relay.proc.wait(20) == -15, "then it dies of SIGTERM, as without systemd"


needs_mount = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None,
    reason="mounting a tmpfs needs root, unshare(1) and nsenter(1)",
)


def relay_on_its_own_tmpfs(cluster: Cluster) -> tuple[str, list[str], Relay]:
    """A relay whose state directory is a small tmpfs only its mount namespace sees.

    Returns its base URL, the command prefix that runs a command in that
    namespace (where the test breaks and mends the disk), and the relay.
    """
    relay = cluster.relay("R1")
    relay.state_dir.mkdir(parents=True)
    mount = 'mount -t tmpfs -o size=4m,mode=0700 tmpfs "$0" && exec "$@"'
    in_namespace = ["unshare", "--mount", "--propagation", "private", "bash", "-c", mount]
    cluster.start_relay(relay, prefix=[*in_namespace, str(relay.state_dir)])
    base = started(relay)
    assert relay.proc is not None
    healthy = httpx.get(f"{base}/healthz", timeout=10)
    assert (healthy.status_code, healthy.json()) == (200, {"ok": True})
    return base, ["nsenter", "--target", str(relay.proc.pid), "--mount", "--"], relay


@needs_mount
def test_healthz_is_503_while_the_disk_is_full_and_200_again_after(cluster: Cluster) -> None:
    base, inside, relay = relay_on_its_own_tmpfs(cluster)
    fill = relay.state_dir / "fill"
    subprocess.run([*inside, "dd", "if=/dev/zero", f"of={fill}", "bs=64k"], capture_output=True)
    sick = httpx.get(f"{base}/healthz", timeout=10)
    assert sick.status_code == 503
    assert sick.json()["ok"] is False
    assert "No space left on device" in sick.json()["reason"], sick.json()
    assert not fill.exists(), "the full disk is the relay's own, not the test's"

    subprocess.run([*inside, "rm", str(fill)], check=True)
    wait_until(
        lambda: httpx.get(f"{base}/healthz", timeout=10).status_code == 200, 10, "healthy again"
    )


@needs_mount
def test_healthz_is_503_while_the_store_is_read_only_and_200_again_after(
    cluster: Cluster,
) -> None:
    """The store's directory read-only, as after the kernel remounts a failing disk.

    chmod 0555 would not do: the test runs as root, whom modes do not stop. A
    remount of the tmpfs itself is refused while the relay holds its database
    open for writing, so a read-only bind mount goes over the directory, and
    unmounting it mends the disk.
    """
    base, inside, relay = relay_on_its_own_tmpfs(cluster)
    read_only = [*inside, "mount", "--bind", "-o", "ro", str(relay.state_dir), str(relay.state_dir)]
    made = subprocess.run(read_only, capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"a read-only bind mount is not permitted here: {made.stderr.strip()}")
    sick = httpx.get(f"{base}/healthz", timeout=10)
    assert sick.status_code == 503
    assert sick.json() == {
        "ok": False,
        "reason": f"store: cannot write {relay.state_dir / CLUSTER}: Read-only file system",
    }

    subprocess.run([*inside, "umount", str(relay.state_dir)], check=True)
    wait_until(
        lambda: httpx.get(f"{base}/healthz", timeout=10).status_code == 200, 10, "healthy again"
    )


def test_the_grafana_dashboard_asks_only_for_what_a_relay_exports(cluster: Cluster) -> None:
    """docs/grafana-errmesh.json: every query names series a real relay serves."""
    dashboard = json.loads((ROOT / "docs" / "grafana-errmesh.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    relay = cluster.start_relay(cluster.relay("R1"))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    served = {  # the series of every family, those without a sample yet included
        family.name + suffix
        for family in scrape(started(relay)).values()
        for suffix in suffixes.get(family.type, ("",))
    }
    for expr in exprs:
        names = set(re.findall(r"\b(?:errmesh|process|python)_[a-z_]+", expr))
        assert names, f"{expr!r} names no metric"
        assert names <= served, f"{expr!r} asks for {sorted(names - served)}"


def test_github_requests_in_the_metrics_are_the_ones_github_received(cluster: Cluster) -> None:
    """A leader with the GitHub sink (the test GitHub over HTTP): the counters by kind
    and answer class equal the fake's own log of requests, and the budget is shown."""
    repo, token = "octo-org/octo-repo", "test-token-for-the-metrics"
    app = GitHubApp(repos=[repo], tokens=[token])
    with serve(app) as url:
        env = {
            "ERRMESH_SINK": "github",
            "ERRMESH_REPO": repo,
            "ERRMESH_GITHUB_TOKEN": token,
            "ERRMESH_GITHUB_API_URL": url,
            "ERRMESH_GITHUB_MIN_INTERVAL": "0.05",
        }
        relay = cluster.start_relay(cluster.relay("R1"), env=env)
        base = started(relay)
        cluster.start_cli(cluster.machine("M1"), "ValueError", [relay.maddr]).wait()
        wait_until(lambda: app.count("POST", "/repos/{owner}/{repo}/issues"), 30, "an issue")

        def received() -> dict[tuple[str, str], int]:
            with app._lock:
                records = list(app.requests)
            out: dict[tuple[str, str], int] = {}
            for r in records:
                kind = "read" if r.method in ("GET", "HEAD") else "write"
                answer = "transport" if r.status is None else f"{r.status // 100}xx"
                out[kind, answer] = out.get((kind, answer), 0) + 1
            return out

        def counted() -> dict[tuple[str, str], int]:
            family = scrape(base)["errmesh_github_requests"]
            return {
                (s.labels["kind"], s.labels["status"]): int(s.value)
                for s in family.samples
                if s.name.endswith("_total") and s.value
            }

        wait_until(lambda: received() == counted(), 20, "the counters match GitHub's log")
        families = scrape(base)
        assert sample(families, "errmesh_github_requests_total", kind="write", status="2xx") >= 1
        assert sample(families, "errmesh_github_writes_last_hour") >= 1
        assert sample(families, "errmesh_github_writes_per_hour") == 500
        assert sample(families, "errmesh_github_budget_remaining") >= 0, "GitHub said it"
    assert_no_violations(app)
