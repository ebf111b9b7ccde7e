"""A leader busy with many new signatures: does it keep leading alone? (issue 3 finding)

Not a goal of its own, and not in ``run_all.py``: a reproduction of a problem
found while benchmarking, kept so that a fix can be checked. The relay's
leader round (``node.leader.act``, called from ``MeshPeer._lead``) runs on
the relay's event loop; while it works, the relay sends no heartbeat. With
the file sink, each new issue rewrites the whole ``index.json``, so opening
N issues costs O(N^2).

Two real relays (``python -m node relay``, file sink, priorities 20 and
10). Once the priority-20 relay leads, N new signatures (1,500; 300 in
``--quick``) are spooled into its spool and it is nudged, as failing CLIs
on its machine would. Both ``relay-status.json`` files are polled every
0.1 s for 60 s (20 s in ``--quick``): reported are the longest time the
leader's status went without being rewritten (it is rewritten at every
tick of its event loop), how long both relays said ``role: leader`` at once,
how many terms went by, and how many issues were open at the end.
"""

from __future__ import annotations

import json
import time

from _common import emit, parser, table
from _mesh import Relay, Sandbox, wait_for
from relay_rss import spool_and_nudge


def main() -> None:
    args = parser(__doc__).parse_args()
    signatures = 300 if args.quick else 1_500
    watch = 20.0 if args.quick else 60.0
    sandbox = Sandbox()
    changes: list[list[object]] = []
    try:
        leader = Relay(sandbox, "leader", priority=20, window=900.0)
        leader.start()
        leader.wait_ready(60.0)
        follower = Relay(sandbox, "follower", priority=10, window=900.0)
        follower.start([leader.addr])
        follower.wait_ready(60.0)
        wait_for(
            lambda: (
                (leader.status() or {}).get("role") == "leader"
                and (follower.status() or {}).get("leader") == leader.peer_id
            ),
            60.0,
            0.1,
            "the priority-20 relay leading",
        )
        start_term = (leader.status() or {}).get("term", 0)
        started = time.time()
        spool_and_nudge(leader, 0, signatures)
        stalled = 0.0
        both = 0.0
        last = None
        previous = time.time()
        last_stats: object = None
        busy_until = 0.0
        while time.time() - started < watch:
            time.sleep(0.1)
            now = time.time()
            a, b = leader.status() or {}, follower.status() or {}
            if a.get("stats") != last_stats:  # a relay at rest rewrites its file every 10 s
                last_stats, busy_until = a.get("stats"), now + 2.0
            if a.get("updated_at") and now < busy_until:
                stalled = max(stalled, now - float(a["updated_at"]))
            if a.get("role") == "leader" and b.get("role") == "leader":
                both += now - previous
            previous = now
            state = (a.get("role"), a.get("term"), b.get("role"), b.get("term"))
            if state != last:
                last = state
                changes.append([round(now - started, 1), *state])
        end_term = max(
            (leader.status() or {}).get("term", 0), (follower.status() or {}).get("term", 0)
        )
        try:
            index = json.loads((sandbox.issues_dir / "index.json").read_text())
            issues = len(index["issues"])
        except (OSError, ValueError, KeyError):
            issues = 0
    finally:
        sandbox.close()

    print(f"leader busy: {signatures:,} new signatures spooled into the leader's spool\n")
    print(
        table(
            ["s", "leader role", "term", "follower role", "term"],
            changes[:30],
            align="rlrlr",
        )
    )
    print(
        f"\nleader's status not rewritten for up to {stalled:.1f} s; both said 'leader' "
        f"for {both:.1f} s of {watch:.0f} s; terms {start_term} -> {end_term}; "
        f"{issues:,} of {signatures:,} issues open after {watch:.0f} s"
    )
    ok = both == 0.0 and stalled < 1.5
    emit(
        "leader_busy",
        goal="one leader at a time while the leader opens many issues (heartbeats keep going)",
        met=ok,
        quick=args.quick,
        results={
            "signatures": signatures,
            "max_status_stall_s": stalled,
            "both_leader_s": both,
            "terms": [start_term, end_term],
            "issues_open": issues,
            "changes": changes,
            "headline": f"status stalled up to {stalled:.1f} s, two leaders for {both:.1f} s, "
            f"terms {start_term}->{end_term}",
        },
    )


if __name__ == "__main__":
    main()
