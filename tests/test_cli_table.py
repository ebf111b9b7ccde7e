"""``errmesh status`` and ``members`` as people read them: 80 columns, nothing a report can abuse."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest.mock import ANY

from node.cli_table import ago, members_lines, short_addr, status_lines

NOW = 1_800_000_000.0


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "signature": "1eda6a7ca3c3",
        "title": "[errmesh] ValueError: boom <n>",
        "occurrences": 3,
        "hosts": ["web-1"],
        "first_seen": NOW - 7200,
        "last_seen": NOW - 42,
        "severity": "high",
        "issue": None,
    }
    return {**base, **changes}


def test_most_recently_seen_first_with_title_and_issue_url_on_their_own_lines() -> None:
    url = "https://github.com/acme/shop/issues/12"
    issue = {"number": 12, "url": url, "state": "open", "synced": 3}
    lines = status_lines(
        [row(), row(signature="edb00a0eb391", last_seen=NOW - 5, issue=issue)], NOW
    )
    assert lines[0].split() == ["SIGNATURE", "LAST", "SEEN", "COUNT", "SEVERITY", "HOSTS", "ISSUE"]
    assert lines[1].split() == ["edb00a0eb391", "5s", "ago", "3", "high", "web-1", "#12", "open"]
    assert lines[2:4] == ["  ValueError: boom <n>", f"  {url}"]
    assert lines[4].split()[:3] == ["1eda6a7ca3c3", "42s", "ago"]
    assert lines[5] == "  ValueError: boom <n>" and len(lines) == 6  # no issue: no URL line


def test_long_titles_and_many_hosts_are_cut_to_80_columns() -> None:
    hosts = [f"build-agent-{i:02}.ci.example.com" for i in range(12)]
    lines = status_lines([row(title="x" * 300, hosts=hosts)], NOW)
    assert all(len(line) <= 80 for line in lines)
    assert lines[2].endswith("\u2026")
    assert lines[1].split()[5:7] == ["build-agent-0\u2026", "+11"]  # 18 columns in all
    lines = status_lines([row(hosts=["a", "b", "c"])], NOW)
    assert lines[1].split()[5] == "a,b,c"


def test_escape_sequences_in_a_report_never_reach_the_terminal() -> None:
    evil = "[errmesh] ValueError: \x1b]0;pwned\x07\x1b[2J gone"
    lines = status_lines([row(title=evil, hosts=["web\x1b[31m"])], NOW)
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    assert lines[2] == "  ValueError: \ufffd]0;pwned\ufffd\ufffd[2J gone"


def test_members_one_line_each_this_relay_marked() -> None:
    me = "12D3KooWEEgqBGh5dcDGbD5ycge3rjdfqeYACuUqYC1LBxoPWdb3"
    other = "12D3KooWBzUaXPqEVK2aoa7MNVqsa8cjWXgmV7XFewWbMnju4kNr"
    members = [
        {"peer_id": me, "role": "follower", "term": 2, "addrs": [f"/ip4/10.0.0.5/tcp/4001/p2p/{me}"],
         "connected": True, "last_heard": NOW, "lag_ms": 0.0, "queue": 0, "self": True},
        {"peer_id": other, "role": "leader", "term": 2, "addrs": ["/ip6/::1/tcp/4001", "/ip4/10.0.0.6/tcp/4001"],
         "connected": True, "last_heard": NOW - 0.4, "lag_ms": 12.6, "queue": 3},
    ]  # fmt: skip
    lines = members_lines(members, NOW)
    assert lines[1].split() == [
        "\u2026C1LBxoPWdb3*",
        "follower",
        "2",
        "self",
        "-",
        "0",
        "0",
        "10.0.0.5:4001",
    ]
    assert lines[2].split() == [
        "\u2026wWbMnju4kNr",
        "leader",
        "2",
        "direct",
        "0s",
        "ago",
        "13",
        "3",
        "[::1]:4001",
        "+1",
    ]
    assert all(len(line) <= 80 for line in lines)


def test_times_and_addresses_in_short() -> None:
    assert [ago(NOW - s, NOW) for s in (0.2, 59, 61, 7300, 200_000)] == [
        "0s ago", "59s ago", "1m ago", "2h ago", "2d ago",
    ]  # fmt: skip
    assert ago(None, NOW) == "-"
    assert short_addr("/dns4/relay.example.com/tcp/4001") == "relay.example.com:4001"


def test_a_stopped_relays_fresh_status_file_does_not_count_as_running(tmp_path: Path) -> None:
    """``status`` and ``members`` showed a dead leader for the 5 s its file stayed fresh."""
    import json
    import subprocess
    import sys
    import time

    from node.cli_table import local_relay_status

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = tmp_path / "relay-status.json"
    path.write_text(json.dumps({"updated_at": time.time(), "pid": gone.pid, "role": "leader"}))
    assert local_relay_status(path) is None
    path.write_text(json.dumps({"updated_at": time.time(), "pid": os.getpid(), "role": "leader"}))
    assert local_relay_status(path) == {"updated_at": ANY, "pid": os.getpid(), "role": "leader"}
    path.write_text(json.dumps({"updated_at": time.time() - 20, "pid": os.getpid()}))
    assert local_relay_status(path) is not None  # at rest: rewritten every 10 s
    path.write_text(json.dumps({"updated_at": time.time() - 31, "pid": os.getpid()}))
    assert local_relay_status(path) is None  # hung: three rewrites missed
    path.write_text(json.dumps({"updated_at": time.time() - 6}))
    assert local_relay_status(path) is None  # an older relay's file, no pid: 5 s
