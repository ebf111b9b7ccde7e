"""GitHub cost of a busy hour: requests by kind for 10,000 occurrences (issue 4).

Goal: 20 signatures give exactly 20 issue creations, at most 80 updates (one
per signature per 15-minute window) and no duplicate issue, across two
leader changes; every issue ends showing its exact count; GitHub's content
limits hold.

Ten real relays (``python -m node relay``, libp2p on loopback) run the GitHub
sink against the test GitHub (``tests/github_fake``, served over HTTP from
this process, validating every request against GitHub's API description).
Three of them hold the token and are leader candidates (DESIGN section 9:
the token stays on leader-eligible peers); the other seven relay, ack and
replicate. One simulated hour runs ``--scale`` times faster (default 20: the hour takes
3 minutes, the 15-minute window 45 s, the 5 s settle delay 0.25 s). Writes
stay 1 s / scale apart; the per-minute (80) and per-hour (500) limits are
GitHub's real ones over real minutes, which is stricter than scaling them.

Each relay bootstraps to the candidates started before it, so killing one
cuts nobody off (with a single bootstrap peer, killing it partitions every
relay: each candidate then leads its own island).

The feed: 10,000 occurrences at random times of the hour (seed 4), over 20
signatures with Zipf-like weights (the hottest about 28%, the coldest under
1%), each spooled into a random relay's machine spool as a failing process
on it would, the relay nudged every half second. At 20 and 40 simulated
minutes the current leader is SIGKILLed and restarted 5 s later (what was
spooled on its machine meanwhile waits there). After the hour, the relays
get up to two windows to show the final counts.

Printed: requests by method and route, the verdict figures (creations,
comment updates, label changes, duplicates), the budget audit, whether every
issue shows its exact total, and the leaders seen. ``--quick`` runs
1,000 occurrences at scale 30.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import socket
import sys
import time
import urllib.request

from _common import REPO, emit, parser, table
from _mesh import CLUSTER, Relay, Sandbox, read_totals
from report_bytes import synthetic_report

from mesh.store import Store

sys.path.insert(0, str(REPO))
from tests.github_fake import GitHubApp, serve

SIGNATURES = 20
PEERS = 10
ELIGIBLE = 3
GH_REPO = "bench-org/bench-repo"
TOKEN = "bench-token"
_TOTAL = re.compile(r"\*\*(\d+)\*\* in total")
_OCCURRENCES = re.compile(r"\*\*Occurrences:\*\* (\d+)")
SEEN_AT: dict[int, list[float]] = collections.defaultdict(list)
_MARKER = re.compile(r"<!-- errmesh:sig=([0-9a-f]{32}) -->")


def leader_of(relays: list[Relay]) -> Relay | None:
    for relay in relays:
        status = relay.status()
        if status and status.get("role") == "leader" and relay.child and relay.child.alive():
            return relay
    return None


def shown(app: GitHubApp) -> tuple[dict[bytes, list[int]], dict[bytes, int]]:
    """Issues per signature, and the count each signature's (first) issue shows."""
    with app._lock:
        repo = app.repo()
        issues: dict[bytes, list[int]] = collections.defaultdict(list)
        for number, issue in sorted(repo.issues.items()):
            match = _MARKER.search(issue.body or "")
            if match and not issue.is_pull:
                issues[bytes.fromhex(match[1])].append(number)
        comments = collections.defaultdict(list)
        for comment in sorted(repo.comments.values(), key=lambda c: (c.created_at, c.id)):
            comments[comment.issue_number].append(comment.body)
            SEEN_AT[comment.issue_number].append(comment.created_at)
        totals = {}
        for sig, numbers in issues.items():
            found = [int(m[1]) for b in comments[numbers[0]] if (m := _TOTAL.search(b))]
            body = _OCCURRENCES.search(repo.issues[numbers[0]].body or "")
            totals[sig] = found[-1] if found else int(body[1]) if body else 0
    return dict(issues), totals


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--scale", type=float, default=None, help="simulated seconds per real second")
    p.add_argument(
        "--log-level",
        default="warning",
        help="the relays' log level (their stderr is kept with ERRMESH_BENCH_KEEP=1)",
    )
    args = p.parse_args()
    scale = args.scale or (30.0 if args.quick else 20.0)
    total = 1_000 if args.quick else 10_000
    hour = 3600.0 / scale
    window = 900.0 / scale
    rng = random.Random(4)
    signatures = [hashlib.sha256(f"gh-cost-{k}".encode()).digest()[:16] for k in range(SIGNATURES)]
    weights = [1.0 / (k + 1) for k in range(SIGNATURES)]
    template = synthetic_report(random.Random(9))
    schedule = sorted(
        (rng.uniform(0, hour), rng.choices(range(SIGNATURES), weights)[0], rng.randrange(PEERS))
        for _ in range(total)
    )
    fed: collections.Counter[bytes] = collections.Counter()
    app = GitHubApp(repos=[GH_REPO], tokens=[TOKEN], validate_responses=False)
    leaders: list[tuple[float, str, int]] = []
    kills: list[float] = []
    with serve(app) as url, Sandbox("errmesh-bench-github-") as sandbox:
        settings: dict[str, object] = {
            "sink": "github",
            "repo": GH_REPO,
            "github_token": TOKEN,
            "github_api_url": url,
            "github_min_interval": 1.0 / scale,
            "settle": 5.0 / scale,
            "log_level": args.log_level,
        }
        # The token lives on the leader candidates only (DESIGN section 9); the
        # other relays relay, ack and replicate.
        relays = [
            Relay(
                sandbox,
                f"relay-{i}",
                window=window,
                settings=settings
                if i < ELIGIBLE
                else {"eligible": False, "log_level": args.log_level},
            )
            for i in range(PEERS)
        ]
        # Each relay bootstraps to every candidate started before it (as a
        # deployment lists several bootstrap peers): killing one leaves no
        # relay cut off.
        seeds: list[str] = []
        for relay in relays[:ELIGIBLE]:
            relay.start(seeds)
            seeds.append(relay.wait_ready(60.0))
        for relay in relays[ELIGIBLE:]:
            relay.start(seeds)
        for relay in relays[ELIGIBLE:]:
            relay.wait_ready(60.0)
        deadline = time.monotonic() + 60.0
        while leader_of(relays) is None and time.monotonic() < deadline:
            time.sleep(0.2)

        started = time.monotonic()
        wall_started = time.time()
        cursor = 0
        kill_at = [hour / 3, 2 * hour / 3]
        restart: list[tuple[float, Relay]] = []
        while cursor < len(schedule) or restart:
            elapsed = time.monotonic() - started
            batch: dict[int, list[int]] = collections.defaultdict(list)
            while cursor < len(schedule) and schedule[cursor][0] <= elapsed:
                _, sig_index, machine = schedule[cursor]
                batch[machine].append(sig_index)
                cursor += 1
            for machine, sig_indexes in batch.items():
                relay = relays[machine]
                with Store.open(relay.state_dir / CLUSTER, sync="normal") as store:
                    for k in sig_indexes:
                        store.spool(
                            template.replace(
                                signature=signatures[k],
                                exc_type=f"BenchError{k:02d}",
                                message=f"bench failure kind {k}",
                                timestamp=time.time(),
                            )
                        )
                        fed[signatures[k]] += 1
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nudge:
                    try:
                        nudge.sendto(b"spooled", str(relay.state_dir / CLUSTER / "relay.sock"))
                    except OSError:
                        pass  # its relay is down: the spool waits for it
            current = leader_of(relays)
            if current is not None:
                term = int((current.status() or {}).get("term", 0))
                if not leaders or leaders[-1][1] != current.name or leaders[-1][2] != term:
                    leaders.append((elapsed * scale / 60.0, current.name, term))
            if kill_at and elapsed >= kill_at[0] and current is not None:
                kill_at.pop(0)
                kills.append(elapsed * scale / 60.0)
                current.kill()
                restart.append((time.monotonic() + 5.0, current))
            for when, relay in list(restart):
                if time.monotonic() >= when:
                    restart.remove((when, relay))
                    live = [r for r in relays if r is not relay and r.child and r.child.alive()]
                    relay.start([r.addr for r in live[:ELIGIBLE]])
                    relay.wait_ready(60.0)
            time.sleep(0.5)
        fed_s = time.monotonic() - started

        exact = False
        deadline = time.monotonic() + 2 * window + 30.0
        while time.monotonic() < deadline:
            issues, totals = shown(app)
            if len(issues) == SIGNATURES and all(totals.get(s) == n for s, n in fed.items()):
                exact = True
                break
            time.sleep(1.0)
        settled_s = time.monotonic() - started - fed_s
        SEEN_AT.clear()
        issues, totals = shown(app)
        current = leader_of(relays) or relays[0]
        per_relay = {r.name: sum(read_totals(r.state_dir).values()) for r in relays}
        stored = read_totals(current.state_dir)
        mismatches = [
            (signatures.index(sig), fed[sig], stored.get(sig, 0), totals.get(sig, 0))
            for sig in signatures
            if fed[sig] != totals.get(sig, 0)
        ]
        gaps = [
            (b - a) * scale / 60.0
            for times in SEEN_AT.values()
            for a, b in itertools.pairwise(times)
        ]
        most = max((len(t) for t in SEEN_AT.values()), default=0)
        # The goal's "over one simulated hour": comments posted before the hour
        # (plus one window for the hour's last occurrences) ended.
        hour_end = wall_started + hour + window
        in_hour = sum(1 for times in SEEN_AT.values() for t in times if t <= hour_end)
        if os.environ.get("ERRMESH_BENCH_KEEP"):  # for a post-mortem: status and tasks
            for relay in relays:
                status = relay.status() or {}
                url = str(status.get("status_url", ""))
                (sandbox.root / f"{relay.name}.final.json").write_text(json.dumps(status))
                if url:
                    with contextlib.suppress(OSError):
                        tasks = urllib.request.urlopen(url.replace("/status", "/debug/tasks"))
                        (sandbox.root / f"{relay.name}.tasks.txt").write_bytes(tasks.read())
        requests = list(app.requests)
        audit = app.budget_report(per_minute=80, per_hour=500, min_interval=1.0 / scale)

    by_route = collections.Counter(r.route for r in requests)
    by_status = collections.Counter(r.status for r in requests)
    creations = by_route["POST /repos/{owner}/{repo}/issues"]
    comments = by_route["POST /repos/{owner}/{repo}/issues/{issue_number}/comments"]
    patches = by_route["PATCH /repos/{owner}/{repo}/issues/{issue_number}"]
    duplicates = sum(len(n) - 1 for n in issues.values())
    writes = sum(n for k, n in by_route.items() if not k.startswith("GET "))
    print(
        f"github cost: {sum(fed.values()):,} occurrences of {SIGNATURES} signatures over one "
        f"simulated hour ({hour:.0f} s real, scale {scale:g}) on {PEERS} relays; "
        f"window {window:.0f} s real\n"
    )
    print(table(["request", "count"], sorted(by_route.items(), key=lambda kv: -kv[1])))
    print()
    print(
        table(
            ["figure", "value", "goal"],
            [
                ["issue creations", creations, SIGNATURES],
                ["updates (bundled comments), all", comments, ""],
                ["updates within the hour (+ one window)", in_hour, f"<= {4 * SIGNATURES}"],
                ["most updates of one issue", most, 4],
                ["shortest gap between updates (sim. min)", f"{min(gaps, default=0):.1f}", ">= 15"],
                ["label changes (PATCH issue)", patches, ""],
                ["duplicate issues", duplicates, 0],
                ["writes in all", writes, ""],
                ["reads (304 not modified)", f"{by_status[304]}", ""],
                ["budget audit violations", len(audit), 0],
                ["every issue shows its exact count", exact, True],
            ],
        )
    )
    print(f"\noccurrences fed {sum(fed.values())}; counted in each relay's store: {per_relay}")
    if mismatches:
        print(f"\nnot exact at the end ({current.name}'s store):")
        print(table(["signature", "fed", "aggregate", "issue shows"], mismatches))
    print(f"\nleader kills at simulated minutes {', '.join(f'{k:.0f}' for k in kills)}")
    print("leaders seen (simulated minute, relay, term):")
    for minute, name, term in leaders:
        print(f"  {minute:5.1f}  {name}  term {term}")
    print(f"fed in {fed_s:.0f} s; final counts shown {settled_s:.0f} s after the feed")
    for line in audit[:5]:
        print(f"  audit: {line}")
    met = (
        creations == SIGNATURES
        and in_hour <= 4 * SIGNATURES
        and duplicates == 0
        and not audit
        and exact
    )
    emit(
        "github_cost",
        goal="20 creations, <= 80 updates, 0 duplicates, exact counts, within GitHub's limits",
        met=met,
        quick=args.quick,
        results={
            "occurrences": sum(fed.values()),
            "scale": scale,
            "creations": creations,
            "updates": comments,
            "label_changes": patches,
            "most_updates_one_issue": most,
            "updates_within_hour": in_hour,
            "shortest_gap_minutes": min(gaps, default=0.0),
            "duplicates": duplicates,
            "writes": writes,
            "requests": dict(by_route),
            "not_modified": by_status[304],
            "audit_violations": len(audit),
            "exact": exact,
            "leaders": leaders,
            "kills_at_minute": kills,
        },
    )


if __name__ == "__main__":
    main()
